"""What each observation term is, and what an action means: the definitions an artifact carries.

Each term kind is written down once, here, as data: which reading it is, in which frame and unit,
in which order, what is subtracted, what it is clipped to. The contract carries these definitions
(version 2), so that a controller written from the artifact alone computes the observation; the
:class:`~trot.policies.observation.ObservationBuilder` and
:class:`~trot.policies.observation.ActionMapper` take their offsets, clip and scale from the same
definitions, and the one term whose value is more than an offset and a scale (projected gravity)
has its math right below its definition.

The rule every term follows (:data:`OBSERVATION`): ``term = scale * (clip(value, -clip, clip) - offset)``,
where ``value`` is the reading named by ``input`` in the order of ``components``, ``clip`` and
``offset`` name contract fields (absent: no clip, nothing subtracted) and ``scale`` is the term's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

#: ``TermDefinition.components`` of a term with one entry per joint, in the contract's joint order.
JOINT_ORDER = "joint_names"


@dataclass(frozen=True)
class TermDefinition:
    """One observation term kind, precisely enough to compute it without trot's code."""

    quantity: str
    """What is measured."""
    input: str
    """The robot reading it is computed from."""
    frame: str
    unit: str
    components: tuple[str, ...] | str
    """The order within the term: axis names, or ``"joint_names"`` (one per joint, in that contract field's order)."""
    formula: str
    """The term's entries from the reading, in the contract's field names."""
    text: str
    """The same in a sentence, with the sign conventions."""
    offset: str | None = None
    """Contract field subtracted entry by entry before scaling (None: nothing)."""
    clip: str | None = None
    """Contract field the reading is clipped to, +-value (None: no clip)."""
    world_vector: tuple[float, ...] | None = None
    """A world-frame vector the term expresses in the base frame: ``R(q)^T @ world_vector``."""
    quaternion_order: tuple[str, ...] | None = None
    """Component order of the orientation quaternion ``input`` (for a term computed from one)."""

    def size(self, num_joints: int) -> int:
        return num_joints if self.components == JOINT_ORDER else len(self.components)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TermDefinition:
        """Strict: every field, nothing else (raises KeyError/TypeError/ValueError naming the problem)."""
        names = [f.name for f in fields(cls)]
        if not isinstance(data, dict):
            raise TypeError(f"expected a mapping, got {type(data).__name__}")
        if unknown := sorted(set(data) - set(names)):
            raise ValueError(f"unknown field(s) {unknown}")
        if missing := sorted(set(names) - set(data)):
            raise ValueError(f"missing field(s) {missing}")

        def text(key: str, optional: bool = False) -> str | None:
            value = data[key]
            if optional and value is None:
                return None
            if not isinstance(value, str):
                raise TypeError(f"{key}: expected a string, got {value!r}")
            return value

        def seq(key: str, convert) -> tuple | None:
            value = data[key]
            return None if value is None else tuple(convert(v) for v in value)

        components = data["components"]
        return cls(
            quantity=text("quantity"), input=text("input"), frame=text("frame"), unit=text("unit"),
            components=components if components == JOINT_ORDER else tuple(str(c) for c in components),
            formula=text("formula"), text=text("text"), offset=text("offset", True), clip=text("clip", True),
            world_vector=seq("world_vector", float), quaternion_order=seq("quaternion_order", str),
        )  # fmt: skip


BASE_FRAME = "base (trunk) frame of the IMU: x forward, y left, z up"

#: Every observation term kind trot computes, in the order the velocity task lays them out.
OBS_TERMS: dict[str, TermDefinition] = {
    "base_ang_vel": TermDefinition(
        quantity="angular velocity of the base",
        input="imu.angular_velocity",
        frame=BASE_FRAME,
        unit="rad/s",
        components=("x", "y", "z"),
        formula="scale * gyro",
        text="The IMU gyroscope's angular velocity of the base, in the base frame (x forward, y left, z up), "
        "rad/s, right-handed (positive z: turning left), times scale.",
    ),
    "projected_gravity": TermDefinition(
        quantity="direction of gravity",
        input="imu.orientation",
        frame=BASE_FRAME,
        unit="1 (unit vector)",
        components=("x", "y", "z"),
        formula="scale * R(q)^T @ world_vector",
        text="The world's downward unit vector (0, 0, -1) (world z up) expressed in the base frame: R(q)^T (0, 0, -1), "
        "where q = (w, x, y, z) is the IMU orientation quaternion and R(q) the rotation matrix taking base-frame "
        "vectors to the world frame. (0, 0, -1) when the base is level; x > 0 when the nose points down, y < 0 when "
        "the left side is up. Unitless, times scale.",
        world_vector=(0.0, 0.0, -1.0),
        quaternion_order=("w", "x", "y", "z"),
    ),
    "command": TermDefinition(
        quantity="commanded base velocity",
        input="velocity_command",
        frame=BASE_FRAME,
        unit="m/s, m/s, rad/s",
        components=("lin_vel_x", "lin_vel_y", "ang_vel_yaw"),
        formula="scale * command",
        text="The velocity command: forward speed vx (m/s, along base x), sideways speed vy (m/s, along base y, "
        "positive left) and yaw rate (rad/s about base z, positive turning left), times scale; trained within "
        "command_ranges (keys named like the components).",
    ),
    "joint_pos": TermDefinition(
        quantity="joint position relative to the default pose",
        input="joint.position",
        frame="joint space",
        unit="rad",
        components=JOINT_ORDER,
        formula="scale * (position - default_joint_pos)",
        text="Each joint's encoder position minus its default_joint_pos entry, rad, one per joint in the order of "
        "joint_names, times scale.",
        offset="default_joint_pos",
    ),
    "joint_vel": TermDefinition(
        quantity="joint velocity",
        input="joint.velocity",
        frame="joint space",
        unit="rad/s",
        components=JOINT_ORDER,
        formula="scale * velocity",
        text="Each joint's velocity, rad/s, one per joint in the order of joint_names, times scale (nothing "
        "subtracted).",
    ),
    "last_action": TermDefinition(
        quantity="previous action as mapped to targets",
        input="previous_action",
        frame="joint space",
        unit="action (target offset / action_scale)",
        components=JOINT_ORDER,
        formula="scale * clip(previous_action, -action_clip, action_clip)",
        text="The network's output of the previous control step clipped to +-action_clip (the action as mapped to "
        "joint targets, before action_scale), zeros before the first step and after a reset; one per joint in the "
        "order of joint_names, times scale.",
        clip="action_clip",
    ),
}

