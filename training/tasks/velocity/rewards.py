"""Reward terms of the velocity-tracking task (legged_gym / MuJoCo Playground style).

Each term is a function of a :class:`StepQuantities` batch returning one value per environment,
unweighted; the environment multiplies by the configured weight and the control period and logs
every term separately. Terms whose weight is zero are not computed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from trot.training.tasks.velocity.config import RewardConfig


@dataclass
class StepQuantities:
    """What the reward terms read, all batched over environments ([N, ...])."""

    command: np.ndarray  # [N, 3] vx, vy, yaw rate
    base_lin_vel: np.ndarray  # [N, 3] body frame, clean
    base_ang_vel: np.ndarray  # [N, 3] body frame, clean
    gravity: np.ndarray  # [N, 3] projected gravity
    torques: np.ndarray  # [N, J]
    joint_pos: np.ndarray  # [N, J]
    joint_vel: np.ndarray  # [N, J]
    joint_acc: np.ndarray  # [N, J]
    action: np.ndarray  # [N, J] raw policy action this step
    last_action: np.ndarray  # [N, J]
    default_joint_pos: np.ndarray  # [J]
    soft_lower: np.ndarray  # [J]
    soft_upper: np.ndarray  # [J]
    first_contact: np.ndarray  # [N, F] bool, foot touched down this step
    air_time_at_touchdown: np.ndarray  # [N, F] s, air time of feet that touched down
    undesired_contact: np.ndarray  # [N, B] bool: the robot's undesired_contacts bodies touch the ground


def tracking_lin_vel(q: StepQuantities, cfg: RewardConfig) -> np.ndarray:
    err = np.sum(np.square(q.command[:, :2] - q.base_lin_vel[:, :2]), axis=1)
    return np.exp(-err / cfg.tracking_sigma)


def tracking_ang_vel(q: StepQuantities, cfg: RewardConfig) -> np.ndarray:
    err = np.square(q.command[:, 2] - q.base_ang_vel[:, 2])
    return np.exp(-err / cfg.tracking_sigma)


def lin_vel_z(q: StepQuantities, cfg: RewardConfig) -> np.ndarray:
    return np.square(q.base_lin_vel[:, 2])


def ang_vel_xy(q: StepQuantities, cfg: RewardConfig) -> np.ndarray:
    return np.sum(np.square(q.base_ang_vel[:, :2]), axis=1)


def orientation(q: StepQuantities, cfg: RewardConfig) -> np.ndarray:
    return np.sum(np.square(q.gravity[:, :2]), axis=1)


def torques(q: StepQuantities, cfg: RewardConfig) -> np.ndarray:
    return np.sum(np.square(q.torques), axis=1)


def joint_acc(q: StepQuantities, cfg: RewardConfig) -> np.ndarray:
    return np.sum(np.square(q.joint_acc), axis=1)


def action_rate(q: StepQuantities, cfg: RewardConfig) -> np.ndarray:
    return np.sum(np.square(q.action - q.last_action), axis=1)


def _moving(command: np.ndarray) -> np.ndarray:
    return np.linalg.norm(command[:, :2], axis=1) + np.abs(command[:, 2]) > 0.1


def feet_air_time(q: StepQuantities, cfg: RewardConfig) -> np.ndarray:
    """Rewards long steps: (air time - target) summed over feet at touchdown, when moving (only its
    positive part with ``air_time_bonus_only``: see there why)."""
    per_foot = (q.air_time_at_touchdown - cfg.air_time_target) * q.first_contact
    if cfg.air_time_bonus_only:
        per_foot = np.maximum(per_foot, 0.0)
    return np.sum(per_foot, axis=1) * _moving(q.command)


def collision(q: StepQuantities, cfg: RewardConfig) -> np.ndarray:
    return np.sum(q.undesired_contact, axis=1).astype(np.float64)


def joint_limits(q: StepQuantities, cfg: RewardConfig) -> np.ndarray:
    below = np.clip(q.soft_lower - q.joint_pos, 0.0, None)
    above = np.clip(q.joint_pos - q.soft_upper, 0.0, None)
    return np.sum(below + above, axis=1)


def stand_still(q: StepQuantities, cfg: RewardConfig) -> np.ndarray:
    """Deviation from the default pose while the command is zero."""
    return np.sum(np.abs(q.joint_pos - q.default_joint_pos), axis=1) * ~_moving(q.command)


REWARD_TERMS: dict[str, Callable[[StepQuantities, RewardConfig], np.ndarray]] = {
    "tracking_lin_vel": tracking_lin_vel,
    "tracking_ang_vel": tracking_ang_vel,
    "lin_vel_z": lin_vel_z,
    "ang_vel_xy": ang_vel_xy,
    "orientation": orientation,
    "torques": torques,
    "joint_acc": joint_acc,
    "action_rate": action_rate,
    "feet_air_time": feet_air_time,
    "collision": collision,
    "joint_limits": joint_limits,
    "stand_still": stand_still,
}


def compute_rewards(q: StepQuantities, cfg: RewardConfig, dt: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Total reward [N] and each weighted term [N] (only terms with a non-zero weight)."""
    total = np.zeros(q.command.shape[0])
    terms = {}
    for name, fn in REWARD_TERMS.items():
        weight = getattr(cfg, name)
        if weight == 0.0:
            continue
        value = fn(q, cfg) * (weight * dt)
        terms[name] = value
        total += value
    if cfg.only_positive:
        np.clip(total, 0.0, None, out=total)
    return total, terms
