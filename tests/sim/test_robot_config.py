import subprocess
import sys
from pathlib import Path

import mujoco
import numpy as np
import pytest
import yaml

from trot.sim.robot import ROBOTS_DIR, available_robots, load_robot
from trot.sim.strict import ConfigError
from trot.sim.world import FLOOR, compile_model

GO2 = yaml.safe_load((ROBOTS_DIR / "go2.yaml").read_text())


def write(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_shipped_robots() -> None:
    assert {"go1", "go2"} <= set(available_robots())
    for name in ("go1", "go2"):
        robot = load_robot(name)
        assert len(robot.joint_names) == 12 and robot.sim.control_dt == pytest.approx(0.02)


def test_model_is_edited_for_training() -> None:
    robot = load_robot("go2")
    model, index = compile_model(robot)
    # PD actuators with the config's gains and torque limits, in policy joint order
    for name, a in zip(robot.joint_names, index.actuator_ids, strict=True):
        jc = robot.joints[name]
        assert model.actuator_gainprm[a, 0] == jc.kp and model.actuator_biasprm[a, 1] == -jc.kp
        assert model.actuator_biasprm[a, 2] == -jc.kd
        assert model.actuator_forcerange[a].tolist() == [-jc.torque_limit, jc.torque_limit]
        assert model.joint(model.actuator_trnid[a, 0]).name == name
    # a floor, and robot geoms that touch only the floor (no self-collision, no visual meshes)
    floor = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, FLOOR)
    assert floor >= 0 and model.geom_type[floor] == mujoco.mjtGeom.mjGEOM_PLANE
    robot_geoms = [g for g in range(model.ngeom) if g != floor]
    assert all(model.geom_contype[g] == 0 and model.geom_conaffinity[g] == 1 for g in robot_geoms)
    bodies = {model.body(model.geom_bodyid[g]).name for g in robot_geoms}
    assert bodies == {robot.base, *robot.feet, *robot.undesired_contacts}
    assert model.nmesh == 0
    assert model.opt.timestep == robot.sim.timestep
    visual, _ = compile_model(robot, visual=True)
    assert visual.nq == model.nq and visual.nmesh > 0


def test_unknown_robot_is_named() -> None:
    with pytest.raises(ConfigError, match="unknown robot 'spot9'"):
        load_robot("spot9")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(colour="red"), r"robot\.colour: unknown key"),
        (lambda d: d["sim"].update(timestep="fast"), r"robot\.sim\.timestep: expected a number"),
        (lambda d: d.pop("base"), r"robot\.base: required key is missing"),
        (lambda d: d["joints"]["FL_hip_joint"].update(kpp=3.0), r"robot\.joints\.FL_hip_joint\.kpp: unknown key"),
        (lambda d: d.update(action_scale=-1.0), r"robot\.action_scale"),
        (lambda d: d["sim"].update(cone="round"), r"robot\.sim\.cone: 'round' is not one of"),
        (lambda d: d["imu"].update(gyroo="imu_gyro"), r"robot\.imu\.gyroo: unknown key"),
        (lambda d: d.update(foot_bodies=d.pop("feet")), r"robot\.foot_bodies: now 'feet' \(robot files name"),
        (lambda d: d.update(thigh_bodies=d.pop("undesired_contacts")), r"robot\.thigh_bodies: now 'undesired_"),
    ],
)
def test_malformed_config_names_the_field(tmp_path: Path, mutate, message: str) -> None:
    data = yaml.safe_load(yaml.safe_dump(GO2))
    mutate(data)
    with pytest.raises(ConfigError, match=message):
        load_robot(write(tmp_path, data))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["joints"].update(FL_wing_joint=dict(d["joints"]["FL_hip_joint"])),
            r"robot\.joints: joints \['FL_wing_joint'\]",
        ),
        (lambda d: d.update(feet=["FL_foot", "paw"]), r"robot\.feet: bodies \['paw'\]"),
        (lambda d: d.update(base="torso"), r"robot\.base: bodies \['torso'\]"),
        (lambda d: d["imu"].update(gyro="gyro9"), r"robot\.imu\.gyro: sensor 'gyro9'"),
        (lambda d: d.update(mjcf="robot_model/go2/nothing.xml"), r"robot\.mjcf: file not found"),
    ],
)
def test_names_missing_from_the_mjcf_are_reported(tmp_path: Path, mutate, message: str) -> None:
    data = yaml.safe_load(yaml.safe_dump(GO2))
    mutate(data)
    robot = load_robot(write(tmp_path, data))
    with pytest.raises(ConfigError, match=message):
        compile_model(robot)


def test_a_new_robot_is_just_a_file(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(GO2))
    data["name"] = "go2_stiff"
    for jc in data["joints"].values():
        jc["kp"] = 60.0
    robot = load_robot(write(tmp_path, data))
    model, index = compile_model(robot)
    assert np.all(model.actuator_gainprm[index.actuator_ids, 0] == 60.0)


def test_cli_bad_input_exits_non_zero_with_the_field() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trot.cli", "bench-env", "--robot", "spot9", "--steps", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "unknown robot 'spot9'" in result.stderr
    result = subprocess.run([sys.executable, "-m", "trot.cli", "fly"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown command 'fly'" in result.stderr


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trot.cli", "demo", "--train-minutes", "0.02", "--num-envs", "16",
         "--bench-envs", "8", "--eval-episodes", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "go2-flat_demo"
    assert (run / "eval.mp4").stat().st_size > 1000
    assert (run / "checkpoints" / "last.pt").is_file()
    assert "ratio task / raw" in result.stdout
    assert "vx_error_mean" in (run / "eval.json").read_text()
