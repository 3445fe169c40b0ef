"""trot.replay.sources without ROS: the recorder's /trot/sources messages read back from a bag, and
the timeline `trot bag info` and the replay report show (the recorder writing them over real DDS:
tests/ros_nodes/test_recorder_node.py)."""

import subprocess
import sys
from pathlib import Path

from trot.replay.bag import EpisodeBag, typestore
from trot.replay.sources import SOURCES_TOPIC, SOURCES_TYPE, encode, read_sources, sources_timeline

ROOT = Path(__file__).resolve().parents[2]
S = 1_000_000_000


def sources_bag(path: Path, changes: list[tuple[int, dict, list]]) -> Path:
    store = typestore()
    bag = EpisodeBag(path, {"robot": "go2"})
    bag.add_topic(SOURCES_TOPIC, SOURCES_TYPE)
    for stamp, publishers, interleaved in changes:
        msg = store.types[SOURCES_TYPE](data=encode(publishers, interleaved))
        bag.write(SOURCES_TOPIC, stamp, bytes(store.serialize_cdr(msg, SOURCES_TYPE)))
    bag.close()
    return path


def test_the_timeline_names_each_topics_publishers_then_only_what_changed_marking_more_than_one(tmp_path: Path) -> None:
    robot = {"/joint_states": ["/trot_sim"], "/imu": ["/trot_sim"]}
    bag = sources_bag(tmp_path / "ep", [
        (10 * S, robot, []),
        (12 * S + S // 4, robot, ["/joint_states"]),  # (the sequence numbers first, the graph a moment later)
        (12 * S + S // 2, {**robot, "/joint_states": ["/trot_sim", "/intruder"]}, ["/joint_states"]),
        (14 * S, robot, ["/joint_states"]),
        (14 * S + S // 2, robot, []),
        (20 * S, robot, []),  # (the next episode's start: nothing changed)
    ])  # fmt: skip
    changes = read_sources(bag)
    assert [c.timestamp_ns for c in changes] == [10 * S, 12.25 * S, 12.5 * S, 14 * S, 14.5 * S, 20 * S]
    assert changes[2].publishers["/joint_states"] == ["/intruder", "/trot_sim"]  # (sorted)
    lines, crowded = sources_timeline(bag)
    assert crowded == ["/joint_states"]
    assert lines == [
        "      0.000 s  /imu: /trot_sim; /joint_states: /trot_sim",
        "!     2.250 s  /joint_states: /trot_sim (messages of two publishers interleaved)",
        "!     2.500 s  /joint_states: /intruder, /trot_sim (2 publishers; messages of two publishers interleaved)",
        "!     4.000 s  /joint_states: /trot_sim (messages of two publishers interleaved)",
        "      4.500 s  /joint_states: /trot_sim",
        "     10.000 s  (unchanged)",
    ]
    info = subprocess.run([sys.executable, "-m", "trot.cli", "bag", "info", str(bag)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert info.returncode == 0, info.stderr
    assert info.stdout.endswith("\n".join(lines) + "\n"), info.stdout
    assert f"sources ({SOURCES_TOPIC}: " in info.stdout


def test_a_bag_without_sources_has_no_timeline(tmp_path: Path) -> None:
    store, bag = typestore(), EpisodeBag(tmp_path / "old", {})
    bag.add_topic("/cmd_vel", "geometry_msgs/msg/Twist")  # (rosbags reads every topic when asked for none)
    vector = store.types["geometry_msgs/msg/Vector3"](0.0, 0.0, 0.0)
    twist = store.types["geometry_msgs/msg/Twist"](linear=vector, angular=vector)
    bag.write("/cmd_vel", S, bytes(store.serialize_cdr(twist, "geometry_msgs/msg/Twist")))
    bag.close()
    assert read_sources(tmp_path / "old") == [] and sources_timeline(tmp_path / "old") == ([], [])
