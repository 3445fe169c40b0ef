"""trot's PPO against Stable-Baselines3's PPO across the Gymnasium MuJoCo locomotion suite, each with
its own defaults, on the same machine, in the same script.

    pip install -e '.[bench]'
    python bench/ppo_peers.py                                  # the six tasks, 1M steps, seeds 1-3
    python bench/ppo_peers.py --envs Ant-v5 --seeds 1          # one task, one seed
    python bench/ppo_peers.py --skip-sb3 --out out/trot.json   # trot only; SB3 later, apart
    python bench/ppo_peers.py --combine bench/results/ppo_peers_*.json  # the table from runs made apart

Runs go one after another, so each has the whole machine and the timings compare; each trot run
is a fresh process. Rows are written to ``--out`` as they finish: a suite split over sessions loses
nothing, and ``--combine`` merges the files, a trot row and an SB3 row of the same task and seed
into one.

Final return = mean of the last 20 training episodes (CleanRL reports episodic training returns).
"""

from __future__ import annotations

import json
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from trot.training.run_config import GYM_SUITE

CLEANRL_1M = {"Hopper": 2382.86, "HalfCheetah": 1442.64, "Walker2d": 2287.95, "Humanoid": 716.11}
"""CleanRL's published ppo_continuous_action returns at its default 1M steps (v4 tasks, 3 seeds):
vwxyzjn/cleanrl, docs/benchmark/ppo_continuous_action.md (tag pr-424). It publishes no 1M figure
for Ant or Swimmer."""

TIME_RATIO = 1 / 3
"""Target: trot's wall-clock at most this fraction of SB3's."""


@dataclass
class PeersConfig:
    envs: tuple[str, ...] = GYM_SUITE
    seeds: tuple[int, ...] = (1, 2, 3)
    steps: int = 1_000_000
    last_episodes: int = 20
    out: Path = Path("out/ppo_peers.json")
    """Where the per-run results go (JSON), rewritten after every run."""
    skip_sb3: bool = False
    skip_trot: bool = False
    combine: tuple[Path, ...] = ()
    """Train nothing: print the table from these earlier --out files (runs split over sessions)."""


def run_trot(env_id: str, seed: int, steps: int, last: int) -> tuple[float, float]:
    """One run in a fresh process, as ``trot train`` would be: a process that trained another task
    before keeps torch.compile's cache, recompiles for the new shapes with dynamic-shape kernels,
    and so runs slower and to other numbers."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_run_trot, env_id, seed, steps, last).result()


def _run_trot(env_id: str, seed: int, steps: int, last: int) -> tuple[float, float]:
    from trot.training.train import default_config, train

    cfg = default_config(env_id)
    cfg.seed = seed
    cfg.max_iterations = max(1, steps // (cfg.env.num_envs * cfg.steps_per_env))
    cfg.save_interval = cfg.max_iterations
    with tempfile.TemporaryDirectory() as tmp:
        cfg.log_dir, cfg.run_name = Path(tmp), "run"
        t0 = time.perf_counter()
        run = train(cfg, progress=False)
        seconds = time.perf_counter() - t0
        import torch

        ck = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
        returns = ck["ranks"][0]["episodes"][0]
    return float(np.mean(returns[-last:])), seconds


def run_sb3(env_id: str, seed: int, steps: int, last: int) -> tuple[float, float]:
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.monitor import Monitor

    env = Monitor(gym.make(env_id))
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0)
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    seconds = time.perf_counter() - t0
    returns = env.get_episode_rewards()
    env.close()
    return float(np.mean(returns[-last:])), seconds


def merge(rows: list[dict]) -> list[dict]:
    """One row per (task, seed, steps): trot's and SB3's columns from whichever rows have them
    (rows of files written before ``steps`` was recorded are 1M-step runs)."""
    merged: dict[tuple, dict] = {}
    for row in rows:
        key = (row["env"], row["seed"], row.get("steps", 1_000_000))
        merged.setdefault(key, {"env": key[0], "seed": key[1], "steps": key[2]}).update(row)
    return list(merged.values())


def main(cfg: PeersConfig) -> None:
    if cfg.combine:
        print_table(merge([row for path in cfg.combine for row in json.loads(path.read_text())]))
        return
    rows: list[dict] = []
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    for env_id in cfg.envs:
        for seed in cfg.seeds:
            row: dict = {"env": env_id, "seed": seed, "steps": cfg.steps}
            rows.append(row)
            sides = [("trot", run_trot)] * (not cfg.skip_trot) + [("sb3", run_sb3)] * (not cfg.skip_sb3)
            for side, run in sides:
                row[f"{side}_return"], row[f"{side}_s"] = run(env_id, seed, cfg.steps, cfg.last_episodes)
                cfg.out.write_text(json.dumps(rows, indent=2))
            print(json.dumps(row), flush=True)
    print_table(rows)


def _mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if key in r]
    return float(np.mean(values)) if values else float("nan")


def print_table(rows: list[dict]) -> None:
    """Means over seeds per task and budget, and each target's verdict where both sides ran."""
    print(f"{'env':<16}{'steps':>7} {'seeds':<7}{'trot return':>12}{'SB3 return':>12}{'CleanRL':>9}{'trot s':>8}"
          f"{'SB3 s':>8}{'ratio':>7}  verdict")  # fmt: skip
    for key in dict.fromkeys((r["env"], r["steps"]) for r in rows):
        sel = [r for r in rows if (r["env"], r["steps"]) == key]
        seeds = ",".join(str(r["seed"]) for r in sel)
        tr, sr, ts, ss = (_mean(sel, k) for k in ("trot_return", "sb3_return", "trot_s", "sb3_s"))
        ref = CLEANRL_1M.get(key[0].split("-")[0], float("nan")) if key[1] == 1_000_000 else float("nan")
        verdict = []
        if not np.isnan(tr) and not np.isnan(sr):
            verdict.append("return >= SB3" if tr >= sr else f"return BELOW SB3 by {sr - tr:.0f}")
        if not np.isnan(tr) and not np.isnan(ref):
            verdict.append("return >= CleanRL" if tr >= ref else f"return BELOW CleanRL by {ref - tr:.0f}")
        if not np.isnan(ts) and not np.isnan(ss):
            verdict.append("time ok" if ts / ss <= TIME_RATIO else f"time ratio OVER {TIME_RATIO:.2f}")
        print(f"{key[0]:<16}{key[1] / 1e6:>6.1f}M {seeds:<7}{tr:>12.0f}{sr:>12.0f}{ref:>9.0f}{ts:>8.0f}{ss:>8.0f}"
              f"{ts / ss:>7.2f}  {'; '.join(verdict)}")  # fmt: skip
    print(f"targets: trot's mean return >= SB3's and >= CleanRL's published 1M figure; time ratio <= {TIME_RATIO:.2f}")


if __name__ == "__main__":
    main(tyro.cli(PeersConfig))