#: How the terms make the network's input.
OBSERVATION: dict[str, Any] = {
    "input": "obs",
    "dtype": "float32",
    "shape": ["batch", "num_obs"],
    "layout": "the obs_terms concatenated in their order, each term's `size` entries",
    "term": "scale * (clip(value, -clip, clip) - offset): value = the reading named by `input` (rotated for a term "
    "with a world_vector), in the order of `components`; `clip` and `offset` name contract fields (null: none)",
    "rate": "one observation and one action every control_dt seconds",
}

#: How the network's output becomes joint position targets (:class:`~trot.policies.observation.ActionMapper`).
ACTION: dict[str, Any] = {
    "output": "actions",
    "dtype": "float32",
    "shape": ["batch", "num_joints"],
    "order": JOINT_ORDER,
    "clip": "action_clip",
    "scale": "action_scale",
    "offset": "default_joint_pos",
    "unit": "rad",
    "formula": "target = default_joint_pos + action_scale * clip(action, -action_clip, action_clip)",
    "text": "Joint position targets, rad, in the order of joint_names, for joint PD controllers: torque = "
    "kp * (target - position) - kd * velocity, limited to +-torque_limits. The clipped action is the next "
    "observation's last_action.",
}


def projected_gravity(quat_wxyz: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The ``projected_gravity`` term's value (before scale): unit gravity (0, 0, -1) expressed in the
    body frame of orientation ``quat_wxyz`` [..., 4].

    Written out (rather than through a rotation library) because it runs every control step on
    the robot and per environment in training. tests/policies/test_observation.py checks it against
    MuJoCo's own quaternion rotation.
    """
    q = np.asarray(quat_wxyz)
    dtype = np.result_type(q.dtype, np.float32)
    if out is None:
        out = np.empty(q.shape[:-1] + (3,), dtype=dtype)
    gravity_quadratic(q, np.empty(q.shape[:-1] + (4, 4), dtype=dtype), out)
    out[..., 2] -= 1.0
    return out


# Projected gravity is a quadratic form of the quaternion: g = (q q^T).flat @ _GRAVITY_FORM - (0, 0, 1).
# One product and one matmul instead of a dozen small ufuncs per step (the control path runs on cold
# caches, where each numpy call counts); each coefficient sits on one product, so every component is
# exactly the textbook expression.
_GRAVITY_FORM = np.zeros((16, 3))
_W, _X, _Y, _Z = range(4)
for (_i, _j), _column, _coefficient in (
    ((_W, _Y), 0, 2.0), ((_X, _Z), 0, -2.0),  # g_x = 2 (w y - x z)
    ((_Y, _Z), 1, -2.0), ((_W, _X), 1, -2.0),  # g_y = -2 (y z + w x)
    ((_X, _X), 2, 2.0), ((_Y, _Y), 2, 2.0),  # g_z = 2 (x x + y y) - 1
):  # fmt: skip
    _GRAVITY_FORM[4 * _i + _j, _column] = _coefficient

#: The part of projected gravity that does not depend on the orientation: the "- 1" of g_z.
GRAVITY_CONSTANT = np.array([0.0, 0.0, -1.0])


def gravity_quadratic(q: np.ndarray, qq: np.ndarray, out: np.ndarray) -> None:
    """The quadratic part of projected gravity (all but :data:`GRAVITY_CONSTANT`) into ``out``; ``qq``
    is scratch of shape [..., 4, 4]."""
    np.multiply(q[..., :, None], q[..., None, :], out=qq)
    np.matmul(qq.reshape(qq.shape[:-2] + (16,)), _GRAVITY_FORM.astype(out.dtype, copy=False), out=out)
