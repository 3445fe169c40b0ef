"""Task registry: a name on the command line -> an environment config with that task's defaults."""

from __future__ import annotations

from collections.abc import Callable

from trot.sim.strict import ConfigError
from trot.training.tasks.velocity.config import EnvConfig


def go2_flat() -> EnvConfig:
    """Unitree Go2, velocity tracking on flat ground."""
    return EnvConfig(robot="go2", num_envs=512)


def go1_flat() -> EnvConfig:
    """Unitree Go1, velocity tracking on flat ground."""
    return EnvConfig(robot="go1", num_envs=512)


TASKS: dict[str, Callable[[], EnvConfig]] = {"go2-flat": go2_flat, "go1-flat": go1_flat}


def make_task_config(name: str) -> EnvConfig:
    if name not in TASKS:
        raise ConfigError(f"task: unknown task {name!r} (available: {sorted(TASKS)})")
    return TASKS[name]()
