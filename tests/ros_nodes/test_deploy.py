"""`trot deploy --sim`: robot node + policy node + recorder composed in one process, scripted commands."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from trot.testing.requires import require

require("rclpy")

from trot.replay.bag import read_messages, read_metadata, topic_counts  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_deploy_sim_walks_the_script_and_records_the_episode(deploy_run: Path) -> None:
    tmp_path = deploy_run
    (summary_file,) = tmp_path.glob("*/summary.json")
    summary = json.loads(summary_file.read_text())
    segments = {s["segment"]: s for s in summary["segments"]}
    assert list(segments) == ["stand", "forward", "turn", "sideways", "stop"]
    assert abs(segments["forward"]["measured"][0] - 0.6) <= 0.15
    assert abs(segments["turn"]["measured"][2] - 0.8) <= 0.2
    assert segments["sideways"]["measured"][1] > 0.2, (
        "walked left"
    )  # (0.27 of 0.3 measured; a command dead band walks at 0.16-0.17)
    assert np.abs(segments["stop"]["measured"]).max() < 0.1 and np.abs(segments["stand"]["measured"]).max() < 0.1
    assert min(s["min_height"] for s in segments.values()) > 0.2, "the robot went down"
    control = summary["control"]
    assert control["final_mode"] == "running" and control["watchdog_trips"] == 0
    assert 49.0 <= control["loop_rate_hz"] <= 51.0
    bag = Path(summary["bag"])
    assert read_metadata(bag)["job"] == "trot deploy --sim"
    counts = topic_counts(bag)
    assert counts == summary["recorded"]
    assert all(counts[t] > 0 for t in ("/joint_states", "/imu", "/odom", "/cmd_vel", "/joint_commands"))
    commanded = np.array([[m.msg.linear.x, m.msg.angular.z] for m in read_messages(bag, topics=["/cmd_vel"])])
    assert np.isclose(commanded[:, 0], 0.6).any() and np.isclose(commanded[:, 1], 0.8).any()


def test_deploy_without_sim_or_with_a_bad_artifact_says_why(tmp_path: Path) -> None:
    no_sim = subprocess.run([sys.executable, "-m", "trot.cli", "deploy"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert no_sim.returncode == 2 and "--sim" in no_sim.stderr
    (tmp_path / "policy.onnx").write_bytes(b"garbage")
    bad = subprocess.run([sys.executable, "-m", "trot.cli", "deploy", "--sim", "--policy", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "not a valid ONNX model" in bad.stderr
    # every unsound number named as its flag, before anything starts (the node refused some only in its
    # log, after a 20 s wait; --standup-s inf waited forever; --settle-s 2 wrote NaN into summary.json)
    unsound = subprocess.run([sys.executable, "-m", "trot.cli", "deploy", "--sim", "--standup-s", "inf",
                              "--stale-periods", "0.5", "--settle-s", "2", "--real-time-factor", "0",
                              "--domain-id", "-1"], cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert unsound.returncode == 2, unsound.stdout + unsound.stderr
    for flag in ("--standup-s is inf", "--stale-periods is 0.5", "--settle-s is 2.0", "--real-time-factor is 0.0",
                 "--domain-id is -1"):  # fmt: skip
        assert flag in unsound.stderr, unsound.stderr
    blocker = tmp_path / "a_file"  # --out under a file: no bag can be opened (even by root)
    blocker.write_text("")
    unrecorded = subprocess.run([sys.executable, "-m", "trot.cli", "deploy", "--sim", "--out", str(blocker),
                                 "--domain-id", "197", "--no-replay"], cwd=ROOT, capture_output=True, text=True,
                                timeout=120)  # fmt: skip
    assert unrecorded.returncode == 2, unrecorded.stdout + unrecorded.stderr
    assert f"the recorder cannot open a bag in {blocker}/" in unrecorded.stderr, unrecorded.stderr
    assert "Traceback" not in unrecorded.stdout + unrecorded.stderr, unrecorded.stderr


def test_ctrl_c_ends_the_script_and_closes_the_bag_cleanly(tmp_path: Path) -> None:
    """SIGINT during the walk: the script stops, the bag is closed and readable, the summary says
    where it stopped, exit status 130, and no traceback (rclpy's own handlers printed a page)."""
    import signal
    import threading
    import time

    proc = subprocess.Popen([sys.executable, "-m", "trot.cli", "deploy", "--sim", "--out", str(tmp_path),
                             "--domain-id", "198", "--no-replay"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    end = time.time() + 120
    while time.time() < end and not any("script: forward" in line for line in lines):
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 130
    time.sleep(0.2)
    out = "".join(lines)
    assert "interrupted during forward: the bag holds the episode until then" in out, out[-3000:]
    assert "Traceback" not in out and "context is invalid" not in out, out[-3000:]
    (bag,) = tmp_path.glob("*/episode_*_000")
    counts = topic_counts(bag)
    assert counts["/joint_states"] > 250 and counts["/joint_commands"] > 50, counts
    assert len(list(read_messages(bag, topics=["/joint_commands"]))) == counts["/joint_commands"]


def test_deploy_slower_than_real_time_keeps_the_control_period_of_simulated_time(tmp_path: Path) -> None:
    """--real-time-factor other than 1: the nodes and the script run on the simulator's /clock. The
    policy node ran on wall-clock deadlines, 20 ms of wall time each, so 25 ms of the robot's at 0.8."""
    run = subprocess.run([sys.executable, "-m", "trot.cli", "deploy", "--sim", "--out", str(tmp_path),
                          "--domain-id", "196", "--real-time-factor", "0.8", "--no-replay"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (summary_file,) = tmp_path.glob("*/summary.json")
    summary = json.loads(summary_file.read_text())
    assert summary["real_time_factor"]["asked"] == 0.8 and 0.5 < summary["real_time_factor"]["achieved"] <= 0.85
    bag = Path(summary["bag"])
    odom = [m.msg.header.stamp.sec + 1e-9 * m.msg.header.stamp.nanosec for m in read_messages(bag, topics=["/odom"])]
    commands = [m.msg for m in read_messages(bag, topics=["/joint_commands"]) if len(m.msg.position)]
    stamps = np.array([c.header.stamp.sec + 1e-9 * c.header.stamp.nanosec for c in commands])
    assert odom[0] < 30.0, "stamped with the simulator's time (from 0), not the wall clock"
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert 45.0 <= rate <= 51.0, f"{rate:.1f} commands per simulated second (the contract's 50)"
    assert stamps[0] >= odom[0] and stamps[-1] <= odom[-1] + 0.1, "the commands run on the same simulated clock"
    forward = next(row for row in summary["segments"] if row["segment"] == "forward")
    assert forward["error"] <= 0.15, forward
