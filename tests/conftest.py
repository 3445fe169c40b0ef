import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest

from training.envs.config import EnvConfig


@pytest.fixture
def quiet_cfg():
    """A Go2 task config with every randomization and the observation noise switched off."""

    def make(num_envs: int = 4, robot: str = "go2") -> EnvConfig:
        cfg = EnvConfig(robot=robot, num_envs=num_envs, nthread=2)
        cfg.randomization.disable_all()
        cfg.noise.enabled = False
        return cfg

    return make
