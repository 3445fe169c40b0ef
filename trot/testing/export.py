"""A policy artifact from a short real training run, for tests that need one of a given task."""

from __future__ import annotations

from pathlib import Path

from trot.training.export import ExportConfig, export
from trot.training.ppo.runner import Runner
from trot.training.run_config import TrainConfig, save_config
from trot.training.tasks import make_task_config
from trot.training.train import build_env, run_meta


def train_and_export(root: Path, action_clip: float | None = None, task: str = "go2-flat") -> Path:
    """A 2-iteration run of ``task`` in ``root``/run, exported to ``root``/policy; returns the artifact."""
    cfg = TrainConfig(task=task, steps_per_env=8, max_iterations=2, save_interval=2, seed=3)
    cfg.env = make_task_config(task)
    cfg.env.num_envs = 32
    if action_clip is not None:
        cfg.env.observation.action_clip = action_clip
    cfg.log_dir, cfg.run_name = root, "run"
    env = build_env(cfg)
    run = root / "run"
    run.mkdir()
    save_config(cfg, run)
    Runner(cfg, env, run, run_meta(cfg, env)).learn(progress=False)
    env.close()
    return export(ExportConfig(run=run, out=root / "policy"))
