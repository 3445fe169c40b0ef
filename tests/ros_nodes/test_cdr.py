"""trot.ros_nodes.cdr against rclpy's own (de)serialization of the same messages."""

from __future__ import annotations

import numpy as np
import pytest

from trot.testing.requires import require

require("rclpy")
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import Imu, JointState  # noqa: E402

from trot.ros_nodes.cdr import CdrError, JointStateReader, JointStateWriter, read_imu  # noqa: E402

GO2 = [f"{leg}_{part}_joint" for leg in ("FL", "FR", "RL", "RR") for part in ("hip", "thigh", "calf")]


def joint_state(rng: np.random.Generator, names: list[str], frame_id: str, lengths: tuple[int, int, int]) -> JointState:
    position, velocity, effort = (rng.normal(size=n).tolist() for n in lengths)
    msg = JointState(name=names, position=position, velocity=velocity, effort=effort)
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(rng.integers(0, 2**31)), int(rng.integers(0, 10**9))
    msg.header.frame_id = frame_id
    return msg


def test_reads_what_rclpy_writes() -> None:
    """Every alignment case: frame_ids and names of each length mod 8, empty and mismatched arrays."""
    rng = np.random.default_rng(0)
    reader = JointStateReader()
    cases = 0
    for frame_len in range(9):
        for names in (GO2, [n[: 1 + i % 9] + str(i) for i, n in enumerate(GO2)], [], ["ä_joint", "x"]):
            for lengths in ((len(names),) * 3, (len(names), 0, 0), (0, len(names), 3), (5, 1, 0)):
                msg = joint_state(rng, names, "f" * frame_len, lengths)
                view = reader(serialize_message(msg))
                assert view.names == tuple(msg.name)
                assert view.stamp == pytest.approx(msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec, abs=1e-9)
                for field in ("position", "velocity", "effort"):
                    np.testing.assert_array_equal(getattr(view, field), np.asarray(getattr(msg, field)))
                cases += 1
    assert cases == 9 * 4 * 4


def test_names_follow_the_message() -> None:
    """The name cache must not survive a change of order."""
    reader = JointStateReader()
    first = reader(serialize_message(JointState(name=GO2, position=[0.0] * 12, velocity=[0.0] * 12)))
    swapped = [GO2[1], GO2[0], *GO2[2:]]
    second = reader(serialize_message(JointState(name=swapped, position=[0.0] * 12, velocity=[0.0] * 12)))
    assert first.names == tuple(GO2) and second.names == tuple(swapped)


def test_imu_fields() -> None:
    rng = np.random.default_rng(1)
    for frame_len in range(9):
        msg = Imu()
        msg.header.frame_id = "i" * frame_len
        msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 345
        q = rng.normal(size=4)
        msg.orientation.w, msg.orientation.x, msg.orientation.y, msg.orientation.z = q.tolist()
        msg.orientation_covariance[0] = -1.0 if frame_len % 2 else 0.01
        msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = rng.normal(size=3).tolist()
        msg.linear_acceleration.z = 9.81
        view = read_imu(serialize_message(msg))
        assert view.quat_wxyz == tuple(q.tolist())
        assert view.orientation_covariance0 == msg.orientation_covariance[0]
        w = msg.angular_velocity
        assert view.angular_velocity == (w.x, w.y, w.z)
        assert view.stamp == pytest.approx(12 + 345e-9)


@pytest.mark.parametrize("damping", [False, True])
def test_writes_what_rclpy_reads(damping: bool) -> None:
    rng = np.random.default_rng(2)
    write = JointStateWriter(GO2)
    for _ in range(3):
        position = None if damping else rng.normal(size=12)
        velocity, effort = rng.normal(size=12), np.zeros(12)
        data = write(1234, 5678, position, velocity, effort)
        msg = deserialize_message(data, JointState)
        assert list(msg.name) == GO2 and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1234, 5678)
        assert msg.header.frame_id == ""
        np.testing.assert_array_equal(msg.position, [] if damping else position)
        np.testing.assert_array_equal(msg.velocity, velocity)
        np.testing.assert_array_equal(msg.effort, effort)
        expected = JointState(name=GO2, velocity=velocity.tolist(), effort=effort.tolist())
        if not damping:
            expected.position = position.tolist()
        expected.header.stamp.sec, expected.header.stamp.nanosec = 1234, 5678
        # the same layout as rclpy's (its padding bytes are left uninitialized, so compare around them)
        assert len(data) == len(serialize_message(expected))
        assert JointStateReader()(data).names == tuple(GO2)


def test_malformed_bytes_are_refused() -> None:
    data = serialize_message(JointState(name=GO2, position=[0.0] * 12, velocity=[0.0] * 12))
    reader = JointStateReader()
    for cut in (2, 10, 40, len(data) - 8):
        with pytest.raises(CdrError):
            reader(data[:cut])
    with pytest.raises(CdrError, match="encapsulation"):
        reader(b"\x00\x00" + data[2:])
    with pytest.raises(CdrError):
        read_imu(serialize_message(Imu())[:50])
    with pytest.raises(ValueError, match="11 values for 12 joints"):
        JointStateWriter(GO2)(0, 0, np.zeros(11), np.zeros(12), np.zeros(12))
