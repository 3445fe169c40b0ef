"""Task registry: a name on the command line -> the environment config of a task variant.

A task is a folder (``velocity/``: its env, rewards and config). A variant (another robot,
another terrain, other settings) is one entry here, a few lines over the task's defaults; e.g.
a rough-terrain Go2 is ``velocity_config("go2", TerrainConfig(kind="rough"))``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from trot.sim.strict import ConfigError
from trot.sim.terrain import TerrainConfig
from trot.training.tasks.velocity.config import EnvConfig, velocity_config

FLAT = TerrainConfig(kind="flat")


@dataclass(frozen=True)
class Task:
    """A registered task variant."""

    description: str
    make_config: Callable[[], EnvConfig]
    """A fresh environment config with the variant's defaults (every field overridable from the CLI)."""


TASKS: dict[str, Task] = {
    "go2-flat": Task("Unitree Go2, velocity tracking on flat ground", lambda: velocity_config("go2", FLAT)),
    "go1-flat": Task("Unitree Go1, velocity tracking on flat ground", lambda: velocity_config("go1", FLAT)),
}


def make_task_config(name: str) -> EnvConfig:
    if name not in TASKS:
        raise ConfigError(f"task: unknown task {name!r} (available: {sorted(TASKS)})")
    return TASKS[name].make_config()
