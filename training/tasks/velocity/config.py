"""Typed configuration of the velocity-tracking task. Every field is overridable from the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field

from trot.sim.randomization import RandomizationConfig
from trot.sim.terrain import TerrainConfig


@dataclass
class CommandConfig:
    """Velocity commands, body frame; resampled during episodes."""

    lin_vel_x: tuple[float, float] = (-1.0, 1.0)
    """Forward velocity range, m/s."""
    lin_vel_y: tuple[float, float] = (-0.5, 0.5)
    """Lateral velocity range, m/s."""
    ang_vel_yaw: tuple[float, float] = (-1.0, 1.0)
    """Yaw rate range, rad/s."""
    resample_interval_s: float = 4.0
    """A new command is drawn every this many seconds of an episode, on average."""
    resample_spread_s: float = 2.0
    """Each interval is drawn uniformly within +- this of ``resample_interval_s``, so commands change
    at any moment of a gait cycle and episodes hold several changes, among them stops and reversals
    from top speed: a robot is braked by a new command far more often than it is pushed."""
    zero_probability: float = 0.2
    """Share of commands that are exactly zero (stand still): every such draw is also a stop from the
    previous command."""
    single_axis_probability: float = 0.2
    """Share of commands that move along one axis only (pure forward, sideways or turning),
    the axis drawn uniformly: a teleop stick or a scripted walk sends those, and independent draws
    on three axes almost never do (a pure sideways command at most 0.1 off the other two axes is 1%
    of them)."""


@dataclass
class ObservationConfig:
    """Per-term scales (they go into the contract) and training-time noise levels (physical units)."""

    ang_vel_scale: float = 0.25
    gravity_scale: float = 1.0
    command_scale: float = 1.0
    joint_pos_scale: float = 1.0
    joint_vel_scale: float = 0.05
    action_scale: float = 1.0
    action_clip: float = 100.0
    """Raw actions are clipped to +-action_clip before mapping to joint targets."""


@dataclass
class NoiseConfig:
    """Uniform observation noise, +- level in physical units, per term."""

    enabled: bool = True
    ang_vel: float = 0.2
    gravity: float = 0.05
    joint_pos: float = 0.01
    joint_vel: float = 1.5


@dataclass
class RewardConfig:
    """Reward weights (per second: each term is multiplied by the control period)."""

    tracking_lin_vel: float = 1.5
    tracking_ang_vel: float = 0.75
    lin_vel_z: float = -2.0
    ang_vel_xy: float = -0.05
    orientation: float = -1.0
    torques: float = -2e-4
    joint_acc: float = -2.5e-7
    action_rate: float = -0.01
    feet_air_time: float = 1.0
    collision: float = -1.0
    joint_limits: float = -10.0
    stand_still: float = -0.5
    tracking_sigma: float = 0.05
    """Width of the exp kernel of the tracking terms, (m/s)^2. With legged_gym's 0.25 (and weights 1.0
    and 0.5) standing still lost less tracking reward than walking slowly costs in torque, joint
    acceleration and body motion, and the policy ignored commands under ~0.3 m/s or rad/s (roughly,
    the dead band is where weight x (1 - exp(-command^2 / sigma)) equals the cost of walking). A
    narrower kernel shrinks that dead band (CHANGELOG.md has the runs)."""
    air_time_target: float = 0.5
    """Feet air time above this is rewarded at touchdown, s."""
    air_time_bonus_only: bool = True
    """Reward steps longer than air_time_target and never penalise shorter ones: slow commands need
    short steps, and legged_gym's form makes them cost more than standing still."""
    soft_joint_limit: float = 0.9
    """Fraction of the joint range beyond which joint_limits penalises."""
    only_positive: bool = True
    """Clip the step's total reward at zero (legged_gym): penalties must never make falling early pay."""


@dataclass
class TerminationConfig:
    max_tilt_rad: float = 1.0
    """An episode ends when the base tilts further than this from upright."""
    thigh_contact: bool = False
    """Also end when a body of the robot's ``undesired_contacts`` (thighs on a quadruped) touches
    the ground (base contact always ends the episode)."""


@dataclass
class EnvConfig:
    """The velocity-tracking task: a robot, the terrain it walks on, and the task's settings."""

    robot: str = "go2"
    """Shipped robot name or path of a robot YAML."""
    terrain: TerrainConfig = field(default_factory=TerrainConfig)
    num_envs: int = 256
    episode_length_s: float = 20.0
    nthread: int = 0
    """Physics threads; 0 = all cores."""
    commands: CommandConfig = field(default_factory=CommandConfig)
    observation: ObservationConfig = field(default_factory=ObservationConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    rewards: RewardConfig = field(default_factory=RewardConfig)
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)
    termination: TerminationConfig = field(default_factory=TerminationConfig)


def velocity_config(robot: str, terrain: TerrainConfig | None = None) -> EnvConfig:
    """The task's training defaults for ``robot`` on ``terrain`` (default flat): what a variant
    starts from and overrides."""
    return EnvConfig(robot=robot, terrain=terrain or TerrainConfig(), num_envs=512)
