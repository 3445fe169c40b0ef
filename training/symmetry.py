"""Left-right symmetry of a locomotion task: the mirror image of an observation and an action.

Reflecting the world in the robot's sagittal plane (y -> -y) maps every state of a symmetric
robot to another valid state, and the best action in it to the mirrored best action. PPO can use
that twice (as rsl_rl's symmetry extension does): each minibatch also trains on its mirror image
(augmentation), and a loss pulls the actor's output on a mirrored observation towards the mirror
of its output (``PPOConfig.mirror_loss_coef``). Both need only the mirror maps built here, from
joint and foot names (:class:`trot.sim.robot.MirrorConfig`) and from what each observation term
measures; a term without a known reflection is refused, so a new term cannot be mirrored wrongly.

A mirror map is a signed permutation, ``image[..., i] = sign[i] * x[..., index[i]]``, and its own
inverse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trot.policies.contract import Contract
from trot.sim.robot import MirrorConfig

#: Per-component signs of 3-vector terms under y -> -y. A velocity or direction (a polar vector)
#: keeps x and z and flips y; an angular velocity (an axial vector) flips x and z and keeps y; a
#: command (vx, vy, yaw rate) flips its lateral and turning parts.
VECTOR_REFLECTIONS: dict[str, tuple[float, float, float]] = {
    "base_ang_vel": (-1.0, 1.0, -1.0),
    "projected_gravity": (1.0, -1.0, 1.0),
    "command": (1.0, -1.0, -1.0),
    "base_lin_vel": (1.0, -1.0, 1.0),
}
#: Terms with one entry per joint, in the contract's joint order.
JOINT_TERMS = ("joint_pos", "joint_vel", "last_action")
#: Randomized model parameters that change sign in the mirror image (the others are scalars or
#: act alike on both sides).
NEGATED_PARAMS = ("com_offset_y",)


@dataclass(frozen=True)
class Mirror:
    """A signed permutation of the last axis."""

    index: np.ndarray
    sign: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x[..., self.index] * self.sign

    @property
    def size(self) -> int:
        return self.index.size

    def __post_init__(self) -> None:
        if sorted(self.index.tolist()) != list(range(self.index.size)):
            raise ValueError("mirror: index is not a permutation")
        if not (np.array_equal(self.index[self.index], np.arange(self.index.size))
                and np.array_equal(self.sign * self.sign[self.index], np.ones(self.index.size))):  # fmt: skip
            raise ValueError("mirror: not its own inverse (a part's image's image must be the part itself)")


def identity(size: int) -> Mirror:
    return Mirror(np.arange(size), np.ones(size))


def signs(values: Sequence[float]) -> Mirror:
    return Mirror(np.arange(len(values)), np.asarray(values, dtype=np.float64))


def by_name(names: Sequence[str], mirror: MirrorConfig, negate: bool = True) -> Mirror:
    """Entries named by ``names`` (joints or feet) swapped with their mirror images, negated joints'
    signs flipped (``negate``: False for quantities without a sign, foot contacts say)."""
    names = list(names)
    index = np.array([names.index(mirror.image(n)) for n in names])
    sign = np.array([-1.0 if negate and n in mirror.negate else 1.0 for n in names])
    return Mirror(index, sign)


def concat(*parts: Mirror) -> Mirror:
    """One map for vectors made of the parts' vectors, end to end."""
    index, sign, offset = [], [], 0
    for part in parts:
        index.append(part.index + offset)
        sign.append(part.sign)
        offset += part.size
    return Mirror(np.concatenate(index), np.concatenate(sign))


def observation_mirror(contract: Contract, mirror: MirrorConfig) -> Mirror:
    """The mirror map of the contract's observation vector, term by term."""
    joints = by_name(contract.joint_names, mirror)
    parts = []
    for term in contract.obs_terms:
        if term.name in VECTOR_REFLECTIONS and term.size == 3:
            parts.append(signs(VECTOR_REFLECTIONS[term.name]))
        elif term.name in JOINT_TERMS and term.size == contract.num_joints:
            parts.append(joints)
        else:
            raise ValueError(f"symmetry: no mirror image is known for observation term {term.name!r} "
                             f"(known: {sorted([*VECTOR_REFLECTIONS, *JOINT_TERMS])})")  # fmt: skip
    return concat(*parts)


def action_mirror(contract: Contract, mirror: MirrorConfig) -> Mirror:
    """The mirror map of actions (joint offsets from the default pose, in the contract's order)."""
    return by_name(contract.joint_names, mirror)


def params_mirror(names: Sequence[str]) -> Mirror:
    """The mirror map of a vector of randomized parameters, by name."""
    return signs([-1.0 if n in NEGATED_PARAMS else 1.0 for n in names])
