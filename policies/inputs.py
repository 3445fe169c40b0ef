"""The controller's input checks, without ROS: whether a sensor sample is physically plausible,
exactly what is wrong with one that is not, and how often bad input is reported.

The controller (:mod:`trot.policies.controller`) decides what a bad input does (DAMPING); here is
only what counts as one and how it is named. On the control path every numpy call counts: the
usual case is decided in a few comparisons, and the slow path that names the fault runs only for
a sample that failed them.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from trot.policies.contract import Contract
from trot.policies.settings import SafetyConfig


class Fault(enum.Enum):
    """A category of bad input, named by the check that finds it: a stable name for the log and its
    counts (``str()``: "joint state: NaN or Inf"), and the input it came on (each input has a log
    budget of its own: :class:`BadInputLog`)."""

    JOINT_STATE_UNDECODABLE = ("joint state", "undecodable message")
    JOINT_STATE_POSITIONS = ("joint state", "position array length differs from the names")
    JOINT_STATE_VELOCITIES = ("joint state", "velocity array length differs from the names")
    JOINT_STATE_MISSING = ("joint state", "policy joints missing (unknown joint names)")
    JOINT_STATE_REPEATED = ("joint state", "joint names repeated")
    JOINT_STATE_NON_FINITE = ("joint state", "NaN or Inf")
    JOINT_STATE_BEYOND_LIMITS = ("joint state", "position beyond the joint limits")
    JOINT_STATE_TOO_FAST = ("joint state", "velocity above max_joint_velocity")
    JOINT_STATE_FUTURE = ("joint state", "stamped in the future")
    IMU_UNDECODABLE = ("IMU", "undecodable message")
    IMU_COMPONENTS = ("IMU", "wrong number of components")
    IMU_NO_ORIENTATION = ("IMU", "no orientation")
    IMU_ORIENTATION_NON_FINITE = ("IMU", "orientation NaN or Inf")
    IMU_NON_UNIT = ("IMU", "non-unit quaternion")
    IMU_GYRO_NON_FINITE = ("IMU", "angular velocity NaN or Inf")
    IMU_TOO_FAST = ("IMU", "angular speed above max_angular_velocity")
    IMU_FUTURE = ("IMU", "stamped in the future")
    CMD_NON_FINITE = ("/cmd_vel", "NaN or Inf")
    CMD_FLOOD = ("/cmd_vel", "flood")

    def __init__(self, input_name: str, what: str) -> None:
        self.input = input_name
        self.what = what

    def __str__(self) -> str:
        return f"{self.input}: {self.what}"


class BadInput(str):
    """What is wrong with an input: the text (a str, as logged) and its category, ``fault``."""

    fault: Fault

    def __new__(cls, fault: Fault, reason: str) -> BadInput:
        text = super().__new__(cls, reason)
        text.fault = fault
        return text


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

    def problem(self, pos: np.ndarray, vel: np.ndarray) -> BadInput | None:
        """What is wrong with a joint state that is not :meth:`plausible`, naming the first joint at
        fault, or None (nothing after all)."""
        for what, values in (("position", pos), ("velocity", vel)):
            if (bad := ~np.isfinite(values)).any():
                i = int(np.argmax(bad))
                return BadInput(Fault.JOINT_STATE_NON_FINITE, f"joint state {self.names[i]} {what} is {values[i]} "
                                f"(NaN or Inf; {int(bad.sum())} of {len(values)} joints)")  # fmt: skip
        outside = (pos < self.lower) | (pos > self.upper)
        if outside.any():
            i = int(np.argmax(outside))
            return BadInput(Fault.JOINT_STATE_BEYOND_LIMITS, f"joint state {self.names[i]} = {pos[i]:.4g} rad is "
                            f"beyond its limits [{self.lower[i] + self.tolerance:.3f}, "
                            f"{self.upper[i] - self.tolerance:.3f}] by more than joint_pos_tolerance "
                            f"{self.tolerance}")  # fmt: skip
        if (fast := np.abs(vel) > self.max_joint_velocity).any():
            i = int(np.argmax(fast))
            return BadInput(Fault.JOINT_STATE_TOO_FAST, f"joint state {self.names[i]} velocity {vel[i]:.4g} rad/s "
                            f"exceeds max_joint_velocity {self.max_joint_velocity}")  # fmt: skip
        return None


class ImuSample(NamedTuple):
    quat_wxyz: tuple[float, float, float, float]  # unit length
    gyro: tuple[float, float, float]


def check_imu(
    quat_wxyz: Sequence[float], gyro: Sequence[float], has_orientation: bool, max_angular_velocity: float
) -> ImuSample | BadInput:
    """An IMU sample with its orientation normalized, or what is wrong with it (a str: BadInput).
    ``has_orientation`` is False when the driver says it has none (REP 145: orientation
    covariance[0] = -1): the observation needs it. Plain floats, not numpy: 7 numbers."""
    if len(quat_wxyz) != 4 or len(gyro) != 3:
        return BadInput(Fault.IMU_COMPONENTS, f"IMU sample has {len(quat_wxyz)} orientation and {len(gyro)} "
                        "angular velocity components (expected 4 and 3)")  # fmt: skip
    if not has_orientation:
        return BadInput(Fault.IMU_NO_ORIENTATION, "IMU sample carries no orientation (orientation_covariance[0] = -1)")
    qw, qx, qy, qz = map(float, quat_wxyz)
    wx, wy, wz = map(float, gyro)
    norm = math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)  # NaN if any is NaN, inf if any is inf
    if not (0.9 < norm < 1.1 and math.isfinite(wx) and math.isfinite(wy) and math.isfinite(wz)):
        if not math.isfinite(norm):
            fault, why = Fault.IMU_ORIENTATION_NON_FINITE, f"orientation {[qw, qx, qy, qz]} is not finite (NaN or Inf)"
        elif not (0.9 < norm < 1.1):
            fault, why = (
                Fault.IMU_NON_UNIT,
                f"orientation quaternion is not unit length (norm {norm:.4g}, accepted 0.9-1.1)",
            )
        else:
            fault, why = Fault.IMU_GYRO_NON_FINITE, f"angular_velocity {[wx, wy, wz]} is not finite (NaN or Inf)"
        return BadInput(fault, f"IMU {why}")
    if (speed := math.sqrt(wx * wx + wy * wy + wz * wz)) > max_angular_velocity:
        return BadInput(
            Fault.IMU_TOO_FAST,
            f"IMU angular speed {speed:.4g} rad/s exceeds max_angular_velocity {max_angular_velocity}",
        )
    return ImuSample((qw / norm, qx / norm, qy / norm, qz / norm), (wx, wy, wz))


def publication_rate(publish_times: Sequence[float]) -> float:
    """The rate (Hz) of the /cmd_vel messages published at ``publish_times`` (the newest few, taken
    in one control period): 0 below three messages, inf for three or more at one instant."""
    n = len(publish_times)
    span = publish_times[-1] - publish_times[0] if n >= 3 else 0.0
    return (n - 1) / span if span > 0 else (math.inf if n >= 3 else 0.0)


@dataclass
class _InputLines:
    """One input's side of :class:`BadInputLog`."""

    spacing: float  # the least time between two of its lines
    firsts: deque[tuple[BadInput, float]] = field(default_factory=deque)  # first occurrences not yet logged
    unlogged: dict[Fault, int] = field(default_factory=dict)  # faults counted since its last line
    last_line: float = -math.inf
    last_fault: float = -math.inf

    def room(self, now: float) -> bool:
        """A line may be logged ``now`` (also when the clock went back: a new time line)."""
        return not 0.0 <= now - self.last_line < self.spacing


