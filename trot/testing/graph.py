"""A probe node in the test's own process, beside the node processes of one ROS domain.

Two ways to run it: :class:`Graph` spins the probe in the caller's thread, in rclpy's default
context (a test may add in-process nodes to that context and spin them itself); :class:`ThreadedGraph`
spins it on a thread of its own, in a context of its own, so that the caller can publish at
kilohertz rates while replies and messages keep arriving.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from trot.testing import POLICY
from trot.testing.processes import NodeProcesses, stop_processes, wait
from trot.testing.stalls import StallProbe

MAX_RESTARTS = 1
"""Restarts a test may make after a watchdog trip it did not cause (a stall of the loaded machine)."""


class Graph(NodeProcesses):
    """One ROS domain for one test: node processes plus a probe node in the test process, which
    records odometry, joint commands and the policy node's /diagnostics, and acts as a teleop.
    Restarts after a watchdog trip the test did not cause are counted and capped (:meth:`restarted`)."""

    def __init__(self) -> None:
        super().__init__()
        os.environ.update({k: self.env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
        self.closed = False
        rclpy.init()
        self.node = Node("probe")
        self.odom: list[tuple[float, float, float]] = []
        self.commands: list[tuple[float, JointState]] = []
        self.node.create_subscription(Odometry, "odom", self._on_odom, 50)
        self.node.create_subscription(
            JointState, "joint_commands", lambda m: self.commands.append((time.time(), m)), 50
        )
        self._cmd_pub = None  # (made when first used: one nobody drives would be a second /cmd_vel source)
        self.diagnostics: list[tuple[float, dict[str, str]]] = []  # (arrival, the policy node's values)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self._last_cmd = 0.0
        self.restarts: list[str] = []  # why the test had to ~/start again (restarted)

    @property
    def cmd_pub(self):
        """The probe's /cmd_vel publisher (a teleop), made on first use."""
        if self._cmd_pub is None:
            self._cmd_pub = self.node.create_publisher(Twist, "cmd_vel", 10)
        return self._cmd_pub

    def _on_diagnostics(self, m: DiagnosticArray) -> None:
        for status in m.status:
            if status.name.endswith("trot_policy"):
                self.diagnostics.append((time.time(), {kv.key: kv.value for kv in status.values}))

    def _on_odom(self, m: Odometry) -> None:
        self.odom.append((time.time(), m.twist.twist.linear.x, m.pose.pose.position.z))

    def idle(self) -> None:
        self.spin(0.05)

    def wait_until(self, condition, timeout: float = 20.0) -> bool:
        """Spin until ``condition()`` holds (discovery takes seconds on a loaded machine)."""
        return wait(condition, timeout, self.idle)

    def spin(self, seconds: float, vx: float | None = None) -> None:
        """Spin the probe; with ``vx``, act as a 50 Hz teleop (publishing on every wake-up would
        exceed 1 kHz at times, which the policy node rightly treats as a /cmd_vel flood)."""
        end = time.time() + seconds
        while time.time() < end:
            if vx is not None and time.time() - self._last_cmd >= 0.02:
                t = Twist()
                t.linear.x = vx
                self.cmd_pub.publish(t)
                self._last_cmd = time.time()
            rclpy.spin_once(self.node, timeout_sec=0.02)

    def call(self, srv_type, name: str, request) -> object:
        client = self.node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=10.0), name
        future = client.call_async(request)
        rclpy.spin_until_future_complete(self.node, future, timeout_sec=10.0)
        return future.result()

    def restarted(self, why: str) -> None:
        """Count a restart the test did not plan (after a watchdog trip a host stall caused); more
        than MAX_RESTARTS in one test fail it: a node that needs them is not running reliably."""
        self.restarts.append(why)
        assert len(self.restarts) <= MAX_RESTARTS, f"{len(self.restarts)} restarts in one test: {self.restarts}"

    def running_after_any_stall(self, policy: int = 1) -> None:
        """Before a test's own fault, the node must run. A stall of the loaded machine (CI) may have
        tripped its watchdog, rightly: then ~/start again, as an operator would (counted: restarted).
        A watchdog trip is the only reason accepted for not running."""
        if self.commands and len(self.commands[-1][1].position) == 12:
            return
        damped = [line for line in self.log(policy).splitlines() if "-> damping" in line]
        assert damped and "damping: watchdog" in damped[-1], self.log(policy)[-2000:]
        self.restarted(damped[-1].split("]: ")[-1])
        self.press_start_until_it_runs(policy)
        self.spin(0.5)

    def press_start_until_it_runs(self, policy: int, tries: int = MAX_RESTARTS + 1) -> None:
        """~/start as an operator presses it on a loaded 2-core machine, where the driver (or the
        whole VM) can stall for more than the 2 control periods the node allows: again while it is
        refused for want of a fresh sample, and again (a restart, counted) when such a stall trips
        the watchdog during the stand-up (the only reason accepted for not reaching RUNNING)."""
        for attempt in range(tries):
            if attempt:
                self.restarted("watchdog during the stand-up")
            log = self.log(policy)
            ran, damped = log.count("standup -> running"), log.count("standup -> damping")
            tripped = log.count("standup -> damping: watchdog")
            answers = [self.call(Trigger, "trot_policy/start", Trigger.Request())]
            end = time.time() + 10.0
            while not answers[-1].success and time.time() < end:
                self.spin(0.2)
                answers.append(self.call(Trigger, "trot_policy/start", Trigger.Request()))
            assert answers[-1].success, [a.message for a in answers]
            assert all(a.message.startswith("no fresh") for a in answers[:-1]), [a.message for a in answers]

            def settled(ran: int = ran, damped: int = damped) -> bool:
                log = self.log(policy)
                return log.count("standup -> running") > ran or log.count("standup -> damping") > damped

            self.wait_until(settled, timeout=20.0)
            if self.log(policy).count("standup -> running") > ran:
                return
            assert self.log(policy).count("standup -> damping: watchdog") > tripped, self.log(policy)
        raise AssertionError(f"no stand-up completed in {tries} tries\n{self.log(policy)}")

    def walk(self, policy: int, settle_s: float, walk: Callable[[], Any]) -> Any:
        """Stand still for ``settle_s``, then ``walk()`` (which spins, commanding), and return what it
        returns. A host stall past the policy node's watchdog damps it, rightly; if that happened at any
        time since the node started, the walk is repeated once after a ~/start (a restart, counted)."""
        trips = 0
        for attempt in range(MAX_RESTARTS + 1):
            self.spin(settle_s, vx=0.0)
            result = walk()
            if self.log(policy).count("running -> damping: watchdog") == trips:
                return result
            assert attempt < MAX_RESTARTS, f"the watchdog damped every walk\n{self.log(policy)[-3000:]}"
            trips = self.log(policy).count("running -> damping: watchdog")
            self.restarted("watchdog during the walk")
            self.press_start_until_it_runs(policy)
        raise AssertionError("unreachable")

    def close(self) -> list[str]:
        """Stop every node process; returns their logs (idempotent)."""
        if self.closed:
            return []
        self.closed = True
        outputs = self.stop()
        self.node.destroy_node()
        rclpy.shutdown()
        return outputs


