"""The Go2's wireless remote as ``rt/lowstate`` carries it (``wireless_remote``, 40 bytes), decoded
without ROS: sticks as a velocity command within the policy's command ranges, button combinations
as the policy node's services.

The 40 bytes are Unitree's ``xRockerBtnDataStruct`` (little endian): 2 header bytes, 16 button bits
(R1, L1, start, select, R2, L2, F1, F2, A, B, X, Y, up, right, down, left from bit 0), the sticks
``lx``, ``rx``, ``ry``, the analog ``L2`` and ``ly`` as float32 in [-1, 1], 16 unused bytes.

The mapping (docs/ros/unitree.md): left stick up/down = forward/backward, left/right = sideways,
right stick left/right = turning; B alone = e-stop (one press, whatever else is held), select =
stop, L1 + start = start.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

BUTTONS = ("R1", "L1", "start", "select", "R2", "L2", "F1", "F2", "A", "B", "X", "Y", "up", "right", "down", "left")
_LAYOUT = struct.Struct("<2xH5f16x")  # header, buttons, lx, rx, ry, L2 (analog), ly, unused
SIZE = _LAYOUT.size  # 40
ACTIONS = {"estop": frozenset({"B"}), "stop": frozenset({"select"}), "start": frozenset({"L1", "start"})}
"""The policy node's service each button combination calls, e-stop first (it wins a simultaneous press)."""


@dataclass(frozen=True)
class Remote:
    buttons: frozenset[str]
    lx: float  # left stick, right = +1
    ly: float  # left stick, up = +1
    rx: float  # right stick, right = +1
    ry: float  # right stick, up = +1


def decode(raw: bytes | Iterable[int]) -> Remote:
    """The remote's state from its 40 bytes; a non-finite stick reads 0 (centred)."""
    bits, lx, rx, ry, _, ly = _LAYOUT.unpack(bytes(raw))
    pressed = frozenset(name for i, name in enumerate(BUTTONS) if bits >> i & 1)
    return Remote(pressed, *(v if math.isfinite(v) else 0.0 for v in (lx, ly, rx, ry)))


def encode(buttons: Iterable[str] = (), lx: float = 0.0, ly: float = 0.0, rx: float = 0.0, ry: float = 0.0) -> bytes:
    """The 40 bytes of a remote in this state (as the simulated board sends it)."""
    bits = sum(1 << BUTTONS.index(name) for name in set(buttons))
    return _LAYOUT.pack(bits, lx, rx, ry, 0.0, ly)


def stick(value: float, dead_zone: float) -> float:
    """A stick in [-1, 1] with its dead zone removed: 0 inside it, then linear to ±1 (no jump at its edge)."""
    value = max(-1.0, min(1.0, value))
    if abs(value) <= dead_zone:
        return 0.0
    return math.copysign((abs(value) - dead_zone) / (1.0 - dead_zone), value)


def velocity(remote: Remote, ranges: Mapping[str, tuple[float, float]], dead_zone: float) -> tuple[float, float, float]:
    """(forward m/s, left m/s, yaw rate rad/s, counter-clockwise) within the policy's command ranges:
    a full stick is the range's end on its side."""

    def scaled(axis: str, s: float) -> float:
        low, high = ranges[axis]
        return s * high if s >= 0 else -s * low

    return (scaled("lin_vel_x", stick(remote.ly, dead_zone)), scaled("lin_vel_y", -stick(remote.lx, dead_zone)),
            scaled("ang_vel_yaw", -stick(remote.rx, dead_zone)))  # fmt: skip


class Combinations:
    """The actions whose button combination became held since the last state (a press, not a hold)."""

    def __init__(self) -> None:
        self._held = dict.fromkeys(ACTIONS, False)

    def pressed(self, remote: Remote) -> list[str]:
        out = []
        for action, combination in ACTIONS.items():
            held = combination <= remote.buttons
            if held and not self._held[action]:
                out.append(action)
            self._held[action] = held
        return out
