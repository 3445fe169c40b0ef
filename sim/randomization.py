"""Domain randomization: draw physical parameters per environment and write them into its model.

Each environment owns an ``MjModel`` copy, so every parameter MuJoCo exposes can differ between
environments while ``mujoco.rollout`` still steps them all in one C call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from trot.sim.strict import ConfigError
from trot.sim.world import ModelIndex


@dataclass
class Range:
    """A uniform range that can be switched off (then the nominal value is used)."""

    low: float
    high: float
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ConfigError(f"range: low {self.low} is above high {self.high}")



@dataclass
class RandomizationConfig:
    """Domain randomization, redrawn per environment at every reset."""

    friction: Range = field(default_factory=lambda: Range(0.4, 1.25))
    """Ground (and foot) sliding friction."""
    added_base_mass: Range = field(default_factory=lambda: Range(-1.0, 3.0))
    """kg added to the base body: a payload of up to 3 kg, so that the card's 2 kg (with its CoM
    offset on all three axes at once, a corner of the box below) lies inside the range, not on it."""
    com_offset: Range = field(default_factory=lambda: Range(-0.05, 0.05))
    """m, per axis, added to the base centre of mass."""
    motor_strength: Range = field(default_factory=lambda: Range(0.9, 1.1))
    """Scale on motor torque (gains and torque limits)."""
    kp_scale: Range = field(default_factory=lambda: Range(0.9, 1.1))
    kd_scale: Range = field(default_factory=lambda: Range(0.9, 1.1))
    action_delay_steps: Range = field(default_factory=lambda: Range(0, 1))
    """Whole control steps of action latency (integers in [low, high])."""
    action_delay_substeps: Range = field(default_factory=lambda: Range(0, 2))
    """Physics sub-steps of latency within a control step (integers in [low, high])."""
    joint_damping_scale: Range = field(default_factory=lambda: Range(0.8, 1.2))
    armature_scale: Range = field(default_factory=lambda: Range(0.8, 1.2))
    frictionloss_scale: Range = field(default_factory=lambda: Range(0.5, 1.5))
    push_interval_s: Range = field(default_factory=lambda: Range(5.0, 10.0))
    """Seconds between random pushes."""
    push_velocity: Range = field(default_factory=lambda: Range(0.0, 0.5))
    """Magnitude of the push, an instant change of the base's horizontal velocity, m/s."""
    init_joint_pos: Range = field(default_factory=lambda: Range(-0.1, 0.1))
    """rad added to each joint's default position at reset."""
    init_base_vel: Range = field(default_factory=lambda: Range(-0.3, 0.3))
    """m/s and rad/s added to each base velocity component at reset."""
    elliptic_cone: Range = field(default_factory=lambda: Range(1, 1))
    """1: the environment's friction cone is elliptic, the no-slip contact a robot MJCF such as the
    Go2's ships; 0: the model's own (trot's pyramidal one, which lets feet slip more). Integers in
    [low, high]; by default every environment is on the elliptic cone, which makes policies fall less
    on the robot MJCF's own model than a mix of both, at a higher physics cost
    (bench/results/time_to_walk.md, step_profile.md). ``0 0``: pyramidal only."""
    impratio: Range = field(default_factory=lambda: Range(1.0, 100.0))
    """The elliptic cone's impratio, how much stiffer friction is than the normal force (the Go2's
    MJCF: 100); the model's own cone keeps its own."""

    def names(self) -> list[str]:
        return list(self.__dataclass_fields__)

    def disable_all(self) -> RandomizationConfig:
        for name in self.names():
            getattr(self, name).enabled = False
        return self



#: Model parameters, in the order they appear in the critic's privileged observation.
PARAMS = (
    "friction",
    "added_base_mass",
    "com_offset_x",
    "com_offset_y",
    "com_offset_z",
    "motor_strength",
    "kp_scale",
    "kd_scale",
    "action_delay_steps",
    "action_delay_substeps",
    "joint_damping_scale",
    "armature_scale",
    "frictionloss_scale",
    "elliptic_cone",
    "impratio",
)
ELLIPTIC_ITERATIONS, ELLIPTIC_LS_ITERATIONS = 10, 20
"""Solver iterations at least, with an elliptic cone: 4 leave its friction at a high impratio far
from converged (the robot then slides as if on ice), 10 come within a few % of 30."""