def start_robot_and_policy(g: Graph, *extra_policy_params: str, robot_params: tuple[str, ...] = ()) -> None:
    """Robot + policy processes (indices 0 and 1); returns once the policy runs (discovery takes
    seconds on a loaded machine)."""
    g.start("trot.ros_nodes.sim_node", f"policy_path:={POLICY}", "shuffle_joint_order:=true", *robot_params)
    start_policy(g, *extra_policy_params)


def start_policy(g: Graph, *params: str) -> int:
    """A policy node process (start_mode auto) beside a robot's driver; returns its index once it
    runs and this probe receives its commands (discovery takes seconds on a loaded machine)."""
    policy = g.start("trot.ros_nodes.policy_node", f"policy_path:={POLICY}", "start_mode:=auto", "standup_s:=1.5",
                     *params)  # fmt: skip
    # start_mode auto stands up once; a stall of the machine during it trips the watchdog (rightly)
    assert g.wait_until(lambda: "standup -> " in g.log(policy), timeout=40.0), g.log(policy)
    if "standup -> running" not in g.log(policy):
        assert "standup -> damping: watchdog" in g.log(policy), g.log(policy)
        g.restarted("watchdog during the automatic stand-up")
        g.press_start_until_it_runs(policy)
    end = time.time() + 20.0  # and until this probe has discovered the policy's command publisher
    while time.time() < end and not any(len(m.position) for _, m in g.commands[-5:]):
        g.spin(0.05)
    assert g.commands, "the probe never received a joint command"
    return policy


class ThreadedGraph(NodeProcesses):
    """One ROS domain: node processes plus a probe node spun on a background thread (publishing
    from the caller's thread is safe in rclpy), in its own rclpy context."""

    def __init__(self, domain: int | None = None) -> None:
        from rclpy.executors import SingleThreadedExecutor

        super().__init__(domain)
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # the probe too discovers on this host only
        sys.setswitchinterval(1e-3)  # a publishing thread keeps its rate while the caller publishes bursts
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain)
        self.node = Node("fault_probe", context=self.context, start_parameter_services=False)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self._spin_forever, daemon=True)
        self._spin.start()
        self.on_close: list[Callable[[], None]] = []  # stop this process's publishing threads first
        self._clients: dict[str, Any] = {}  # made once: never destroyed under the spinning thread
        self.stalls = StallProbe()  # host stalls while it runs: what may excuse a late reaction

    def _spin_forever(self) -> None:
        """Until the context shuts down. An entity destroyed by another thread while the executor
        waits on it raises in here (rclpy's InvalidHandle): that costs one wait, not the probe
        (ending the thread would lose every later reply and message)."""
        from rclpy._rclpy_pybind11 import InvalidHandle
        from rclpy.executors import ExternalShutdownException, ShutdownException

        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except InvalidHandle:
                continue
            except (ShutdownException, ExternalShutdownException):
                return
            except Exception:
                if not self.context.ok():
                    return
                raise

    def call_trigger(self, name: str, timeout: float = 10.0):
        """Call the Trigger service ``name``; its response, or None when no such service appears."""
        if name not in self._clients:
            self._clients[name] = self.node.create_client(Trigger, name)
        client = self._clients[name]
        if not client.wait_for_service(timeout_sec=timeout):
            return None
        future = client.call_async(Trigger.Request())
        wait(future.done, timeout)
        return future.result()

    def close(self) -> None:
        for stop in self.on_close:
            stop()
        self.stalls.close()
        stop_processes(self.procs)
        self.executor.shutdown(timeout_sec=1.0)
        self._spin.join(timeout=2.0)
        self.node.destroy_node()
        self.context.try_shutdown()


@contextlib.contextmanager
def threaded_graph() -> Iterator[ThreadedGraph]:
    """A :class:`ThreadedGraph` in a domain of its own, closed on leaving."""
    g = ThreadedGraph()
    try:
        yield g
    finally:
        g.close()