class BadInputLog:
    """The WARN lines for bad input, bounded whatever the variety of the sender's garbage: each input
    (joint state, IMU, /cmd_vel) gets at most ``per_second`` lines a second, spread (1/per_second s
    apart at least, so that a log written a little late still shows no more than that in any one
    second), and every line says how many of that input's faults went unlogged since its previous
    line, by category.

    The first occurrence of each fault category is always logged, with its own text: at once, or,
    when its input had a line less than 1/per_second s before, as that input's next line (saying how
    long ago it happened). Whatever is left when an input's faults stop goes out from :meth:`flush` (the
    controller calls it every control period) once the input has been quiet for ``quiet_s``. So
    every fault is in the log exactly once: as a line, or in a line's count."""

    def __init__(self, per_second: int = 3, quiet_s: float = 1.0) -> None:
        self.per_second = per_second
        self.quiet_s = quiet_s
        self._seen: set[Fault] = set()  # (bounded: the categories are Fault's)
        self._inputs: dict[str, _InputLines] = {}
        self.pending = False
        """Something waits for :meth:`flush` (a first occurrence, or counts not yet logged)."""

    def line(self, bad: BadInput, now: float) -> str | None:
        """The line to log for bad input ``bad`` at ``now``, or None (counted, or queued if it is the
        first of its category)."""
        lines = self._inputs.get(bad.fault.input)
        if lines is None:
            lines = self._inputs[bad.fault.input] = _InputLines(1.0 / self.per_second)
        lines.last_fault = now
        first = bad.fault not in self._seen
        if first:
            self._seen.add(bad.fault)
            lines.firsts.append((bad, now))
        if lines.room(now):
            if not lines.firsts:
                return self._logged(lines, bad, now, now, first=False)
            if not first:  # an earlier first occurrence goes before it
                lines.unlogged[bad.fault] = lines.unlogged.get(bad.fault, 0) + 1
            return self._logged(lines, *lines.firsts.popleft(), now, first=True)
        if not first:
            lines.unlogged[bad.fault] = lines.unlogged.get(bad.fault, 0) + 1
        self.pending = True
        return None

    def flush(self, now: float) -> list[str]:
        """Lines due at ``now`` for inputs with something left: a first occurrence waiting its turn,
        or the counts of an input quiet for ``quiet_s``."""
        out = []
        for name, lines in self._inputs.items():
            if not lines.room(now):
                continue
            if lines.firsts:
                out.append(self._logged(lines, *lines.firsts.popleft(), now, first=True))
            elif lines.unlogged and now - lines.last_fault >= self.quiet_s:
                quiet = now - lines.last_fault
                out.append(f"bad input: {name} faults; {self._line_logged(lines, now)}; none for {quiet:.1f} s")
        self.pending = any(lines.firsts or lines.unlogged for lines in self._inputs.values())
        return out

    def _logged(self, lines: _InputLines, bad: BadInput, at: float, now: float, first: bool) -> str:
        """The line for ``bad`` (which happened ``at``), logged ``now``, with the counts since the last."""
        tag = f"{bad.fault}" + (", first occurrence" if first else "") + (f", {now - at:.2f} s ago" if now > at else "")
        counts = self._line_logged(lines, now)
        self.pending = any(other.firsts or other.unlogged for other in self._inputs.values())
        return f"bad input: {bad} [{tag}]" + (f"; {counts}" if counts else "")

    @staticmethod
    def _line_logged(lines: _InputLines, now: float) -> str:
        """A line of ``lines``' input is logged ``now``: the counts since its previous line ("" if
        none), which start over."""
        text = ""
        if lines.unlogged:
            counts = ", ".join(f"{fault} {n}" for fault, n in sorted(lines.unlogged.items(), key=lambda kv: -kv[1]))
            text = (f"not logged since this input's previous line {max(0.0, now - lines.last_line):.2f} s ago: "
                    f"{sum(lines.unlogged.values())} ({counts})")  # fmt: skip
        lines.last_line = now
        lines.unlogged.clear()
        return text
