"""Episode bags with rosbags (no ROS needed): complete read-back, metadata, recovery after SIGKILL."""

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from trot.replay.bag import (
    BAG_VERSION,
    EpisodeBag,
    read_messages,
    read_metadata,
    recover,
    register_type,
    topic_counts,
    typestore,
)

ROOT = Path(__file__).resolve().parents[2]
JS = "sensor_msgs/msg/JointState"


def joint_state_cdr(i: int) -> bytes:
    store = typestore()
    msg = store.types[JS](
        header=store.types["std_msgs/msg/Header"](
            stamp=store.types["builtin_interfaces/msg/Time"](sec=i, nanosec=0), frame_id=""
        ),
        name=["FL_hip_joint"],
        position=np.array([float(i)]),
        velocity=np.zeros(1),
        effort=np.zeros(1),
    )
    return bytes(store.serialize_cdr(msg, JS))


def test_bag_reads_back_every_message_with_its_metadata(tmp_path: Path) -> None:
    bag = EpisodeBag(tmp_path / "ep", {"robot": "go2", "episode": "0"})
    bag.add_topic("/joint_states", JS)
    bag.add_topic("/cmd_vel", "geometry_msgs/msg/Twist")
    for i in range(500):
        bag.write("/joint_states", 1_000_000 * (i + 1), joint_state_cdr(i))
    bag.close()
    bag.close()  # idempotent
    messages = list(read_messages(tmp_path / "ep"))
    assert [m.msg.position[0] for m in messages] == [float(i) for i in range(500)]
    assert [m.timestamp_ns for m in messages] == [1_000_000 * (i + 1) for i in range(500)]
    assert topic_counts(tmp_path / "ep") == {"/joint_states": 500, "/cmd_vel": 0}
    meta = yaml.safe_load((tmp_path / "ep" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == BAG_VERSION == 8  # Humble and Jazzy both play version 8
    assert meta["storage_identifier"] == "mcap"
    assert meta["custom_data"]["robot"] == "go2"
    assert read_metadata(tmp_path / "ep") == {"robot": "go2", "episode": "0"}


def test_a_killed_writer_loses_at_most_the_flush_period_and_recovers(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_bag import joint_state_cdr
        from trot.replay.bag import EpisodeBag
        bag = EpisodeBag({str(tmp_path / "killed")!r}, {{"robot": "go2"}}, flush_period_s=0.25)
        bag.add_topic("/joint_states", "{JS}")
        i = 0
        while True:  # 200 Hz until killed
            bag.write("/joint_states", time.time_ns(), joint_state_cdr(i))
            i += 1
            time.sleep(0.005)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    time.sleep(3.0)
    proc.kill()  # SIGKILL: no close, no metadata.yaml, a partial chunk at the end of the file
    killed_at = time.time_ns()
    proc.wait()
    with pytest.raises(FileNotFoundError):
        topic_counts(tmp_path / "killed")
    counts = recover(tmp_path / "killed")
    messages = list(read_messages(tmp_path / "killed"))
    assert counts["/joint_states"] == len(messages) > 100
    positions = [m.msg.position[0] for m in messages]
    assert positions == [float(i) for i in range(len(messages))], "recovered messages are contiguous from the start"
    lost_s = (killed_at - messages[-1].timestamp_ns) * 1e-9
    assert lost_s <= 0.25 + 0.3, f"lost the last {lost_s:.2f} s"
    assert read_metadata(tmp_path / "killed") == {"robot": "go2", "recovered": "true"}
    assert recover(tmp_path / "killed") == counts  # a complete bag is left alone


def test_recover_names_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"expected one \.mcap file"):
        recover(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "bad.mcap").write_bytes(b"not an mcap")
    with pytest.raises(ValueError, match="not an MCAP file"):
        recover(tmp_path / "bad")


def test_a_type_outside_the_store_goes_in_with_its_installed_definition_and_reads_back_anywhere(
    tmp_path: Path,
) -> None:
    """A robot vendor's message (here nav_msgs/Goals: installed with the wheels, newer than rosbags'
    Jazzy store) is learnt from share/<package>/msg/, with the types it uses, and the bag carries
    its definition: a fresh process, which never learnt it, reads it back."""
    assert register_type("nav_msgs/msg/Goals") is None
    store = typestore()
    t = store.types
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="map")
    point = t["geometry_msgs/msg/Point"](x=1.5, y=0.0, z=0.0)
    upright = t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)
    pose = t["geometry_msgs/msg/Pose"](position=point, orientation=upright)
    goals = t["nav_msgs/msg/Goals"](header=header, goals=[t["geometry_msgs/msg/PoseStamped"](header=header, pose=pose)])
    bag = EpisodeBag(tmp_path / "ep", {"robot": "go2"})
    bag.add_topic("/goals", "nav_msgs/msg/Goals")
    bag.write("/goals", 1_000, bytes(store.serialize_cdr(goals, "nav_msgs/msg/Goals")))
    bag.close()
    script = (f"from trot.replay.bag import read_messages\nfor m in read_messages({str(tmp_path / 'ep')!r}):\n"
              "    print(m.msgtype, m.msg.header.frame_id, m.msg.goals[0].pose.position.x)")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.stdout.split() == ["nav_msgs/msg/Goals", "map", "1.5"], run.stderr
    problem = register_type("vendor_msgs/msg/LowState")
    assert problem is not None and "no definition of vendor_msgs/msg/LowState" in problem, problem
    assert "vendor_msgs/msg/LowState.msg" in problem and "source the ROS setup" in problem


