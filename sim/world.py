"""Builds the MuJoCo model of a robot config with ``mujoco.MjSpec``.

The package MJCF is edited, never copied: torque motors become PD (position) actuators with the
config's gains and torque limits, collisions are reduced to what locomotion needs (feet for
walking, base and thighs to detect falls; no self-collision), a floor is added if missing, and
the sensors the task reads are added. Everything the task reads comes out of ``sensordata``,
so ``mujoco.rollout`` can step many randomized copies in C without returning to Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from trot.sim.robot import RobotConfig
from trot.sim.strict import ConfigError

FLOOR = "floor"
_CONTACT_FOUND = 1  # mjCONDATA_FOUND bit of a contact sensor's data spec
DAMPING_KD = 2.0
"""N m s / rad: what the simulated driver applies to a command without positions (the policy
node's DAMPING), and so what a replay of such a command assumes. A robot's driver has its own."""


@dataclass(frozen=True)
class ModelIndex:
    """Addresses into qpos/qvel/ctrl/sensordata, all in the config's (= policy's) joint order."""

    qpos_adr: np.ndarray
    qvel_adr: np.ndarray
    actuator_ids: np.ndarray
    """Actuator id of each policy joint."""
    joint_ids: np.ndarray
    dof_adr: np.ndarray
    base_body: int
    floor_geom: int
    gyro: slice
    orientation: slice
    linvel: slice
    """Body-frame linear velocity of the IMU site (velocimeter)."""
    torque: np.ndarray
    """sensordata index of each policy joint's actuator force."""
    foot_contact: np.ndarray
    thigh_contact: np.ndarray
    base_contact: int
    joint_range: np.ndarray
    """[J, 2] position limits."""


def _sensor_slice(model: mujoco.MjModel, name: str, field: str) -> slice:
    sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, name)
    if sid < 0:
        raise ConfigError(f"robot.{field}: sensor {name!r} not found in the MJCF")
    adr, dim = int(model.sensor_adr[sid]), int(model.sensor_dim[sid])
    return slice(adr, adr + dim)


