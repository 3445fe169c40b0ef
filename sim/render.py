"""Offscreen rendering of one environment to MP4 (MUJOCO_GL=egl works headless)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import imageio.v3 as iio
import mujoco
import numpy as np

from trot.sim.robot import RobotConfig
from trot.sim.terrain import TerrainConfig
from trot.sim.world import compile_model


class Renderer:
    """Renders qpos snapshots of a robot on a terrain (default flat) with its visual meshes and a
    camera that follows the base.

    The visual model differs from the training model only in geoms, so any training qpos can be
    shown as it is.
    """

    def __init__(
        self, robot: RobotConfig, width: int = 640, height: int = 352, *, terrain: TerrainConfig | None = None
    ) -> None:
        self.model, self.index = compile_model(robot, terrain=terrain, visual=True)
        self.data = mujoco.MjData(self.model)
        self._renderer = mujoco.Renderer(self.model, height=height, width=width)
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False  # halves software-GL frame time
        self.camera = mujoco.MjvCamera()
        self.camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self.camera.distance, self.camera.elevation, self.camera.azimuth = 1.6, -20.0, 135.0

    def frame(self, qpos: np.ndarray) -> np.ndarray:
        if qpos.shape != (self.model.nq,):
            raise ValueError(f"qpos has shape {qpos.shape}, the robot has nq={self.model.nq}")
        self.data.qpos[:] = qpos
        mujoco.mj_forward(self.model, self.data)
        self.camera.lookat[:] = [qpos[0], qpos[1], 0.25]
        self._renderer.update_scene(self.data, self.camera)
        return self._renderer.render()

    def close(self) -> None:
        self._renderer.close()


def write_mp4(frames: Iterable[np.ndarray], path: str | Path, fps: float) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.stack(list(frames)), fps=fps, codec="libx264", plugin="pyav" if _has_pyav() else None)
    return path


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True
