import imageio.v3 as iio
import numpy as np

from trot.sim.render import Renderer, write_mp4
from trot.training.tasks.velocity.env import LocomotionEnv


def test_render_episode_to_mp4(tmp_path, quiet_cfg) -> None:
    env = LocomotionEnv(quiet_cfg(num_envs=1))
    env.reset(seed=0)
    renderer = Renderer(env.robot, width=320, height=192, terrain=env.cfg.terrain)
    frames = []
    for _ in range(6):
        env.step(np.zeros((1, 12)))
        frames.append(renderer.frame(env.qpos[0]))
    renderer.close()
    env.close()
    assert frames[0].shape == (192, 320, 3)
    assert frames[0].std() > 5, "a blank frame"
    path = write_mp4(frames, tmp_path / "ep.mp4", fps=25)
    back = iio.imread(path, plugin="pyav") if _has("av") else iio.imread(path)
    assert back.shape[0] == 6


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