def build_spec(cfg: RobotConfig, *, visual: bool = False) -> mujoco.MjSpec:
    """The edited spec. ``visual=True`` keeps meshes and adds lights/sky for rendering."""
    spec = mujoco.MjSpec.from_file(str(cfg.mjcf_path()))
    bodies = {b.name: b for b in spec.bodies}
    for field_name, names in (
        ("base_body", [cfg.base_body]),
        ("foot_bodies", list(cfg.foot_bodies)),
        ("thigh_bodies", list(cfg.thigh_bodies)),
    ):
        missing = [n for n in names if n not in bodies]
        if missing:
            raise ConfigError(f"robot.{field_name}: bodies {missing} not found in {cfg.mjcf}")
    joints = {j.name: j for j in spec.joints}
    missing = [n for n in cfg.joints if n not in joints]
    if missing:
        raise ConfigError(f"robot.joints: joints {missing} not found in {cfg.mjcf}")
    if cfg.imu_site not in {s.name for s in spec.sites}:
        raise ConfigError(f"robot.imu_site: site {cfg.imu_site!r} not found in {cfg.mjcf}")
    sensor_names = {s.name for s in spec.sensors}
    for field_name in ("gyro_sensor", "orientation_sensor"):
        if getattr(cfg, field_name) not in sensor_names:
            raise ConfigError(f"robot.{field_name}: sensor {getattr(cfg, field_name)!r} not found in {cfg.mjcf}")

    opt = spec.option
    opt.timestep = cfg.sim.timestep
    opt.iterations = cfg.sim.iterations
    opt.ls_iterations = cfg.sim.ls_iterations
    opt.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    if cfg.sim.cone == "pyramidal":
        opt.cone = mujoco.mjtCone.mjCONE_PYRAMIDAL
        opt.impratio = 1.0
    else:
        opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC

    # Collisions: only feet, base and thighs touch the floor; nothing touches itself.
    keep = set(cfg.foot_bodies) | set(cfg.thigh_bodies) | {cfg.base_body}
    for geom in list(spec.geoms):
        if geom.name == FLOOR or geom.parent.name == "world":
            continue
        is_visual = geom.contype == 0 and geom.conaffinity == 0
        if is_visual:
            if not visual:
                spec.delete(geom)
            continue
        if geom.parent.name in keep:
            geom.contype, geom.conaffinity = 0, 1
            if geom.parent.name in cfg.foot_bodies:
                geom.condim = 3
                geom.priority = 1
                geom.friction = [1.0, 0.005, 0.0001]
        elif visual:
            geom.contype = geom.conaffinity = 0
        else:
            spec.delete(geom)
    if not visual:
        for mesh in list(spec.meshes):
            spec.delete(mesh)
        for light in list(spec.lights):
            spec.delete(light)

    floor = next((g for g in spec.worldbody.geoms if g.type == mujoco.mjtGeom.mjGEOM_PLANE), None)
    if floor is None:
        floor = spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05])
    floor.name = FLOOR
    floor.contype, floor.conaffinity = 1, 0
    floor.condim = 3
    floor.friction = [1.0, 0.005, 0.0001]
    if visual:
        _add_scenery(spec, floor)

    # PD actuators with the config's gains; one per policy joint.
    by_joint = {a.target: a for a in spec.actuators}
    for act in list(spec.actuators):
        if act.target not in cfg.joints:
            spec.delete(act)
    for name, jc in cfg.joints.items():
        act = by_joint.get(name) or spec.add_actuator(target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.name = f"{name}_pd"
        act.set_to_position(kp=jc.kp, kv=jc.kd)
        act.gear = [1, 0, 0, 0, 0, 0]
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_FALSE
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.forcerange = [-jc.torque_limit, jc.torque_limit]
        spec.add_sensor(
            name=f"trot_torque_{name}",
            type=mujoco.mjtSensor.mjSENS_ACTUATORFRC,
            objtype=mujoco.mjtObj.mjOBJ_ACTUATOR,
            objname=act.name,
        )

    spec.add_sensor(
        name="trot_linvel",
        type=mujoco.mjtSensor.mjSENS_VELOCIMETER,
        objtype=mujoco.mjtObj.mjOBJ_SITE,
        objname=cfg.imu_site,
    )
    for prefix, names in (
        ("trot_foot_", cfg.foot_bodies),
        ("trot_thigh_", cfg.thigh_bodies),
        ("trot_base_", [cfg.base_body]),
    ):
        for body in names:
            spec.add_sensor(
                name=prefix + body,
                type=mujoco.mjtSensor.mjSENS_CONTACT,
                objtype=mujoco.mjtObj.mjOBJ_BODY,
                objname=body,
                reftype=mujoco.mjtObj.mjOBJ_GEOM,
                refname=FLOOR,
                intprm=[_CONTACT_FOUND, 0, 1],
            )
    return spec


def _add_scenery(spec: mujoco.MjSpec, floor: mujoco.MjsGeom) -> None:
    spec.add_texture(
        name="trot_grid",
        type=mujoco.mjtTexture.mjTEXTURE_2D,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
        rgb1=[0.82, 0.85, 0.88],
        rgb2=[0.70, 0.74, 0.78],
        width=300,
        height=300,
    )
    spec.add_material(name="trot_floor", textures=["", "trot_grid"], texrepeat=[4, 4], texuniform=True)
    floor.material = "trot_floor"
    spec.worldbody.add_light(pos=[0, 0, 4], dir=[0, 0, -1], type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL)
    spec.visual.global_.offwidth = 1280
    spec.visual.global_.offheight = 720
    # No multisampling: software GL (Mesa llvmpipe on headless machines) renders 2x faster.
    spec.visual.quality.offsamples = 0


def compile_model(cfg: RobotConfig, *, visual: bool = False) -> tuple[mujoco.MjModel, ModelIndex]:
    spec = build_spec(cfg, visual=visual)
    try:
        model = spec.compile()
    except ValueError as exc:
        raise ConfigError(f"robot.mjcf: {cfg.mjcf} failed to compile after editing: {exc}") from exc
    return model, make_index(model, cfg)


def make_index(model: mujoco.MjModel, cfg: RobotConfig) -> ModelIndex:
    def oid(kind: mujoco.mjtObj, name: str) -> int:
        return mujoco.mj_name2id(model, kind, name)

    joint_ids = np.array([oid(mujoco.mjtObj.mjOBJ_JOINT, n) for n in cfg.joints], dtype=np.intp)
    actuator_ids = np.array([oid(mujoco.mjtObj.mjOBJ_ACTUATOR, f"{n}_pd") for n in cfg.joints], dtype=np.intp)

    def sensor_adr(names: list[str]) -> np.ndarray:
        return np.array([model.sensor_adr[oid(mujoco.mjtObj.mjOBJ_SENSOR, n)] for n in names], dtype=np.intp)

    return ModelIndex(
        qpos_adr=model.jnt_qposadr[joint_ids].astype(np.intp),
        qvel_adr=model.jnt_dofadr[joint_ids].astype(np.intp),
        actuator_ids=actuator_ids,
        joint_ids=joint_ids,
        dof_adr=model.jnt_dofadr[joint_ids].astype(np.intp),
        base_body=oid(mujoco.mjtObj.mjOBJ_BODY, cfg.base_body),
        floor_geom=oid(mujoco.mjtObj.mjOBJ_GEOM, FLOOR),
        gyro=_sensor_slice(model, cfg.gyro_sensor, "gyro_sensor"),
        orientation=_sensor_slice(model, cfg.orientation_sensor, "orientation_sensor"),
        linvel=_sensor_slice(model, "trot_linvel", "imu_site"),
        torque=sensor_adr([f"trot_torque_{n}" for n in cfg.joints]),
        foot_contact=sensor_adr([f"trot_foot_{b}" for b in cfg.foot_bodies]),
        thigh_contact=sensor_adr([f"trot_thigh_{b}" for b in cfg.thigh_bodies]),
        base_contact=int(sensor_adr([f"trot_base_{cfg.base_body}"])[0]),
        joint_range=model.jnt_range[joint_ids].copy(),
    )


def home_qpos(model: mujoco.MjModel, index: ModelIndex, cfg: RobotConfig) -> np.ndarray:
    """Standing pose: base at ``init_base_height``, level, joints at their defaults."""
    qpos = model.qpos0.copy()
    qpos[0:3] = [0.0, 0.0, cfg.init_base_height]
    qpos[3:7] = [1.0, 0.0, 0.0, 0.0]
    qpos[index.qpos_adr] = [j.default for j in cfg.joints.values()]
    return qpos


def set_joint_gains(model: mujoco.MjModel, index: ModelIndex, kp: np.ndarray, kd: np.ndarray) -> None:
    """Make the joints' position actuators a PD with these gains, like a motor driver taking Kp/Kd
    (kp = 0: damping only). Shared by the robot sim node and replay's re-simulation."""
    ids = index.actuator_ids
    model.actuator_gainprm[ids, 0] = kp
    model.actuator_biasprm[ids, 1] = -np.asarray(kp)
    model.actuator_biasprm[ids, 2] = -np.asarray(kd)
