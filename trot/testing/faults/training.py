"""Training killed mid-run, then resumed: the curves match an uninterrupted run's."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

from trot.testing import ROOT
from trot.testing.faults.table import Row

SMALL_RUN = ["--env.num-envs", "32", "--steps-per-env", "8", "--save-interval", "1", "--env.nthread", "1",
             "--no-compile"]  # (a few iterations: compiling would take longer than the run)


def interrupted_and_resumed_run(workdir: Path, name: str, sig: int, iterations: int) -> Path:
    """A small go2-flat run stopped with ``sig`` once its second checkpoint exists, then resumed."""
    run = workdir / name
    args = ["train", "go2-flat", *SMALL_RUN, "--max-iterations", str(iterations), "--log-dir", str(workdir)]
    proc = subprocess.Popen([sys.executable, "-m", "trot.cli", *args, "--run-name", name], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 240
    while not (run / "checkpoints" / "model_00002.pt").exists():
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read())
        if time.time() > deadline:
            raise TimeoutError("no second checkpoint within 240 s")
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.wait(timeout=120)
    if sig == signal.SIGTERM and proc.returncode != 0:
        raise RuntimeError(proc.stderr.read())
    if len((run / "metrics.jsonl").read_text().splitlines()) >= iterations:  # (a kill may cut the last line)
        raise RuntimeError(f"the run finished all {iterations} iterations before {sig!r} stopped it")
    resume = subprocess.run([sys.executable, "-m", "trot.cli", "train", "--resume", str(run)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    if resume.returncode != 0:
        raise RuntimeError(resume.stderr[-2000:])
    return run


def training_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


CURVE_KEYS = ("loss/value", "loss/surrogate", "policy/learning_rate", "perf/total_env_steps", "episode/mean_return")


def training_resume(workdir: Path, iterations: int = 6) -> list[Row]:
    straight = subprocess.run(
        [sys.executable, "-m", "trot.cli", "train", "go2-flat", *SMALL_RUN, "--max-iterations", str(iterations),
         "--log-dir", str(workdir), "--run-name", "straight"], cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if straight.returncode != 0:
        raise RuntimeError(straight.stderr[-2000:])
    killed = interrupted_and_resumed_run(workdir, "killed", signal.SIGKILL, iterations)
    a, b = training_metrics(workdir / "straight"), training_metrics(killed)
    same_iterations = [row["iteration"] for row in b] == [row["iteration"] for row in a]

    def gap(x: dict, y: dict, key: str) -> float:  # (a curve one run logged and the other did not: a difference)
        if (key in x) != (key in y):
            return math.inf
        return abs(float(x[key]) - float(y[key])) if key in x else 0.0

    diffs = {k: max(gap(x, y, k) for x, y in zip(a, b, strict=False)) for k in CURVE_KEYS}
    worst = max(diffs.values())
    return [Row("training", f"SIGKILL during a {iterations}-iteration run, then --resume",
                f"iterations {len(b)}/{iterations}, gap-free: {same_iterations}; max abs difference of the curves vs "
                f"an uninterrupted run: {worst:.3g} ({', '.join(f'{k} {v:.3g}' for k, v in diffs.items())})",
                "same curve (difference 0)", same_iterations and worst == 0.0,
                {"worst": worst, "iterations": len(b)})]  # fmt: skip
