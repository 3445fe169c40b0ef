import subprocess
import sys
from pathlib import Path

import pytest

from trot.sim.gl import choose_offscreen_gl

choose_offscreen_gl()  # before mujoco's first import, which reads MUJOCO_GL (see trot.sim.gl)

from trot.testing.requires import in_ci, message, missing, require

if in_ci():  # a package that does not import ends the run here, before any test could skip for it
    _missing = missing()
    if _missing:
        pytest.exit(
            "CI=true, and the suite needs every package: "
            + "; ".join(message(name, error) for name, error in _missing.items()),
            returncode=pytest.ExitCode.USAGE_ERROR,
        )

from trot.training.tasks.velocity.config import EnvConfig


@pytest.fixture
def quiet_cfg():
    """A Go2 task config with every randomization and the observation noise switched off."""

    def make(num_envs: int = 4, robot: str = "go2") -> EnvConfig:
        cfg = EnvConfig(robot=robot, num_envs=num_envs, nthread=2)
        cfg.randomization.disable_all()
        cfg.noise.enabled = False
        return cfg

    return make


@pytest.fixture(scope="session")
def deploy_run(tmp_path_factory) -> Path:
    """One `trot deploy --sim` episode (with its replay report), shared by the deploy and replay tests."""
    require("rclpy")
    out = tmp_path_factory.mktemp("deploy")
    run = subprocess.run(
        [sys.executable, "-m", "trot.cli", "deploy", "--sim", "--out", str(out), "--domain-id", "199"],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "command tracking" in run.stdout and "report:" in run.stdout
    assert "Traceback" not in run.stderr, run.stderr[-3000:]  # e.g. a shutdown race between threads
    return out


@pytest.fixture
def graph():
    """One ROS domain for one test: its node processes and a probe node (trot.testing.graph.Graph)."""
    require("rclpy")
    from trot.testing.graph import Graph

    g = Graph()
    yield g
    g.close()
