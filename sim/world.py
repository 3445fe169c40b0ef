"""The one world builder: a robot config's MJCF, edited with ``mujoco.MjSpec``, on a terrain.

The package MJCF is edited, never copied: torque motors become PD (position) actuators with the
config's gains and torque limits, joint ranges the config gives are set, collisions are reduced to
what locomotion needs (feet for walking, the base and the undesired-contact bodies to detect
falls; no self-collision), the ground comes from :func:`trot.sim.terrain.add_ground`, and the
sensors the task reads are added (IMU sensors the MJCF lacks at the config's IMU site). Everything
the task reads comes out of ``sensordata``, so ``mujoco.rollout`` can step many randomized copies
in C without returning to Python. The training env, the robot node, replay and artifact evaluation
all build their world here, and set PD gains by joint name with :func:`joint_gains` and
:func:`set_joint_gains`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import mujoco
import numpy as np

from trot.policies.contract import Contract
from trot.sim.robot import RobotConfig
from trot.sim.strict import ConfigError
from trot.sim.terrain import FLOOR, GROUND_BODY, GROUND_FRICTION, TerrainConfig, add_ground

__all__ = [
    "DAMPING_KD", "FLOOR", "ModelIndex", "build_spec", "compile_model", "home_qpos", "joint_gains",
    "make_index", "read_joint_gains", "set_joint_gains", "with_mjcf_contacts",
]  # fmt: skip

_CONTACT_FOUND = 1  # mjCONDATA_FOUND bit of a contact sensor's data spec
DAMPING_KD = 2.0
"""N m s / rad: what the simulated driver applies to a command without positions (the policy
node's DAMPING), and so what a replay of such a command assumes. A robot's driver has its own."""
_IMU_SENSORS = {
    "gyro": mujoco.mjtSensor.mjSENS_GYRO,
    "orientation": mujoco.mjtSensor.mjSENS_FRAMEQUAT,
    "accelerometer": mujoco.mjtSensor.mjSENS_ACCELEROMETER,
}


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
    ground_geoms: np.ndarray
    """Geom ids of the ground (the world body's geoms)."""
    gyro: slice
    orientation: slice
    accelerometer: slice
    linvel: slice
    """Body-frame linear velocity of the IMU site (velocimeter)."""
    torque: np.ndarray
    """sensordata index of each policy joint's actuator force."""
    foot_contact: np.ndarray
    undesired_contact: np.ndarray
    base_contact: int
    joint_range: np.ndarray
    """[J, 2] position limits."""


def imu_sensor(cfg: RobotConfig, role: str) -> str:
    """Name of the IMU's ``role`` sensor in the built model: the MJCF's named one, else trot's."""
    return getattr(cfg.imu, role) or f"trot_imu_{role}"


def _sensor_slice(model: mujoco.MjModel, name: str, field: str) -> slice:
    sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, name)
    if sid < 0:
        raise ConfigError(f"robot.{field}: sensor {name!r} not found in the MJCF")
    adr, dim = int(model.sensor_adr[sid]), int(model.sensor_dim[sid])
    return slice(adr, adr + dim)


def _check_names(spec: mujoco.MjSpec, cfg: RobotConfig) -> None:
    """Every name the config gives exists in the MJCF (else a one-line error naming the field)."""
    bodies = {b.name for b in spec.bodies}
    for field_name, names in (("base", [cfg.base]), ("feet", cfg.feet), ("undesired_contacts", cfg.undesired_contacts)):
        missing = [n for n in names if n not in bodies]
        if missing:
            raise ConfigError(f"robot.{field_name}: bodies {missing} not found in {cfg.mjcf}")
    joints = {j.name for j in spec.joints}
    missing = [n for n in cfg.joints if n not in joints]
    if missing:
        raise ConfigError(f"robot.joints: joints {missing} not found in {cfg.mjcf}")
    if cfg.imu.site not in {s.name for s in spec.sites}:
        raise ConfigError(f"robot.imu.site: site {cfg.imu.site!r} not found in {cfg.mjcf}")
    sensor_names = {s.name for s in spec.sensors}
    for role in _IMU_SENSORS:
        name = getattr(cfg.imu, role)
        if name is not None and name not in sensor_names:
            raise ConfigError(f"robot.imu.{role}: sensor {name!r} not found in {cfg.mjcf} (leave it out to have "
                              f"one added at the IMU site)")  # fmt: skip


def build_spec(cfg: RobotConfig, *, terrain: TerrainConfig | None = None, visual: bool = False) -> mujoco.MjSpec:
    """The edited spec on ``terrain`` (default: flat). ``visual=True`` keeps meshes and adds lights
    and a sky for rendering."""
    spec = mujoco.MjSpec.from_file(str(cfg.mjcf_path()))
    _check_names(spec, cfg)

    opt = spec.option
    opt.timestep = cfg.sim.timestep
    own_contacts = cfg.sim.contacts == "mjcf"
    if not own_contacts:
        opt.iterations = cfg.sim.iterations
        opt.ls_iterations = cfg.sim.ls_iterations
        opt.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
        if cfg.sim.cone == "pyramidal":
            opt.cone = mujoco.mjtCone.mjCONE_PYRAMIDAL
            opt.impratio = 1.0
        else:
            opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC

    # Collisions (sim.contacts "trot"): only feet, base and undesired-contact bodies touch the ground;
    # nothing touches itself. With "mjcf" every collision geom stays as the file has it.
    keep = set(cfg.feet) | set(cfg.undesired_contacts) | {cfg.base}
    for geom in list(spec.geoms):
        if geom.parent.name == GROUND_BODY:
            continue
        is_visual = geom.contype == 0 and geom.conaffinity == 0
        if is_visual:
            if not visual:
                spec.delete(geom)
            continue
        if own_contacts:
            continue
        if geom.parent.name in keep:
            geom.contype, geom.conaffinity = 0, 1
            if geom.parent.name in cfg.feet:
                geom.condim = 3
                geom.priority = 1
                geom.friction = list(GROUND_FRICTION)
        elif visual:
            geom.contype = geom.conaffinity = 0
        else:
            spec.delete(geom)
    if not visual:
        for mesh in list(spec.meshes):
            spec.delete(mesh)
        for light in list(spec.lights):
            spec.delete(light)

    ground = add_ground(spec, terrain or TerrainConfig())
    if visual:
        _add_scenery(spec, ground)

    # Joint ranges the config gives (required where the MJCF has none: checked after compiling).
    joints = {j.name: j for j in spec.joints}
    for name, jc in cfg.joints.items():
        if jc.range is not None:
            joints[name].range = list(jc.range)
            joints[name].limited = mujoco.mjtLimited.mjLIMITED_TRUE

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
        objname=cfg.imu.site,
    )
    for prefix, names in (
        ("trot_foot_", cfg.feet),
        ("trot_undesired_", cfg.undesired_contacts),
        ("trot_base_", [cfg.base]),
    ):
        for body in names:
            spec.add_sensor(
                name=prefix + body,
                type=mujoco.mjtSensor.mjSENS_CONTACT,
                objtype=mujoco.mjtObj.mjOBJ_BODY,
                objname=body,
                reftype=mujoco.mjtObj.mjOBJ_BODY,
                refname=GROUND_BODY,
                intprm=[_CONTACT_FOUND, 0, 1],
            )
    for role, sensor_type in _IMU_SENSORS.items():
        if getattr(cfg.imu, role) is None:
            spec.add_sensor(name=imu_sensor(cfg, role), type=sensor_type, objtype=mujoco.mjtObj.mjOBJ_SITE,
                            objname=cfg.imu.site)  # fmt: skip
    return spec


