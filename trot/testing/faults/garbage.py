"""Varied garbage at a high rate: the policy node damps, publishes nothing out of limits, and its
log stays a few WARN lines a second whatever the variety, with every fault counted in it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from trot.testing.faults.fuzz import fuzz_catalogue
from trot.testing.faults.log_lines import BadInputLine, parse
from trot.testing.faults.policy import PolicyUnderTest
from trot.testing.faults.table import Row
from trot.testing.graph import threaded_graph

_WARN = re.compile(r"^\[WARN\] \[(\d+(?:\.\d+)?)\] \[[^\]]*\]: (.*)$")


@dataclass
class GarbageRun:
    """What a run of :func:`garbage_run` measured."""

    sent: int  # malformed messages published
    seconds: float  # how long it took to publish them
    counted: int  # bad inputs the node counted (its /diagnostics bad_inputs)
    warnings: list[tuple[float, str]]  # the node's WARN lines from the garbage's start on (log stamp, text)
    lines: list[BadInputLine]  # its bad-input lines among them, read back
    damped_after_s: float | None  # from the first message to the first damping command
    violations: int  # non-finite or out-of-limit commands
    alive: bool

    @property
    def logged(self) -> int:
        """Faults shown by a line of their own plus those counted as unlogged in the lines."""
        return sum(line.fault is not None for line in self.lines) + sum(sum(n.unlogged.values()) for n in self.lines)

    @property
    def worst_second(self) -> int:
        """The most WARN lines in any one second of the log."""
        stamps = [t for t, _ in self.warnings]
        return max((sum(1 for u in stamps if t <= u < t + 1.0) for t in stamps), default=0)


def warn_lines(log: str) -> Iterator[tuple[float, str]]:
    """The WARN lines of a node's log (rcutils' default format): (stamp, message)."""
    for line in log.splitlines():
        if found := _WARN.match(line):
            yield float(found[1]), found[2]


def garbage_run(seconds: float = 2.0, rate_hz: float = 2000.0, seed: int = 0) -> GarbageRun:
    """A RUNNING policy node gets malformed joint states and IMU samples of every fault category of
    the fuzz catalogue, each message different, at ``rate_hz`` for ``seconds`` (beside its valid
    stream); then, once its log has said all (no new bad-input line for 2.5 s), its /diagnostics."""
    rng = np.random.default_rng(seed)
    with threaded_graph() as r:
        p = PolicyUnderTest(r)
        kinds = [(topic, make) for topic, make, must_damp in fuzz_catalogue(p).values()
                 if must_damp and topic in ("js", "imu")]  # fmt: skip
        p.ensure_running(timeout=60.0)
        publishers = {"js": p.js_pub, "imu": p.imu_pub}
        count = int(seconds * rate_hz)
        batch = [
            (publishers[topic], make(rng))
            for topic, make in (kinds[int(i)] for i in rng.integers(len(kinds), size=count))
        ]
        start = len(p.log())
        t0 = time.time()
        for i, (publisher, msg) in enumerate(batch):
            if (ahead := t0 + i / rate_hz - time.time()) > 0.001:
                time.sleep(ahead)
            publisher.publish(msg)
        took = time.time() - t0
        damped = p.first_damping_after(t0)

        def bad_lines() -> int:
            return p.log()[start:].count("bad input: ")

        seen, quiet_since = bad_lines(), time.time()
        while time.time() - quiet_since < 2.5 and time.time() - t0 < 30.0:  # (held-back lines: a few s)
            time.sleep(0.1)
            if (now_seen := bad_lines()) != seen:
                seen, quiet_since = now_seen, time.time()
        alive = p.alive()
        counted = int(p.diagnostics().get("bad_inputs", -1)) if alive else -1
        with p.lock:
            violations = len(p.violations)
        warnings = [(t, text) for t, text in warn_lines(p.log()[start:]) if t >= t0 - 0.5]
        p.stop_stream()
    lines = [line for _, text in warnings if (line := parse(text)) is not None]
    return GarbageRun(count, took, counted, warnings, lines, None if damped is None else damped - t0, violations,
                      alive)  # fmt: skip


def garbage_log(seconds: float = 2.0, rate_hz: float = 2000.0) -> list[Row]:
    run = garbage_run(seconds, rate_hz)
    ok = (run.alive and not run.violations and run.damped_after_s is not None and run.worst_second <= 10
          and run.logged == run.counted)  # fmt: skip
    return [Row("policy node", f"garbage: {run.sent} malformed joint states and IMU samples of every category, each "
                f"different, at {run.sent / run.seconds:.0f} msg/s for {run.seconds:.1f} s",
                f"most WARN lines in one second {run.worst_second} ({len(run.warnings)} in all); faults shown or "
                f"counted in the log {run.logged} of {run.counted} the node counted; damped after "
                f"{'never' if run.damped_after_s is None else f'{run.damped_after_s * 1e3:.0f} ms'}; "
                f"{run.violations} bad commands",
                "≤ 10 WARN lines a second, every fault counted, damped, 0 bad commands", ok,
                {"worst_second": run.worst_second, "warnings": [text for _, text in run.warnings],
                 "logged": run.logged, "counted": run.counted, "violations": run.violations})]  # fmt: skip
