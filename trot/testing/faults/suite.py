"""The fault scenarios by area name, run in turn in one scratch folder."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from trot.testing.faults.artifacts import artifact_refusals
from trot.testing.faults.driver import driver_faults
from trot.testing.faults.dropouts import dropouts
from trot.testing.faults.fuzz import fuzz_policy_node
from trot.testing.faults.garbage import garbage_log
from trot.testing.faults.recorder import recorder_faults
from trot.testing.faults.sources import sources_faults
from trot.testing.faults.table import Row
from trot.testing.faults.training import training_resume

SCENARIOS = ("fuzz", "garbage", "dropouts", "driver", "sources", "recorder", "training", "artifacts")


def run(only: tuple[str, ...] = SCENARIOS, fuzz_messages: int = 10_000) -> list[Row]:
    """The rows of the areas in ``only``, in that order; each area's duration goes to stderr."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="trot_faults_") as tmp:
        work = Path(tmp)
        for name in only:
            t0 = time.time()
            if name == "fuzz":
                rows += fuzz_policy_node(messages=fuzz_messages)
            elif name == "garbage":
                rows += garbage_log()
            elif name == "dropouts":
                rows += dropouts()
            elif name == "driver":
                rows += driver_faults()
            elif name == "sources":
                rows += sources_faults()
            elif name == "recorder":
                rows += recorder_faults(work / "recorder")
            elif name == "training":
                rows += training_resume(work / "training")
            elif name == "artifacts":
                rows += artifact_refusals(work / "artifacts")
            print(f"[{name}: {time.time() - t0:.0f} s]", file=sys.stderr, flush=True)
    return rows