def _add_scenery(spec: mujoco.MjSpec, ground: list[mujoco.MjsGeom]) -> None:
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
    for geom in ground:
        geom.material = "trot_floor"
    spec.worldbody.add_light(pos=[0, 0, 4], dir=[0, 0, -1], type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL)
    spec.visual.global_.offwidth = 1280
    spec.visual.global_.offheight = 720
    # No multisampling: software GL (Mesa llvmpipe on headless machines) renders 2x faster.
    spec.visual.quality.offsamples = 0


def with_mjcf_contacts(cfg: RobotConfig) -> RobotConfig:
    """``cfg`` on its MJCF's own contact model (``sim.contacts: mjcf``) at the file's own physics step,
    with the decimation that keeps the control period: the robot as its model file ships it."""
    timestep = mujoco.MjSpec.from_file(str(cfg.mjcf_path())).option.timestep
    decimation = round(cfg.sim.control_dt / timestep)
    if abs(decimation * timestep - cfg.sim.control_dt) > 1e-9:
        raise ConfigError(f"robot.mjcf: {cfg.mjcf}'s timestep {timestep} s does not divide the control period "
                          f"{cfg.sim.control_dt} s")  # fmt: skip
    sim = dataclasses.replace(cfg.sim, contacts="mjcf", timestep=timestep, decimation=decimation)
    return dataclasses.replace(cfg, sim=sim)


def compile_model(
    cfg: RobotConfig, *, terrain: TerrainConfig | None = None, visual: bool = False
) -> tuple[mujoco.MjModel, ModelIndex]:
    """The world of robot ``cfg`` on ``terrain`` (default: flat), and its index."""
    spec = build_spec(cfg, terrain=terrain, visual=visual)
    try:
        model = spec.compile()
    except ValueError as exc:
        raise ConfigError(f"robot.mjcf: {cfg.mjcf} failed to compile after editing: {exc}") from exc
    return model, make_index(model, cfg)