def test_each_bag_is_read_with_its_own_definition_of_a_vendor_type(tmp_path: Path) -> None:
    """Two bags hold different definitions of one vendor type (an SDK update): each reads with its own
    (a definition learnt from the first bag once served the second too)."""
    import struct

    from rosbags.rosbag2 import StoragePlugin, Writer

    for name, msgdef, payload in (("old", "uint32 tick\n", (7).to_bytes(4, "little")),
                                  ("new", "float64 tick\n", struct.pack("<d", 2.5))):  # fmt: skip
        with Writer(tmp_path / name, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP) as writer:
            conn = writer.add_connection("/tick", "vendor_msgs/msg/Tick", msgdef=msgdef, rihs01="RIHS01_" + "0" * 64)
            writer.write(conn, 1_000, b"\x00\x01\x00\x00" + payload)
    assert [m.msg.tick for m in read_messages(tmp_path / "old")] == [7]
    assert [m.msg.tick for m in read_messages(tmp_path / "new")] == [2.5]
    assert "vendor_msgs/msg/Tick" not in typestore().fielddefs  # (reading taught the shared store nothing)


def test_recover_on_a_full_disk_raises_and_leaves_the_killed_bag_as_it_was(tmp_path: Path) -> None:
    """A file-size limit (RLIMIT_FSIZE: writes fail with EFBIG, the path of ENOSPC) that fits the
    killed file but not its rebuilt copy: recover must not put a partial copy in the bag's place."""
    bag = EpisodeBag(tmp_path / "writing", {"robot": "go2"}, flush_period_s=1e9)
    bag.add_topic("/joint_states", JS)
    for i in range(2000):
        bag.write("/joint_states", 1_000_000 * (i + 1), joint_state_cdr(i))
    bag.flush()  # complete chunks on disk, no summary, no metadata.yaml: what SIGKILL leaves
    killed = tmp_path / "killed"
    shutil.copytree(tmp_path / "writing", killed)
    bag.close()
    before = {p.name: p.read_bytes() for p in killed.iterdir()}
    limit = max(len(data) for data in before.values()) + 64
    script = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))  # Python ignores SIGXFSZ
        from trot.replay.bag import recover
        recover({str(killed)!r})
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0, run.stdout
    assert "OSError: cannot write the rebuilt bag" in run.stderr and "File too large" in run.stderr, run.stderr
    assert {p.name: p.read_bytes() for p in killed.iterdir()} == before, "the killed bag must stay as it was"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed", "writing"], "no scratch copy left behind"
    assert recover(killed) == {"/joint_states": 2000}  # with room, the same bag recovers whole


def test_a_broken_or_incomplete_vendor_definition_is_named_not_raised(tmp_path: Path, monkeypatch) -> None:
    """The recorder logs these and records its other topics; a definition that does not parse, or
    uses a type defined nowhere, must not raise into it."""
    msg_dir = tmp_path / "share" / "vendor_msgs" / "msg"
    msg_dir.mkdir(parents=True)
    (msg_dir / "Broken.msg").write_text("float64[ position\n")
    (msg_dir / "Motor.msg").write_text("float64 q\nvendor_msgs/Encoder encoder\n")  # Encoder.msg: none
    (msg_dir / "Binary.msg").write_bytes(b"\xff\xfe float64 q\n")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    broken = register_type("vendor_msgs/msg/Broken")
    assert broken is not None and broken.startswith(
        f"cannot read the definition of vendor_msgs/msg/Broken in {msg_dir}"
    ), broken
    incomplete = register_type("vendor_msgs/msg/Motor")
    assert incomplete is not None and incomplete.startswith("no definition of vendor_msgs/msg/Encoder"), incomplete
    binary = register_type("vendor_msgs/msg/Binary")
    assert binary is not None and "cannot read the definition of vendor_msgs/msg/Binary" in binary, binary
    assert not {"vendor_msgs/msg/Motor", "vendor_msgs/msg/Broken"} & set(typestore().fielddefs)


def test_bag_info_prints_the_metadata_and_each_topic_with_its_count(tmp_path: Path) -> None:
    """`trot bag info` on a bag written like the recorder's: every metadata key, every topic (an empty
    one too) with its message count; a folder that is no bag is named, exit status 2."""
    bag = EpisodeBag(tmp_path / "ep", {"robot": "go2", "job": "trot deploy --sim"})
    bag.add_topic("/joint_states", JS)
    bag.add_topic("/imu", "sensor_msgs/msg/Imu")
    bag.add_topic("/cmd_vel", "geometry_msgs/msg/Twist")
    for i in range(37):
        bag.write("/joint_states", 1_000_000 * (i + 1), joint_state_cdr(i))
    store = typestore()
    vector = store.types["geometry_msgs/msg/Vector3"]
    twist = store.types["geometry_msgs/msg/Twist"](linear=vector(0.6, 0.0, 0.0), angular=vector(0.0, 0.0, 0.0))
    for i in range(5):
        bag.write("/cmd_vel", 1_000_000 * (i + 1), bytes(store.serialize_cdr(twist, "geometry_msgs/msg/Twist")))
    bag.close()
    cli = [sys.executable, "-m", "trot.cli", "bag", "info"]
    run = subprocess.run([*cli, str(tmp_path / "ep")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert "robot: go2" in lines and "job: trot deploy --sim" in lines, run.stdout
    counts = {line.split()[0]: int(line.split()[1]) for line in lines if line.startswith("/")}
    assert counts == {"/joint_states": 37, "/imu": 0, "/cmd_vel": 5}, run.stdout
    assert all(line.endswith(" messages") for line in lines if line.startswith("/")), run.stdout
    (tmp_path / "empty").mkdir()
    missing = subprocess.run([*cli, str(tmp_path / "empty")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and missing.stderr.startswith("trot bag info: "), missing.stderr
    assert missing.stdout == "", missing.stdout
