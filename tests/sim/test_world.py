"""The one world builder: a terrain slot, contact sensors that follow the ground, gains by joint
name; and the task registry's variants."""

import dataclasses

import mujoco
import numpy as np
import pytest

from trot.sim.robot import load_robot
from trot.sim.strict import ConfigError
from trot.sim.terrain import TERRAINS, TerrainConfig
from trot.sim.world import (
    compile_model,
    home_qpos,
    joint_gains,
    read_joint_gains,
    set_joint_gains,
    with_mjcf_contacts,
)
from trot.training.run_config import default_config
from trot.training.tasks import TASKS, make_task_config
from trot.training.tasks.velocity.config import EnvConfig
from trot.training.tasks.velocity.env import make_contract
from trot.training.train import parse_args


def _step_terrain(spec: mujoco.MjSpec, terrain: TerrainConfig) -> list[mujoco.MjsGeom]:
    """A plane 1 m down with a 1 m tall box on it: a terrain that is not the flat plane."""
    plane = spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05], pos=[0, 0, -1.0])
    box = spec.worldbody.add_geom(name="step", type=mujoco.mjtGeom.mjGEOM_BOX, size=[1, 1, 0.5], pos=[0, 0, -0.5])
    return [plane, box]


def test_contacts_and_friction_follow_any_terrain(monkeypatch) -> None:
    """A terrain kind is a function adding world-body geoms: the robot standing on a box (not on
    the plane) has its feet in contact, and the ground geoms are what randomization and the
    index call the ground."""
    monkeypatch.setitem(TERRAINS, "step", _step_terrain)
    robot = load_robot("go2")
    model, index = compile_model(robot, terrain=TerrainConfig(kind="step"))  # type: ignore[arg-type]
    data = mujoco.MjData(model)
    data.qpos[:] = home_qpos(model, index, robot)
    data.ctrl[index.actuator_ids] = data.qpos[index.qpos_adr]
    for _ in range(100):
        mujoco.mj_step(model, data)
    assert np.all(data.sensordata[index.foot_contact] > 0)
    assert data.sensordata[index.base_contact] == 0
    box = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "step")
    assert box in index.ground_geoms and len(index.ground_geoms) == 2
    assert all(model.geom_contype[g] == 1 and model.geom_conaffinity[g] == 0 for g in index.ground_geoms)
    assert abs(data.qpos[2] - robot.init_base_height) < 0.05  # standing on the box, not fallen to the plane


def test_flat_is_the_default_terrain() -> None:
    robot = load_robot("go2")
    with pytest.raises(ConfigError, match=r"terrain\.kind: 'lunar' is not one of \['flat'\]"):
        compile_model(robot, terrain=TerrainConfig(kind="lunar"))  # type: ignore[arg-type]
    flat, flat_index = compile_model(robot, terrain=TerrainConfig(kind="flat"))
    default, _ = compile_model(robot)
    assert flat.ngeom == default.ngeom and len(flat_index.ground_geoms) == 1
    assert flat.geom_type[flat_index.ground_geoms[0]] == mujoco.mjtGeom.mjGEOM_PLANE


def test_gains_are_matched_by_joint_name() -> None:
    robot = load_robot("go2")
    kp, kd = joint_gains(robot)
    assert kp.tolist() == [j.kp for j in robot.joints.values()] and kd.tolist() == [j.kd for j in robot.joints.values()]
    model, index = compile_model(robot)
    contract = make_contract(robot, EnvConfig(), index.joint_range)
    # a contract listing the joints in another order, each with its own gains
    perm = np.arange(len(robot.joint_names))[::-1]
    gains = np.arange(1.0, 13.0)
    per_joint = ("joint_names", "default_joint_pos", "torque_limits", "joint_pos_lower", "joint_pos_upper")
    shuffled = dataclasses.replace(
        contract,
        **{f: tuple(np.asarray(getattr(contract, f))[perm]) for f in per_joint},
        kp=tuple(gains[perm] * 10),
        kd=tuple(gains[perm] / 10),
    )
    kp, kd = joint_gains(robot, shuffled)  # robot order: joint i gets the gains listed for its name
    np.testing.assert_allclose(kp, gains * 10)
    np.testing.assert_allclose(kd, gains / 10)
    set_joint_gains(model, index, kp, kd)
    got_kp, got_kd = read_joint_gains(model, index)
    np.testing.assert_allclose(got_kp, kp)
    np.testing.assert_allclose(got_kd, kd)
    with pytest.raises(ConfigError, match=r"contract\.joint_names: no joints \['FL_wing'\]"):
        joint_gains(robot, contract, [*robot.joint_names[:-1], "FL_wing"])