def make_index(model: mujoco.MjModel, cfg: RobotConfig) -> ModelIndex:
    def oid(kind: mujoco.mjtObj, name: str) -> int:
        return mujoco.mj_name2id(model, kind, name)

    joint_ids = np.array([oid(mujoco.mjtObj.mjOBJ_JOINT, n) for n in cfg.joints], dtype=np.intp)
    unlimited = [n for n, j in zip(cfg.joints, joint_ids, strict=True) if not model.jnt_limited[j]]
    if unlimited:
        raise ConfigError(f"robot.joints.{unlimited[0]}.range: {cfg.mjcf} gives joints {unlimited} no position "
                          "range; give each one in the robot config (range: [lower, upper], rad)")  # fmt: skip
    actuator_ids = np.array([oid(mujoco.mjtObj.mjOBJ_ACTUATOR, f"{n}_pd") for n in cfg.joints], dtype=np.intp)

    def sensor_adr(names: Sequence[str]) -> np.ndarray:
        return np.array([model.sensor_adr[oid(mujoco.mjtObj.mjOBJ_SENSOR, n)] for n in names], dtype=np.intp)

    ground_body = oid(mujoco.mjtObj.mjOBJ_BODY, GROUND_BODY)
    return ModelIndex(
        qpos_adr=model.jnt_qposadr[joint_ids].astype(np.intp),
        qvel_adr=model.jnt_dofadr[joint_ids].astype(np.intp),
        actuator_ids=actuator_ids,
        joint_ids=joint_ids,
        dof_adr=model.jnt_dofadr[joint_ids].astype(np.intp),
        base_body=oid(mujoco.mjtObj.mjOBJ_BODY, cfg.base),
        ground_geoms=np.flatnonzero(model.geom_bodyid == ground_body),
        gyro=_sensor_slice(model, imu_sensor(cfg, "gyro"), "imu.gyro"),
        orientation=_sensor_slice(model, imu_sensor(cfg, "orientation"), "imu.orientation"),
        accelerometer=_sensor_slice(model, imu_sensor(cfg, "accelerometer"), "imu.accelerometer"),
        linvel=_sensor_slice(model, "trot_linvel", "imu.site"),
        torque=sensor_adr([f"trot_torque_{n}" for n in cfg.joints]),
        foot_contact=sensor_adr([f"trot_foot_{b}" for b in cfg.feet]),
        undesired_contact=sensor_adr([f"trot_undesired_{b}" for b in cfg.undesired_contacts]),
        base_contact=int(sensor_adr([f"trot_base_{cfg.base}"])[0]),
        joint_range=model.jnt_range[joint_ids].copy(),
    )


def home_qpos(model: mujoco.MjModel, index: ModelIndex, cfg: RobotConfig) -> np.ndarray:
    """Standing pose: base at ``init_base_height``, level, joints at their defaults."""
    qpos = model.qpos0.copy()
    qpos[0:3] = [0.0, 0.0, cfg.init_base_height]
    qpos[3:7] = [1.0, 0.0, 0.0, 0.0]
    qpos[index.qpos_adr] = [j.default for j in cfg.joints.values()]
    return qpos


def joint_gains(
    robot: RobotConfig, contract: Contract | None = None, joint_names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """PD gains (kp, kd) of ``joint_names`` (default: the robot's joints, in its order), matched by
    name: a policy's contract's where one is given (the gains it was trained with), else the robot
    config's. The one place gains meet model joints: the robot node and replay both take them here."""
    names = list(robot.joint_names if joint_names is None else joint_names)
    if contract is None:
        if missing := [n for n in names if n not in robot.joints]:
            raise ConfigError(f"robot.joints: no joints {missing} in robot {robot.name!r}")
        return np.array([robot.joints[n].kp for n in names]), np.array([robot.joints[n].kd for n in names])
    if missing := [n for n in names if n not in contract.joint_names]:
        raise ConfigError(f"contract.joint_names: no joints {missing} in the policy's contract")
    order = [contract.joint_names.index(n) for n in names]
    return np.asarray(contract.kp)[order], np.asarray(contract.kd)[order]


def set_joint_gains(model: mujoco.MjModel, index: ModelIndex, kp: np.ndarray, kd: np.ndarray) -> None:
    """Make the joints' position actuators a PD with these gains (policy joint order), like a motor
    driver taking Kp/Kd (kp = 0: damping only)."""
    ids = index.actuator_ids
    model.actuator_gainprm[ids, 0] = kp
    model.actuator_biasprm[ids, 1] = -np.asarray(kp)
    model.actuator_biasprm[ids, 2] = -np.asarray(kd)


def read_joint_gains(model: mujoco.MjModel, index: ModelIndex) -> tuple[np.ndarray, np.ndarray]:
    """The PD gains (kp, kd) the joints' actuators apply now (e.g. after randomization)."""
    ids = index.actuator_ids
    return model.actuator_gainprm[ids, 0].copy(), -model.actuator_biasprm[ids, 2].copy()
