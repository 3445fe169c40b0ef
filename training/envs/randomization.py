"""Domain randomization: draw physical parameters per environment and write them into its model.

Each environment owns an ``MjModel`` copy, so every parameter MuJoCo exposes can differ between
environments while ``mujoco.rollout`` still steps them all in one C call.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from training.envs.config import RandomizationConfig, Range
from training.model import ModelIndex

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
)


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