def test_task_variants_keep_their_defaults() -> None:
    assert {"go2-flat", "go1-flat"} <= set(TASKS)
    for name, robot in (("go2-flat", "go2"), ("go1-flat", "go1")):
        assert make_task_config(name) == EnvConfig(robot=robot, num_envs=512, terrain=TerrainConfig(kind="flat"))
        assert default_config(name).env == make_task_config(name)
    cfg, _ = parse_args(["go1-flat", "--env.num-envs", "16", "--env.terrain.kind", "flat"])
    assert (cfg.env.robot, cfg.env.num_envs, cfg.env.terrain.kind) == ("go1", 16, "flat")
    with pytest.raises(ConfigError, match="unknown task 'go3-flat'"):
        make_task_config("go3-flat")


def test_the_mjcfs_own_contact_model_keeps_the_files_physics_and_every_collision_geom() -> None:
    """sim.contacts "mjcf" (with_mjcf_contacts): the option block, collision geoms and their contact
    settings are the package MJCF's, read here from the file itself; the control period is kept; the
    default ("trot") is trot's reduced, cheaper model."""
    robot = load_robot("go2")
    own = with_mjcf_contacts(robot)
    shipped = mujoco.MjSpec.from_file(str(robot.mjcf_path())).compile()  # the file as it ships
    model, index = compile_model(own)
    assert own.sim.contacts == "mjcf" and own.sim.control_dt == pytest.approx(robot.sim.control_dt)
    assert model.opt.timestep == shipped.opt.timestep
    assert own.sim.decimation * shipped.opt.timestep == pytest.approx(0.02)
    for name in ("cone", "impratio", "integrator", "iterations", "ls_iterations", "solver"):
        assert getattr(model.opt, name) == getattr(shipped.opt, name), name
    assert model.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC and model.opt.impratio == 100  # (go2.xml says so)

    def collision_geoms(m: mujoco.MjModel) -> list[tuple]:
        """Each colliding robot geom: body, type, contype, conaffinity, condim, friction, margin."""
        return sorted(
            (mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, m.geom_bodyid[g]), int(m.geom_type[g]),
             int(m.geom_contype[g]), int(m.geom_conaffinity[g]), int(m.geom_condim[g]),
             tuple(np.round(m.geom_friction[g], 6)), round(float(m.geom_margin[g]), 6))
            for g in range(m.ngeom)
            if m.geom_bodyid[g] != 0 and (m.geom_contype[g] or m.geom_conaffinity[g])
        )  # fmt: skip

    assert collision_geoms(model) == collision_geoms(shipped) and len(collision_geoms(model)) > 20
    trot_model, _ = compile_model(robot)
    assert trot_model.opt.cone == mujoco.mjtCone.mjCONE_PYRAMIDAL and trot_model.opt.iterations == 4
    assert len(collision_geoms(trot_model)) < len(collision_geoms(model))
    # it stands and its sensors read: feet on the ground, nothing else
    data = mujoco.MjData(model)
    data.qpos[:] = home_qpos(model, index, own)
    data.ctrl[index.actuator_ids] = data.qpos[index.qpos_adr]
    for _ in range(500):
        mujoco.mj_step(model, data)
    assert np.all(data.sensordata[index.foot_contact] > 0) and data.sensordata[index.base_contact] == 0
    assert abs(data.qpos[2] - own.init_base_height) < 0.06
