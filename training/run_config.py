"""A training run's configuration: the task, its environment, PPO, bookkeeping; its defaults per task;
and its ``config.yaml`` in the run folder (written at start, read by resume, evaluation and export)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trot.sim.strict import ConfigError, from_mapping
from trot.training.ppo.config import PolicyConfig, PPOConfig, RunnerConfig
from trot.training.tasks import TASKS, make_task_config
from trot.training.tasks.velocity.config import EnvConfig


@dataclass
class TrainConfig(RunnerConfig):
    """A training run: the task, its environment, PPO and the run's bookkeeping."""

    task: str = "go2-flat"
    """A trot task (go2-flat, go1-flat) or a Gymnasium id (given as --env ID on the command line)."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """Environment settings (for Gymnasium tasks only num_envs is used)."""
    log_dir: Path = Path("runs")
    run_name: str = ""
    """Run folder name under log_dir (default: task_date_seed)."""
    gym_async: bool = True
    """Gymnasium tasks: step envs in worker processes rather than in this process."""
    gym_workers: int = 0
    """Gymnasium tasks: number of worker processes (0: one per CPU core), each stepping its share."""


GYM_SUITE = ("Hopper-v5", "HalfCheetah-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5", "Swimmer-v5")
"""The Gymnasium MuJoCo locomotion tasks the Gymnasium defaults are benchmarked on against
Stable-Baselines3 (bench/ppo_peers.py) and smoke-tested on."""


def is_gym_task(task: str) -> bool:
    return task not in TASKS


def default_config(task: str) -> TrainConfig:
    """Per-task defaults: rsl_rl-style for locomotion, CleanRL's MuJoCo settings for Gymnasium."""
    if not is_gym_task(task):
        # 512 envs x 24 steps per iteration, and a 29-minute budget: a default run ends within
        # half an hour on a 2-core workstation.
        # Symmetry augmentation: each sample is also trained on as its mirror image, which more
        # than pays for the longer update (bench/results/time_to_walk.md).
        # Compiled updates: shorter iterations for some seconds of compilation once
        # (bench/results/step_profile.md).
        return TrainConfig(task=task, env=make_task_config(task), max_iterations=3000, max_minutes=29.0,
                           compile=True, ppo=PPOConfig(symmetry_augmentation=True))  # fmt: skip
    return TrainConfig(
        task=task,
        env=EnvConfig(num_envs=8),
        steps_per_env=256,
        max_iterations=488,  # 8 envs x 256 steps x 488 = 1M env steps (CleanRL's batch of 2048)
        save_interval=100,
        reward_normalization=True,
        # Small networks: Python and op dispatch dominate, so compile and keep torch to one thread
        # (the other core steps environments in a worker process).
        compile=True,
        torch_threads=1,
        ppo=PPOConfig(
            learning_rate=3e-4,
            schedule="linear",
            num_epochs=10,
            num_minibatches=32,
            entropy_coef=0.0,
            value_loss_coef=0.5,
            max_grad_norm=0.5,
        ),
        # Gymnasium's MuJoCo tasks observe on physical scales, some dimensions rarely non-zero (Ant's
        # contact forces): normalization centres every dimension but scales down only the wide ones.
        policy=PolicyConfig(actor_hidden=(64, 64), critic_hidden=(64, 64), activation="tanh", obs_norm_eps=1.0),
    )


def save_config(cfg: TrainConfig, run_dir: Path) -> None:
    data = _plain(dataclasses.asdict(cfg))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def load_config(run_dir: Path, *, complete: bool = False) -> TrainConfig:
    """A run's settings. ``complete``: refuse a config that lacks a field (a run of an older trot,
    which must not be resumed with today's default for it)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"resume: {path} not found (is {run_dir} a trot run folder?)")
    return from_mapping(TrainConfig, yaml.safe_load(path.read_text()), "config", complete=complete)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
