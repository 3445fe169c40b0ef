"""The policy node's hot path in serialized form: sensor_msgs/JointState and Imu read from, and
JointState written to, the CDR bytes DDS carries (XCDR1, as rmw_fastrtps writes them).

Why by hand: on the control path rclpy builds a Python message object per sample, checking every
element in its setters, and converts it again on publish. Each sample arrives to cold caches (the
process slept since the last one), where that conversion costs several times its warm figure and
becomes a large share of the joint_states -> joint_commands latency. Here a
joint state costs a few struct reads and ``np.frombuffer`` views; the names are decoded only when
their bytes change (a driver sends one order); a command is a bytes template with the numbers
written in. Everything else in the package uses rclpy's messages or the rosbags type store.
tests/ros_nodes/test_cdr.py checks each function against rclpy's own serialization.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LITTLE = b"\x00\x01"  # CDR_LE encapsulation (every platform ROS 2 runs on); the next 2 bytes are options
HEADER = 4  # encapsulation header; alignment counts from its end


class CdrError(ValueError):
    """Bytes that are not a well-formed message of the expected type."""


def _check_encapsulation(data: bytes | memoryview) -> None:
    if bytes(data[:2]) != LITTLE:
        raise CdrError(f"unsupported CDR encapsulation {bytes(data[:2]).hex()} (expected little-endian CDR)")


def _align(offset: int, size: int) -> int:
    return offset + (-(offset - HEADER) % size)


def _string_end(data: bytes | memoryview, offset: int) -> int:
    """Offset after a string (uint32 length incl. the NUL, then the bytes)."""
    offset = _align(offset, 4)
    (length,) = struct.unpack_from("<I", data, offset)
    end = offset + 4 + length
    if end > len(data):
        raise CdrError("string runs past the end of the message")
    return end


def _doubles(data: bytes | memoryview, offset: int) -> tuple[np.ndarray, int]:
    """A sequence<float64>: (read-only view, offset after it)."""
    offset = _align(offset, 4)
    (count,) = struct.unpack_from("<I", data, offset)
    offset += 4
    if count == 0:
        return np.empty(0), offset
    offset = _align(offset, 8)
    end = offset + 8 * count
    if end > len(data):
        raise CdrError(f"sequence of {count} doubles runs past the end of the message")
    return np.frombuffer(data, dtype="<f8", count=count, offset=offset), end


@dataclass(frozen=True)
class JointStateView:
    stamp: float  # header stamp, seconds
    names: tuple[str, ...]
    position: np.ndarray  # read-only views into the message bytes
    velocity: np.ndarray
    effort: np.ndarray


class JointStateReader:
    """Decodes serialized sensor_msgs/JointState; remembers the last name block."""

    def __init__(self) -> None:
        self._names_bytes = b""
        self._names: tuple[str, ...] = ()

    def __call__(self, data: bytes) -> JointStateView:
        try:
            _check_encapsulation(data)
            sec, nanosec = struct.unpack_from("<iI", data, HEADER)
            offset = _string_end(data, HEADER + 8)  # frame_id
            names_start = offset = _align(offset, 4)
            (count,) = struct.unpack_from("<I", data, offset)
            offset += 4
            if count > 4096:
                raise CdrError(f"{count} joint names")
            for _ in range(count):
                offset = _string_end(data, offset)
            if data[names_start:offset] != self._names_bytes:
                self._names = self._decode_names(data, names_start, count)
                self._names_bytes = bytes(data[names_start:offset])
            position, offset = _doubles(data, offset)
            velocity, offset = _doubles(data, offset)
            effort, _ = _doubles(data, offset)
        except struct.error as exc:
            raise CdrError(f"truncated JointState: {exc}") from None
        return JointStateView(sec + 1e-9 * nanosec, self._names, position, velocity, effort)

    @staticmethod
    def _decode_names(data: bytes, offset: int, count: int) -> tuple[str, ...]:
        names = []
        offset += 4
        for _ in range(count):
            offset = _align(offset, 4)
            (length,) = struct.unpack_from("<I", data, offset)
            raw = bytes(data[offset + 4 : offset + 4 + length]).rstrip(b"\x00")
            names.append(raw.decode("utf-8", errors="replace"))
            offset += 4 + length
        return tuple(names)


@dataclass(frozen=True)
class ImuView:
    stamp: float
    quat_wxyz: tuple[float, float, float, float]
    orientation_covariance0: float  # -1: the driver has no orientation (REP 145)
    angular_velocity: tuple[float, float, float]


def read_imu(data: bytes) -> ImuView:
    """Decodes the fields of a serialized sensor_msgs/Imu the policy uses."""
    try:
        _check_encapsulation(data)
        sec, nanosec = struct.unpack_from("<iI", data, HEADER)
        offset = _align(_string_end(data, HEADER + 8), 8)
        x, y, z, w, cov0 = struct.unpack_from("<5d", data, offset)  # orientation, covariance[0]
        gyro = struct.unpack_from("<3d", data, offset + 8 * (4 + 9))
    except struct.error as exc:
        raise CdrError(f"truncated Imu: {exc}") from None
    return ImuView(sec + 1e-9 * nanosec, (w, x, y, z), cov0, gyro)


class JointStateWriter:
    """Serializes sensor_msgs/JointState for one fixed list of joint names (little endian, empty
    frame_id); reuses its buffer layout while the set of present arrays stays the same."""

    def __init__(self, names: Sequence[str]) -> None:
        block = bytearray(struct.pack("<I", len(names)))
        for name in names:
            raw = name.encode() + b"\x00"
            block += b"\x00" * (-len(block) % 4)  # names start 4-aligned (after the frame_id below)
            block += struct.pack("<I", len(raw)) + raw
        self._names = bytes(block)
        self.count = len(names)
        self._layouts: dict[tuple[bool, bool, bool], tuple[bytearray, list[int]]] = {}

    def _layout(self, present: tuple[bool, bool, bool]) -> tuple[bytearray, list[int]]:
        # header: stamp (8) + frame_id "" (uint32 1, NUL) -> 13 bytes, then names at offset 16 (4-aligned)
        buf = bytearray(LITTLE + b"\x00\x00" + bytes(8) + struct.pack("<I", 1) + b"\x00")
        buf += b"\x00" * (_align(len(buf), 4) - len(buf))
        buf += self._names
        starts = []
        for has in present:
            buf += b"\x00" * (_align(len(buf), 4) - len(buf))
            n = self.count if has else 0
            buf += struct.pack("<I", n)
            if n:
                buf += b"\x00" * (_align(len(buf), 8) - len(buf))
                starts.append(len(buf))
                buf += bytes(8 * n)
            else:
                starts.append(-1)
        return buf, starts

    def __call__(
        self, sec: int, nanosec: int, position: np.ndarray | None, velocity: np.ndarray, effort: np.ndarray
    ) -> bytes:
        arrays = (position, velocity, effort)
        present = tuple(a is not None for a in arrays)
        if present not in self._layouts:
            self._layouts[present] = self._layout(present)
        buf, starts = self._layouts[present]
        struct.pack_into("<iI", buf, HEADER, sec, nanosec)
        for start, values in zip(starts, arrays, strict=True):
            if values is not None:
                if len(values) != self.count:
                    raise ValueError(f"{len(values)} values for {self.count} joints")
                np.frombuffer(buf, dtype="<f8", count=self.count, offset=start)[:] = values
        return bytes(buf)
