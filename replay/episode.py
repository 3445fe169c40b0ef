"""An episode read from a recorded bag (any rosbag2 bag with the standard message types) into
arrays, without ROS: bags are read with `rosbags`.

Topics are found by message type and name suffix (``joint_states``, ``imu``, ``odom``,
``cmd_vel``, ``joint_commands``), so namespaced bags work. Times are the bag's receive timestamps
in seconds from the first message; joint arrays are in the robot config's joint order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trot.replay.bag import read_messages, read_metadata

TOPIC_TYPES = {
    "joint_states": "sensor_msgs/msg/JointState",
    "imu": "sensor_msgs/msg/Imu",
    "odom": "nav_msgs/msg/Odometry",
    "cmd_vel": "geometry_msgs/msg/Twist",
    "joint_commands": "sensor_msgs/msg/JointState",
    "state": "std_msgs/msg/String",  # the policy node's mode (trot_policy/state), on every change
}


class ReplayError(ValueError):
    pass


@dataclass
class Series:
    t: np.ndarray  # s since the episode's first message (bag receive time)
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.t)


@dataclass
class Episode:
    path: Path
    metadata: dict
    joint_names: list[str]
    joint_states: Series | None  # pos, vel [n, J]
    imu: Series | None  # quat (wxyz) [n, 4], gyro [n, 3]
    odom: Series | None  # pos [n, 3], quat [n, 4], linvel (body) [n, 3], angvel (body) [n, 3]
    cmd_vel: Series | None  # cmd [n, 3]
    joint_commands: Series | None  # target [n, J] (NaN rows: damping), stamp [n] (header, s since t0)
    state: Series | None  # mode [n] (str): passive / standup / running / damping
    notes: list[str] = field(default_factory=list)  # what was missing or unreadable
    policy_parameters: dict | None = None  # what the policy node ran with (trot_policy/parameters, JSON)

    def require(self, *topics: str, purpose: str) -> None:
        missing = [t for t in topics if getattr(self, t) is None or not len(getattr(self, t))]
        if missing:
            raise ReplayError(f"{self.path}: no {', '.join(missing)} messages: cannot compute {purpose}")


def _stamp(header) -> float:
    return header.stamp.sec + 1e-9 * header.stamp.nanosec


def load_episode(path: str | Path, joint_names: list[str] | None = None) -> Episode:
    """Read a bag into arrays. Unreadable tails (a truncated bag) end the read with a note."""
    from trot.sim.robot import load_robot

    path = Path(path)
    if not path.exists():
        raise ReplayError(f"{path}: no such bag")
    metadata = read_metadata(path)
    names = joint_names or list(load_robot(metadata.get("robot", "go2")).joint_names)
    rows: dict[str, list] = {k: [] for k in TOPIC_TYPES}
    notes: list[str] = []
    parameters = None
    try:
        for m in read_messages(path, msgtypes=set(TOPIC_TYPES.values())):
            kind = next((k for k, ty in TOPIC_TYPES.items() if m.msgtype == ty and m.topic.endswith(k)), None)
            if kind is not None:
                rows[kind].append((m.timestamp_ns, m.msg))
            elif parameters is None and m.topic.endswith("trot_policy/parameters"):
                try:
                    parameters = json.loads(m.msg.data)
                except json.JSONDecodeError as exc:
                    notes.append(f"{m.topic} is not JSON ({exc}): the policy node's parameters are unknown")
    except Exception as exc:  # rosbags raises several types for a damaged file
        if not any(rows.values()):
            raise ReplayError(f"{path}: unreadable bag: {exc} (try `trot bag recover {path}`)") from exc
        notes.append(f"the bag is damaged after the first {sum(map(len, rows.values()))} messages ({exc})")
    stamps = [r[0][0] for r in rows.values() if r]
    if not stamps:
        raise ReplayError(f"{path}: none of the topics {list(TOPIC_TYPES)} is in the bag")
    t0 = min(stamps)

    def times(kind: str) -> np.ndarray:
        return (np.array([ts for ts, _ in rows[kind]], dtype=np.int64) - t0) * 1e-9

    def ordered(msg, field_name: str) -> np.ndarray:
        values = dict(zip(msg.name, getattr(msg, field_name), strict=False))
        return np.array([values.get(n, np.nan) for n in names])

    series: dict[str, Series | None] = {}
    if rows["joint_states"]:
        msgs = [m for _, m in rows["joint_states"]]
        series["joint_states"] = Series(times("joint_states"), {
            "pos": np.array([ordered(m, "position") for m in msgs]),
            "vel": np.array([ordered(m, "velocity") if len(m.velocity) else np.zeros(len(names)) for m in msgs]),
        })  # fmt: skip
    if rows["imu"]:
        msgs = [m for _, m in rows["imu"]]
        series["imu"] = Series(times("imu"), {
            "quat": np.array([[m.orientation.w, m.orientation.x, m.orientation.y, m.orientation.z] for m in msgs]),
            "gyro": np.array([[m.angular_velocity.x, m.angular_velocity.y, m.angular_velocity.z] for m in msgs]),
        })  # fmt: skip
    if rows["odom"]:
        msgs = [m for _, m in rows["odom"]]
        series["odom"] = Series(times("odom"), {
            "pos": np.array([[m.pose.pose.position.x, m.pose.pose.position.y, m.pose.pose.position.z] for m in msgs]),
            "quat": np.array([[m.pose.pose.orientation.w, m.pose.pose.orientation.x, m.pose.pose.orientation.y,
                               m.pose.pose.orientation.z] for m in msgs]),
            "linvel": np.array([[m.twist.twist.linear.x, m.twist.twist.linear.y, m.twist.twist.linear.z]
                                for m in msgs]),
            "angvel": np.array([[m.twist.twist.angular.x, m.twist.twist.angular.y, m.twist.twist.angular.z]
                                for m in msgs]),
        })  # fmt: skip
    if rows["cmd_vel"]:
        msgs = [m for _, m in rows["cmd_vel"]]
        series["cmd_vel"] = Series(times("cmd_vel"), {"cmd": np.array([[m.linear.x, m.linear.y, m.angular.z]
                                                                        for m in msgs])})  # fmt: skip
    if rows["joint_commands"]:
        msgs = [m for _, m in rows["joint_commands"]]
        target = np.array([ordered(m, "position") if len(m.position) else np.full(len(names), np.nan) for m in msgs])
        series["joint_commands"] = Series(times("joint_commands"), {
            "target": target, "stamp": np.array([_stamp(m.header) for m in msgs]) - t0 * 1e-9,
        })  # fmt: skip
    if rows["state"]:
        series["state"] = Series(times("state"), {"mode": np.array([m.data for _, m in rows["state"]])})
    for kind in TOPIC_TYPES:
        if kind not in series:
            notes.append(f"no {kind} messages")
    return Episode(path, metadata, names, *(series.get(k) for k in TOPIC_TYPES), notes=notes,
                   policy_parameters=parameters)  # fmt: skip


def latest(series: Series, t: np.ndarray) -> np.ndarray:
    """Index of the latest sample at or before each time (0 before the first)."""
    return np.clip(np.searchsorted(series.t, t, side="right") - 1, 0, len(series) - 1)


def interp(series: Series, key: str, t: np.ndarray) -> np.ndarray:
    """Each column of ``series.values[key]`` linearly interpolated at the times ``t``."""
    values = series.values[key]
    return np.stack([np.interp(t, series.t, values[:, j]) for j in range(values.shape[1])], axis=1)
