import importlib.util
import json
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


def _peers_table(*files: Path) -> dict[str, list[str]]:
    import subprocess

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "bench/ppo_peers.py", "--combine", *map(str, files)], cwd=root,
                         capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
    # env, steps, seeds, trot return, SB3 return, CleanRL, trot s, SB3 s, ratio, verdict...
    return {line.split()[0]: line.split() for line in out.splitlines() if "-v" in line.split()[0]}


def test_ppo_peers_combines_runs_into_means_per_environment() -> None:
    files = sorted((BENCH / "results" / "ppo_peers_old_defaults").glob("*.json"))
    rows = _peers_table(*files)
    # Hopper seeds 1-3: trot (1993.5 + 3031.1 + 2925.1) / 3 = 2650; the time ratio is of the means
    assert rows["Hopper-v5"][2:4] == ["1,2,3", "2650"], rows
    assert rows["Hopper-v5"][8] == f"{(292.37 + 246.83 + 273.12) / (869.25 + 894.98 + 953.19):.2f}", rows
    assert " ".join(rows["Hopper-v5"][9:]) == "return >= SB3; return >= CleanRL; time ok", rows
    assert rows["HalfCheetah-v5"][2] == "1,2,3", rows


def test_ppo_peers_merges_a_trot_run_and_an_sb3_run_made_apart(tmp_path: Path) -> None:
    (tmp_path / "trot.json").write_text(json.dumps([{"env": "Ant-v5", "seed": 1, "steps": 1_000_000,
                                                     "trot_return": 900.0, "trot_s": 300.0}]))  # fmt: skip
    (tmp_path / "sb3.json").write_text(json.dumps([{"env": "Ant-v5", "seed": 1, "steps": 1_000_000,
                                                    "sb3_return": 1000.0, "sb3_s": 800.0}]))  # fmt: skip
    row = _peers_table(tmp_path / "trot.json", tmp_path / "sb3.json")["Ant-v5"]
    assert row[2:5] == ["1", "900", "1000"] and row[8] == "0.38", row
    assert " ".join(row[9:]) == "return BELOW SB3 by 100; time ratio OVER 0.33", row


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
