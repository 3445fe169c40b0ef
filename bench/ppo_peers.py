"""trot's PPO against Stable-Baselines3's PPO on Gymnasium MuJoCo tasks, same machine, same script.

    pip install -e '.[bench]'
    python bench/ppo_peers.py                         # Hopper-v5 + HalfCheetah-v5, 1M steps, 3 seeds
    python bench/ppo_peers.py --steps 200000 --seeds 1  # a quicker, smaller comparison
    python bench/ppo_peers.py --combine out/a.json out/b.json  # the table from runs made apart

Final return = mean of the last 20 training episodes (CleanRL reports episodic training returns).
CleanRL's published PPO (v4 tasks, 1M steps): Hopper 2383, HalfCheetah 1443.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

CLEANRL = {"Hopper": 2383.0, "HalfCheetah": 1443.0}


@dataclass
class PeersConfig:
    envs: tuple[str, ...] = ("Hopper-v5", "HalfCheetah-v5")
    seeds: tuple[int, ...] = (1, 2, 3)
    steps: int = 1_000_000
    last_episodes: int = 20
    out: Path = Path("out/ppo_peers.json")
    """Where the per-run results go (JSON)."""
    skip_sb3: bool = False
    combine: tuple[Path, ...] = ()
    """Train nothing: print the table from these earlier --out files (runs split over sessions)."""


def run_trot(env_id: str, seed: int, steps: int, last: int) -> tuple[float, float]:
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


def main(cfg: PeersConfig) -> None:
    if cfg.combine:
        rows = [row for path in cfg.combine for row in json.loads(path.read_text())]
        print_table(rows, cfg.steps)
        return
    rows = []
    for env_id in cfg.envs:
        for seed in cfg.seeds:
            ret, sec = run_trot(env_id, seed, cfg.steps, cfg.last_episodes)
            row = {"env": env_id, "seed": seed, "trot_return": ret, "trot_s": sec}
            if not cfg.skip_sb3:
                row["sb3_return"], row["sb3_s"] = run_sb3(env_id, seed, cfg.steps, cfg.last_episodes)
            rows.append(row)
            print(json.dumps(row), flush=True)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(json.dumps(rows, indent=2))
    print_table(rows, cfg.steps)


def print_table(rows: list[dict], steps: int) -> None:
    """Mean over seeds per environment; SB3 columns are nan for runs made with --skip-sb3."""
    print(f"\n{steps:,} steps per run")
    print(f"{'env':<16}{'seeds':<9}{'trot return':>12}{'SB3 return':>12}{'CleanRL':>9}{'trot s':>9}{'SB3 s':>9}"
          f"{'time ratio':>11}")  # fmt: skip
    for env_id in dict.fromkeys(r["env"] for r in rows):
        sel = [r for r in rows if r["env"] == env_id]
        seeds = ",".join(str(r["seed"]) for r in sel)
        tr, ts = np.mean([r["trot_return"] for r in sel]), np.mean([r["trot_s"] for r in sel])
        sr = np.mean([r.get("sb3_return", np.nan) for r in sel])
        ss = np.mean([r.get("sb3_s", np.nan) for r in sel])
        ref = CLEANRL.get(env_id.split("-")[0], float("nan"))
        print(f"{env_id:<16}{seeds:<9}{tr:>12.0f}{sr:>12.0f}{ref:>9.0f}{ts:>9.0f}{ss:>9.0f}{ts / ss:>11.2f}")
    print("targets: trot return >= CleanRL's; time ratio trot/SB3 <= 0.33")


if __name__ == "__main__":
    main(tyro.cli(PeersConfig))
