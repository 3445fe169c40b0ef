import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from trot.testing.requires import require
from trot.training.bench import EnvBenchConfig, bench_env

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench_script(name: str) -> ModuleType:
    """The bench script bench/<name>.py, imported as the module ``name`` (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # (dataclasses look their module up while the class is made)
    spec.loader.exec_module(module)
    return module


def test_env_bench_reports_consistent_figures() -> None:
    r = bench_env(EnvBenchConfig(num_envs=16, steps=5, warmup=1, nthread=2))
    assert r["env_steps_per_s"] > 0 and r["raw_physics_steps_per_s"] > 0
    assert (
        abs(r["raw_env_steps_per_s"] * r["decimation"] - r["raw_physics_steps_per_s"])
        < 1e-6 * r["raw_physics_steps_per_s"]
    )
    assert abs(r["ratio"] - r["env_steps_per_s"] / r["raw_env_steps_per_s"]) < 1e-9


def test_ppo_peers_combines_runs_into_means_per_environment() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    files = sorted((root / "bench" / "results").glob("ppo_peers_*.json"))
    out = subprocess.run([sys.executable, "bench/ppo_peers.py", "--combine", *map(str, files)], cwd=root,
                         capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("Hopper", "HalfCheetah"))}
    # Hopper seeds 1-3: trot (1993.5 + 3031.1 + 2925.1) / 3 = 2650; the time ratio is of the means
    assert rows["Hopper-v5"][1:3] == ["1,2,3", "2650"], out
    assert rows["Hopper-v5"][-1] == f"{(292.37 + 246.83 + 273.12) / (869.25 + 894.98 + 953.19):.2f}", out
    assert rows["HalfCheetah-v5"][1] == "1,2,3", out


def test_ros_timing_counts_an_unanswered_round_trip_and_says_so() -> None:
    """A joint state the node never answered is a round trip of at least the wait, in the figures
    and named (it used to vanish from them, and the sample count still looked complete)."""
    import math

    import numpy as np

    require("rclpy")
    ros_timing = bench_script("ros_timing")

    ms = np.array([1.0] * 98 + [ros_timing.REPLY_WAIT_S * 1e3] * 2)
    trips = ros_timing.RoundTrips(ms, np.arange(100) * 0.02, np.array([0.5] * 98 + [math.nan] * 2),
                                  np.zeros((0, 2)), {}, 0.0)  # fmt: skip
    assert "2 UNANSWERED within 100 ms, counted as 100 ms" in trips.slow()
    assert ros_timing.pct(ms, 99) == 100.0 and ros_timing.unanswered(ms[:98]) == ""
