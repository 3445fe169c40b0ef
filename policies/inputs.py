"""The controller's input checks, without ROS: whether a sensor sample is physically plausible,
exactly what is wrong with one that is not, and how often bad input is reported.

The controller (:mod:`trot.policies.controller`) decides what a bad input does (DAMPING); here is
only what counts as one and how it is named. On the control path every numpy call counts: the
usual case is decided in a few comparisons, and the slow path that names the fault runs only for
a sample that failed them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from trot.policies.contract import Contract
from trot.policies.settings import SafetyConfig

_NUMBERS = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf", re.IGNORECASE)


class JointStateCheck:
    """A joint state (contract order) is plausible when every position is within the joint limits
    widened by ``joint_pos_tolerance`` and every speed is at most ``max_joint_velocity``."""

    def __init__(self, contract: Contract, safety: SafetyConfig) -> None:
        self.names = contract.joint_names
        self.tolerance = tolerance = safety.joint_pos_tolerance
        self.max_joint_velocity = safety.max_joint_velocity
        self.lower = np.asarray(contract.joint_pos_lower) - tolerance
        self.upper = np.asarray(contract.joint_pos_upper) + tolerance
        # the fast path's speed bound: finite even for max_joint_velocity inf ("no check"), so that an
        # Inf velocity still fails it and problem() names it as non-finite
        self._speed_bound = min(self.max_joint_velocity, float(np.finfo(np.float64).max))

    def plausible(self, pos: np.ndarray, vel: np.ndarray) -> bool:
        """The usual case in three comparisons; NaN and Inf fail them too, and :meth:`problem` then
        says exactly what is wrong."""
        return bool(
            (self.lower <= pos).all() and (pos <= self.upper).all() and (np.abs(vel) <= self._speed_bound).all()
        )

    def problem(self, pos: np.ndarray, vel: np.ndarray) -> str | None:
        """What is wrong with a joint state that is not :meth:`plausible`, naming the first joint at
        fault, or None (nothing after all)."""
        for what, values in (("position", pos), ("velocity", vel)):
            if (bad := ~np.isfinite(values)).any():
                i = int(np.argmax(bad))
                return (f"joint state {self.names[i]} {what} is {values[i]} (NaN or Inf; "
                        f"{int(bad.sum())} of {len(values)} joints)")  # fmt: skip
        outside = (pos < self.lower) | (pos > self.upper)
        if outside.any():
            i = int(np.argmax(outside))
            return (f"joint state {self.names[i]} = {pos[i]:.4g} rad is beyond its limits "
                    f"[{self.lower[i] + self.tolerance:.3f}, {self.upper[i] - self.tolerance:.3f}] by more than "
                    f"joint_pos_tolerance {self.tolerance}")  # fmt: skip
        if (fast := np.abs(vel) > self.max_joint_velocity).any():
            i = int(np.argmax(fast))
            return (f"joint state {self.names[i]} velocity {vel[i]:.4g} rad/s exceeds "
                    f"max_joint_velocity {self.max_joint_velocity}")  # fmt: skip
        return None


class ImuSample(NamedTuple):
    quat_wxyz: tuple[float, float, float, float]  # unit length
    gyro: tuple[float, float, float]


def check_imu(
    quat_wxyz: Sequence[float], gyro: Sequence[float], has_orientation: bool, max_angular_velocity: float
) -> ImuSample | str:
    """An IMU sample with its orientation normalized, or what is wrong with it (a str).
    ``has_orientation`` is False when the driver says it has none (REP 145: orientation
    covariance[0] = -1): the observation needs it. Plain floats, not numpy: 7 numbers."""
    if len(quat_wxyz) != 4 or len(gyro) != 3:
        return (f"IMU sample has {len(quat_wxyz)} orientation and {len(gyro)} angular "
                "velocity components (expected 4 and 3)")  # fmt: skip
    if not has_orientation:
        return "IMU sample carries no orientation (orientation_covariance[0] = -1)"
    qw, qx, qy, qz = map(float, quat_wxyz)
    wx, wy, wz = map(float, gyro)
    norm = math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)  # NaN if any is NaN, inf if any is inf
    if not (0.9 < norm < 1.1 and math.isfinite(wx) and math.isfinite(wy) and math.isfinite(wz)):
        if not math.isfinite(norm):
            why = f"orientation {[qw, qx, qy, qz]} is not finite (NaN or Inf)"
        elif not (0.9 < norm < 1.1):
            why = f"orientation quaternion is not unit length (norm {norm:.4g}, accepted 0.9-1.1)"
        else:
            why = f"angular_velocity {[wx, wy, wz]} is not finite (NaN or Inf)"
        return f"IMU {why}"
    if (speed := math.sqrt(wx * wx + wy * wy + wz * wz)) > max_angular_velocity:
        return f"IMU angular speed {speed:.4g} rad/s exceeds max_angular_velocity {max_angular_velocity}"
    return ImuSample((qw / norm, qx / norm, qy / norm, qz / norm), (wx, wy, wz))


def publication_rate(publish_times: Sequence[float]) -> float:
    """The rate (Hz) of the /cmd_vel messages published at ``publish_times`` (the newest few, taken
    in one control period): 0 below three messages, inf for three or more at one instant."""
    n = len(publish_times)
    span = publish_times[-1] - publish_times[0] if n >= 3 else 0.0
    return (n - 1) / span if span > 0 else (math.inf if n >= 3 else 0.0)


class BadInputLog:
    """Each kind of bad input (its text less the numbers) is logged at most once a second, with how
    many of that kind went unlogged, so that a broken driver sending 200 bad messages a second
    cannot flood the log (or slow the node that writes it)."""

    def __init__(self) -> None:
        self._logged: dict[str, tuple[float, int]] = {}  # kind of bad input -> (logged at, suppressed since)

    def line(self, reason: str, now: float) -> str | None:
        """The line to log for bad input ``reason`` at ``now``, or None (suppressed, counted)."""
        kind = _NUMBERS.sub("#", reason)
        if kind not in self._logged and len(self._logged) >= 64:  # (names are the sender's: bounded)
            self._logged.clear()
        logged_at, suppressed = self._logged.get(kind, (-math.inf, 0))
        if abs(now - logged_at) >= 1.0:
            self._logged[kind] = (now, 0)
            more = f" ({suppressed} more like it in the last {now - logged_at:.1f} s)" if suppressed else ""
            return f"bad input: {reason}{more}"
        self._logged[kind] = (logged_at, suppressed + 1)
        return None
