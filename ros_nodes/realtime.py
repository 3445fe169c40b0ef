"""Real-time behaviour of this process: its threads' scheduling (the control thread's and the
middleware's) and the garbage collector's pauses.

A SCHED_FIFO control thread alone is not enough for low input latency: each sample first passes
through a DDS receive thread, which at the default scheduling waits behind whatever else runs on
the robot's computer, so the receive threads get a real-time priority just below the control
thread's (bench/results/ros_timing.md has the figures).
"""

from __future__ import annotations

import ctypes
import gc
import os
import time
from pathlib import Path

# Fast DDS (>= 2.10) names its receive threads dds.<transport>.<port>; dds.shm.wdog is the
# shared-memory watchdog, not a receiver.
FASTDDS_RECEIVE_PREFIXES = ("dds.udp.", "dds.shm.", "dds.tcp.")
NOT_RECEIVERS = {"dds.shm.wdog"}


PR_SET_NAME = 15  # prctl(2)


def threads(pid: int | str = "self") -> dict[int, str]:
    """The threads of a process (default: this one): {thread id: name as the OS shows it}."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found[int(task.name)] = (task / "comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
    return found


def receive_threads(pid: int | str = "self") -> dict[int, str]:
    """The middleware's receive threads in a process (default: this one): {thread id: name}. Empty
    for an RMW whose threads are not named this way (then only the control thread can be raised)."""
    return {
        tid: name
        for tid, name in threads(pid).items()
        if name.startswith(FASTDDS_RECEIVE_PREFIXES) and name not in NOT_RECEIVERS
    }


def name_this_thread(name: str) -> None:
    """Give the calling thread ``name`` (at most 15 bytes) where the OS shows it: ``ps -L``,
    ``top -H``, ``chrt -p``, /proc: Python's thread names stay inside Python, and an operator
    checking which thread runs at which priority sees only "python" otherwise."""
    ctypes.CDLL(None).prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def set_fifo(priority: int, thread_id: int = 0) -> None:
    """SCHED_FIFO at ``priority`` for one thread (0: the calling one). Raises OSError without
    CAP_SYS_NICE or an rtprio limit that allows it."""
    os.sched_setscheduler(thread_id, os.SCHED_FIFO, os.sched_param(priority))


def scheduling(thread_id: int) -> tuple[int, int]:
    """(policy, real-time priority) of a thread of any process, from /proc (os.SCHED_* values)."""
    fields = Path(f"/proc/{thread_id}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[38]), int(fields[37])  # stat fields 41 and 40, counted after "pid (comm)"


class GcPauses:
    """The garbage collector's pauses in this process (``gc.callbacks``): how many, the longest.
    A full collection of the policy node's ~46,000 objects (rclpy, numpy, ONNX Runtime) takes
    13-33 ms with every Python thread stopped; while running the node allocates so little that
    none came in the benchmark's runs, and /diagnostics shows whether one does on a robot."""

    def __init__(self) -> None:
        self.count = 0
        self.longest_s = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.count += 1
            self.longest_s = max(self.longest_s, time.perf_counter() - self._started)

    def close(self) -> None:
        gc.callbacks.remove(self._callback)


def control_thread(name: str, priority: int, log) -> None:
    """Name the calling thread for the OS (ps -L, top -H) and, with ``priority`` > 0 (a node's
    realtime_priority), put it at SCHED_FIFO; ``log`` (a logger) says what it got."""
    name_this_thread(name)
    if priority > 0:
        try:
            set_fifo(priority)
        except (OSError, AttributeError) as exc:
            log.warn(f"realtime_priority {priority} not granted ({name}): {exc}")
            return
        log.info(f"SCHED_FIFO {priority} for the control thread ({name})")


def receive_threads_below(priority: int, log) -> None:
    """With ``priority`` > 0, the middleware's receive threads at SCHED_FIFO one below it: every
    sample passes through one before the control thread sees it, and they then preempt everything
    on the machine but the control thread. ``log`` (a logger) says what they got."""
    if priority <= 0:
        return
    found, below = receive_threads(), max(1, priority - 1)
    if not found:
        log.warn("realtime_priority: no Fast DDS receive threads found (another RMW?): they keep their scheduling")
    try:
        for tid in found:
            set_fifo(below, tid)
    except (OSError, AttributeError) as exc:
        log.warn(f"realtime_priority {priority} not granted to the receive threads: {exc}")
        return
    names = ", ".join(sorted(found.values()))
    log.info(f"SCHED_FIFO {below} for {len(found)} receive threads ({names}), one below the control thread")
