"""The recorder killed, stopped and starved of disk space while a 1 kHz stream goes on."""

from __future__ import annotations

import contextlib
import math
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from trot.testing import ROOT
from trot.testing.faults.table import Row
from trot.testing.graph import ThreadedGraph, threaded_graph
from trot.testing.processes import wait


class SeqStream:
    """JointState messages carrying a sequence number (in frame_id) at ``rate`` Hz, reliable."""

    def __init__(self, r: ThreadedGraph, topic: str = "/fault_seq", rate: float = 1000.0) -> None:
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import JointState

        self.pub = r.node.create_publisher(JointState, topic, QoSProfile(depth=1000))
        self.msg = JointState(name=[f"joint_{i}" for i in range(12)], position=[0.1] * 12, velocity=[0.0] * 12,
                              effort=[0.0] * 12)  # fmt: skip
        self.period = 1.0 / rate
        self.seq = 0
        self.published: list[tuple[int, float]] = []  # (seq, wall time)
        self._on = True
        self._thread = threading.Thread(target=self._loop, daemon=True)
        r.on_close.append(self.stop)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        next_t = time.perf_counter()
        while self._on:
            self.msg.header.frame_id = str(self.seq)
            with contextlib.suppress(Exception):
                self.pub.publish(self.msg)
                self.published.append((self.seq, time.time()))
            self.seq += 1
            next_t += self.period
            time.sleep(max(0.0, next_t - time.perf_counter()))

    def stop(self) -> None:
        self._on = False
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)

    def last_before(self, t: float) -> int:
        return max(s for s, when in self.published if when < t)


def _recorded_seqs(bag: Path) -> list[int]:
    from trot.replay.bag import read_messages

    return [int(m.msg.header.frame_id) for m in read_messages(bag, topics=["/fault_seq"])]


def _wait_subscribed(stream: SeqStream, timeout: float = 30.0) -> bool:
    return wait(lambda: stream.pub.get_subscription_count() > 0, timeout)


def _record_then_signal(out: Path, sig: int, record_s: float) -> tuple[SeqStream, float, int, Path, float]:
    """A recorder records the 1 kHz stream for ``record_s``, then gets ``sig`` while the stream
    goes on; returns the stream, the signal's time, the exit code, the bag and the longest host
    stall in the second before the signal (a late flush loses more)."""
    with threaded_graph() as r:
        stream = SeqStream(r)
        index = r.start_args([sys.executable, "-m", "trot.ros_nodes.recorder_node", "--ros-args", "-p",
                         "topics:=['/fault_seq']", "-p", f"output_dir:={out}"])  # fmt: skip
        if not _wait_subscribed(stream):
            raise RuntimeError(f"the recorder never subscribed: {r.log(index)}")
        stream.start()
        time.sleep(record_s)
        t = time.time()
        r.procs[index].send_signal(sig)
        code = r.procs[index].wait(timeout=20)
        stream.stop()
        stall = r.stalls.longest(t - 1.0, t)
    (bag,) = [d for d in out.iterdir() if d.is_dir()]
    return stream, t, code, bag, stall