@dataclass
class Nominal:
    """The unrandomized values, read once from the base model."""

    geom_friction: np.ndarray
    body_mass: float
    body_ipos: np.ndarray
    gainprm: np.ndarray
    biasprm: np.ndarray
    forcerange: np.ndarray
    dof_damping: np.ndarray
    dof_armature: np.ndarray
    dof_frictionloss: np.ndarray
    cone: int
    impratio: float
    iterations: int
    ls_iterations: int

    @classmethod
    def read(cls, model: mujoco.MjModel, index: ModelIndex) -> Nominal:
        return cls(
            geom_friction=model.geom_friction.copy(),
            body_mass=float(model.body_mass[index.base_body]),
            body_ipos=model.body_ipos[index.base_body].copy(),
            gainprm=model.actuator_gainprm.copy(),
            biasprm=model.actuator_biasprm.copy(),
            forcerange=model.actuator_forcerange.copy(),
            dof_damping=model.dof_damping.copy(),
            dof_armature=model.dof_armature.copy(),
            dof_frictionloss=model.dof_frictionloss.copy(),
            cone=int(model.opt.cone),
            impratio=float(model.opt.impratio),
            iterations=int(model.opt.iterations),
            ls_iterations=int(model.opt.ls_iterations),
        )


def _draw(rng: np.random.Generator, r: Range, nominal: float, n: int, integer: bool = False) -> np.ndarray:
    if not r.enabled:
        return np.full(n, nominal, dtype=np.float64)
    if integer:
        return rng.integers(int(r.low), int(r.high) + 1, size=n).astype(np.float64)
    return rng.uniform(r.low, r.high, size=n)


def sample(rng: np.random.Generator, cfg: RandomizationConfig, n: int) -> np.ndarray:
    """[n, len(PARAMS)] parameters for n environments (nominal where a range is disabled)."""
    cols = {
        "friction": _draw(rng, cfg.friction, 1.0, n),
        "added_base_mass": _draw(rng, cfg.added_base_mass, 0.0, n),
        "com_offset_x": _draw(rng, cfg.com_offset, 0.0, n),
        "com_offset_y": _draw(rng, cfg.com_offset, 0.0, n),
        "com_offset_z": _draw(rng, cfg.com_offset, 0.0, n),
        "motor_strength": _draw(rng, cfg.motor_strength, 1.0, n),
        "kp_scale": _draw(rng, cfg.kp_scale, 1.0, n),
        "kd_scale": _draw(rng, cfg.kd_scale, 1.0, n),
        "action_delay_steps": _draw(rng, cfg.action_delay_steps, 0.0, n, integer=True),
        "action_delay_substeps": _draw(rng, cfg.action_delay_substeps, 0.0, n, integer=True),
        "joint_damping_scale": _draw(rng, cfg.joint_damping_scale, 1.0, n),
        "armature_scale": _draw(rng, cfg.armature_scale, 1.0, n),
        "frictionloss_scale": _draw(rng, cfg.frictionloss_scale, 1.0, n),
        "elliptic_cone": _draw(rng, cfg.elliptic_cone, 0.0, n, integer=True),
        "impratio": _draw(rng, cfg.impratio, 1.0, n),
    }
    return np.stack([cols[p] for p in PARAMS], axis=1)


def apply(model: mujoco.MjModel, nominal: Nominal, index: ModelIndex, params: np.ndarray) -> None:
    """Write one environment's parameters (a row of :func:`sample`) into its model."""
    p = dict(zip(PARAMS, params, strict=True))
    model.geom_friction[:, 0] = nominal.geom_friction[:, 0] * p["friction"]
    model.body_mass[index.base_body] = nominal.body_mass + p["added_base_mass"]
    model.body_ipos[index.base_body] = nominal.body_ipos + (p["com_offset_x"], p["com_offset_y"], p["com_offset_z"])
    strength = p["motor_strength"]
    kp = nominal.gainprm[:, 0] * p["kp_scale"] * strength
    model.actuator_gainprm[:, 0] = kp
    model.actuator_biasprm[:, 1] = -kp
    model.actuator_biasprm[:, 2] = nominal.biasprm[:, 2] * p["kd_scale"] * strength
    model.actuator_forcerange[:] = nominal.forcerange * strength
    model.dof_damping[:] = nominal.dof_damping * p["joint_damping_scale"]
    model.dof_armature[:] = nominal.dof_armature * p["armature_scale"]
    model.dof_frictionloss[:] = nominal.dof_frictionloss * p["frictionloss_scale"]
    if p["elliptic_cone"]:
        model.opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
        model.opt.impratio = p["impratio"]
        model.opt.iterations = max(nominal.iterations, ELLIPTIC_ITERATIONS)
        model.opt.ls_iterations = max(nominal.ls_iterations, ELLIPTIC_LS_ITERATIONS)
    else:
        model.opt.cone, model.opt.impratio = nominal.cone, nominal.impratio
        model.opt.iterations, model.opt.ls_iterations = nominal.iterations, nominal.ls_iterations
