"""Real node processes: start them in one ROS domain, read their logs, wait for a line, stop them.

Each group of processes gets a domain id of its own (:func:`next_domain`), so that a node left
over from an earlier test or scenario cannot answer the next one. Discovery stays on this host
(``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from trot.testing import ROOT

_domains = itertools.count(int(os.environ.get("TROT_TEST_DOMAIN_BASE", "110")))


def next_domain() -> int:
    """A ROS domain id no earlier group of this process has used."""
    return next(_domains)


def start_domains_at(first: int) -> None:
    """Hand out domain ids from ``first`` on (a bench running beside the tests keeps clear of theirs)."""
    global _domains
    _domains = itertools.count(first)


def ros_env(domain: int) -> dict[str, str]:
    """This process's environment with ``domain`` as the ROS domain, discovery on this host only."""
    return {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def wait(condition: Callable[[], bool], timeout: float, between: Callable[[], object] | None = None) -> bool:
    """Until ``condition()`` holds or ``timeout`` s have passed; ``between()`` runs between two checks
    (a probe spinning its node), else a 2 ms sleep. Returns the last check."""
    end = time.time() + timeout
    while time.time() < end:
        if condition():
            return True
        if between is None:
            time.sleep(0.002)
        else:
            between()
    return bool(condition())


def stop_processes(procs: list[subprocess.Popen], timeout: float = 10.0) -> None:
    """SIGTERM every process still running, then SIGKILL whatever has not exited after ``timeout``."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def node_args(module: str, *params: str, ros_args: tuple[str, ...] = ()) -> list[str]:
    """The command line of ``python -m module`` with ROS arguments and ``-p`` parameters."""
    params_args = itertools.chain.from_iterable(("-p", p) for p in params)
    return [sys.executable, "-m", module, "--ros-args", *ros_args, *params_args]


class NodeProcesses:
    """Processes started in one ROS domain, each with its output (stdout and stderr) collected by a
    reader thread, so that a chatty node never blocks on a full pipe and a log can be searched
    while the node runs. Processes are addressed by their index in :attr:`procs`."""

    def __init__(self, domain: int | None = None) -> None:
        self.domain = next_domain() if domain is None else domain
        self.env = ros_env(self.domain)
        self.procs: list[subprocess.Popen] = []
        self.logs: list[list[str]] = []

    def start_args(self, args: list[str]) -> int:
        """Start ``args`` in the checkout, in a session of its own (a Ctrl-C at the terminal reaches
        this process, which stops the nodes itself); returns its index."""
        proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)  # fmt: skip
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
        self.procs.append(proc)
        self.logs.append(lines)
        return len(self.procs) - 1

    def start(self, module: str, *params: str, ros_args: tuple[str, ...] = ()) -> int:
        """Start the node ``python -m module`` with ``-p`` parameters (after ``ros_args``); returns its
        index (for :meth:`log` and :meth:`wait_for_log`)."""
        return self.start_args(node_args(module, *params, ros_args=ros_args))

    def log(self, index: int) -> str:
        """What process ``index`` has written so far."""
        return "".join(self.logs[index])

    def idle(self) -> None:
        """What runs between two looks at a log: a short sleep (a probe spun in the caller's thread
        spins it instead)."""
        time.sleep(0.002)

    def wait_for_log(self, index: int, text: str, timeout: float = 30.0, count: int = 1, during=None) -> bool:
        """Until process ``index`` has logged ``text`` ``count`` times (calling ``during()`` each round)."""

        def between() -> None:
            if during is not None:
                during()
            self.idle()

        return wait(lambda: self.log(index).count(text) >= count, timeout, between)

    def stop(self) -> list[str]:
        """Stop every process (SIGTERM, then SIGKILL after 10 s); returns their logs."""
        stop_processes(self.procs)
        time.sleep(0.2)  # let the reader threads drain the pipes
        return [self.log(i) for i in range(len(self.procs))]


def fifo_allowed() -> bool:
    """Whether the host lets a process take SCHED_FIFO (root, CAP_SYS_NICE or an rtprio limit)."""
    code = "import os; os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def thread_cpu_s(pid: int, name: str) -> float:
    """CPU time a thread of ``pid`` has run, by its OS name (/proc schedstat: ns on a CPU)."""
    from trot.ros_nodes import realtime

    (tid,) = [tid for tid, comm in realtime.threads(pid).items() if comm == name]
    return int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0]) * 1e-9