def recorder_faults(workdir: Path, record_s: float = 3.0) -> list[Row]:
    from trot.ros_nodes.recorder_node import RecorderParams

    rows: list[Row] = []
    # SIGTERM mid-episode: everything published before the signal must be in the closed bag
    stream, t, code, bag, _ = _record_then_signal(workdir / "sigterm", signal.SIGTERM, record_s)
    seqs = _recorded_seqs(bag)
    last = stream.last_before(t)
    expected = set(range(0, last + 1))  # (from the first published: a loss at the start counts too)
    lost = len(expected - set(seqs))
    rows.append(Row("recorder", "SIGTERM mid-episode (1 kHz stream, still publishing)",
                    f"{len(expected)} published before the signal, {lost} lost; exit code {code}; "
                    f"{len(seqs) - len(expected)} more taken while draining", "0 lost, clean exit",
                    lost == 0 and code == 0 and len(expected) > 0.8 * record_s * 1000,
                    {"lost": lost, "code": code, "published": len(expected)}))  # fmt: skip
    # SIGKILL: the bag is recovered with all but the last flush period. The kill comes at a random
    # phase of the recorder's 0.5 s flush timer (a whole number of periods would fall just after a
    # flush and measure the best case, not the usual one)
    kill_after = record_s + float(np.random.default_rng().uniform(0.0, 0.5))
    stream, t, _, bag, stall = _record_then_signal(workdir / "sigkill", signal.SIGKILL, kill_after)
    cli = subprocess.run([sys.executable, "-m", "trot.cli", "bag", "recover", str(bag)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    seqs = _recorded_seqs(bag) if cli.returncode == 0 else []
    last = stream.last_before(t)
    lost_s = (last - seqs[-1]) * stream.period if seqs else math.inf
    holes = len(set(range(0, seqs[-1] + 1)) - set(seqs)) if seqs else -1
    bound = RecorderParams().flush_period_s + 0.05  # a flush period, and 50 ms for the last messages in flight
    rows.append(Row("recorder", "SIGKILL mid-episode, then `trot bag recover` (at a random phase of the flush)",
                    f"readable: {cli.returncode == 0}; lost the last {lost_s:.2f} s; {holes} holes before; "
                    f"longest stall measured {stall * 1e3:.0f} ms", f"readable, <= {bound:.2f} s lost",
                    cli.returncode == 0 and lost_s <= bound and holes == 0,
                    {"readable": cli.returncode == 0, "lost_s": lost_s, "holes": holes, "stall_s": stall,
                     "bound_s": bound}))  # fmt: skip
    rows.append(disk_full(workdir / "disk_full"))
    return rows


def _private_tmpfs_works(probe_dir: Path) -> bool:
    """Can this process mount a tmpfs in a user + mount namespace of its own (no root needed)?"""
    probe_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["unshare", "--user", "--map-root-user", "--mount", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
           str(probe_dir)]  # fmt: skip
    return shutil.which("unshare") is not None and subprocess.run(cmd, capture_output=True).returncode == 0


def disk_full(workdir: Path, size_mib: int = 1, force_file_limit: bool = False) -> Row:
    """The recorder writes until its storage is full: a ``size_mib`` tmpfs in a mount namespace of
    its own (the bag is copied out when it exits), or, where namespaces are not allowed, a file-size
    limit (RLIMIT_FSIZE: writes fail with EFBIG, the same OSError path as ENOSPC). The bag is then
    recovered and read back."""
    mount, out = workdir / "mnt", workdir / "copied"
    mount.mkdir(parents=True)
    out.mkdir()
    tmpfs = not force_file_limit and _private_tmpfs_works(workdir / "probe")
    recorder = [sys.executable, "-m", "trot.ros_nodes.recorder_node", "--ros-args", "-p", "topics:=['/fault_seq']",
                "-p", f"output_dir:={mount}"]  # fmt: skip
    script = (
        'mount -t tmpfs -o size="$SIZE" tmpfs "$MNT" || exit 97; "$@" & child=$!; '
        'trap "kill -TERM $child" TERM INT; wait $child; wait $child; rc=$?; cp -a "$MNT"/. "$OUT"/; exit $rc'
    )
    storage = f"{size_mib} MiB tmpfs" if tmpfs else f"{size_mib} MiB file-size limit"
    with threaded_graph() as r:
        stream = SeqStream(r)
        if tmpfs:
            r.env |= {"SIZE": f"{size_mib}m", "MNT": str(mount), "OUT": str(out)}
            unshare = ["unshare", "--user", "--map-root-user", "--mount"]
            index = r.start_args([*unshare, "sh", "-c", script, "sh", *recorder])
        else:
            limit = size_mib << 20  # Python ignores SIGXFSZ: writes past the limit fail with EFBIG
            with_limit = (f"import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
                          "os.execv(sys.executable, sys.argv[1:])")  # fmt: skip
            index = r.start_args([sys.executable, "-c", with_limit, *recorder])
        if not _wait_subscribed(stream):
            return Row("recorder", f"disk full ({storage})", f"recorder did not start: {r.log(index)[-300:]}",
                       "clear error, earlier data intact", False)  # fmt: skip
        stream.start()
        error = r.wait_for_log(index, "recording stopped", timeout=60.0)
        time.sleep(0.5)
        alive = r.procs[index].poll() is None
        r.procs[index].send_signal(signal.SIGTERM)
        code = r.procs[index].wait(timeout=20)
        stream.stop()
        log = r.log(index)
        if not tmpfs:
            shutil.copytree(mount, out, dirs_exist_ok=True)
    match = re.search(r"messages written before are safe on disk \(.*'/fault_seq': (\d+)", log)  # (its topic's)
    durable = int(match.group(1)) if match else -1
    bags = [d for d in out.iterdir() if d.is_dir()]
    seqs: list[int] = []
    if bags:
        cli = subprocess.run([sys.executable, "-m", "trot.cli", "bag", "recover", str(bags[0])], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        if cli.returncode == 0:
            seqs = _recorded_seqs(bags[0])
    intact = bool(seqs) and seqs == list(range(seqs[0], seqs[0] + len(seqs))) and len(seqs) >= durable > 0
    line = next((x for x in log.splitlines() if "recording stopped" in x), "")
    reason = re.search(r"\[Errno \d+\] [^:;]*", line)
    return Row("recorder", f"disk full ({storage}, 1 kHz stream)",
               f"error logged: {reason.group(0) if reason else line[:60]!r}, node {'alive' if alive else 'exited'} "
               f"(exit {code}); {durable} messages reported safe, {len(seqs)} read back, gap-free: {intact}",
               "clear error, earlier data intact", error and intact,
               {"error_logged": error, "intact": intact, "durable": durable, "read_back": len(seqs)})  # fmt: skip
