"""The policy node under test: a node process fed valid sensor data by this process (a driver),
with every command it publishes checked as it arrives."""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from trot.testing import POLICY
from trot.testing.graph import ThreadedGraph
from trot.testing.processes import wait
from trot.testing.stalls import longest_gap


class PolicyUnderTest:
    """A policy node process fed by a sensor stream from this process; every command it publishes
    is checked (finite, inside the joint limits) as it arrives."""

    def __init__(self, r: ThreadedGraph, *params: str, sim_time: bool = False, rate_hz: float = 200.0) -> None:
        from rclpy.qos import DurabilityPolicy, QoSProfile
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import Imu, JointState
        from std_msgs.msg import Float64MultiArray, String

        from trot.policies.artifact import read_artifact

        self.rig = r
        _, c = read_artifact(POLICY)
        self.contract = c
        self.names = list(c.joint_names)
        self.default = list(c.default_joint_pos)
        self.lower, self.upper = np.asarray(c.joint_pos_lower), np.asarray(c.joint_pos_upper)
        self.period = c.control_dt
        self.lock = threading.Lock()
        self._on_diagnostics: Callable[[Any], None] | None = None  # diagnostics()
        self.commands: list[tuple[float, float, bool]] = []  # (receipt wall time, header stamp s, has positions)
        self.violations: list[str] = []
        self.mode = ""
        self.modes: list[tuple[float, str]] = []
        n = r.node
        self.js_pub = n.create_publisher(JointState, "joint_states", 10)
        self.imu_pub = n.create_publisher(Imu, "imu", 10)
        from geometry_msgs.msg import Twist

        self.cmd_pub = n.create_publisher(Twist, "cmd_vel", 10)
        self.clock_pub = n.create_publisher(Clock, "/clock", 10)
        n.create_subscription(JointState, "joint_commands", self._on_command, 1000)
        n.create_subscription(Float64MultiArray, "forward_commands", self._on_forward, 1000)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        n.create_subscription(String, "trot_policy/state", self._on_state, latched)
        # the sensor stream (a driver): valid samples at rate_hz unless paused
        self.sim_time = sim_time
        self.time_offset = 100.0 - time.time() if sim_time else 0.0  # sim time starts at 100 s
        self.js_on = self.imu_on = True
        self.last_js_stamp = self.last_imu_stamp = 0.0
        self._stream_period = 1.0 / rate_hz
        self._streaming = True
        self._stream = threading.Thread(target=self._stream_loop, daemon=True)
        self._stream.start()
        r.on_close.append(self.stop_stream)
        extra = ("use_sim_time:=true",) if sim_time else ()
        self.proc = r.start(
            "trot.ros_nodes.policy_node", f"policy_path:={POLICY}", "standup_s:=0.05",
            "forward_command_topic:=forward_commands", f"forward_joint_order:={json.dumps(self.names)}",
            *extra, *params,
        )  # fmt: skip

    # -- the stream
    def now(self) -> float:
        return time.time() + self.time_offset

    def stamp(self, msg, t: float) -> None:
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(t), int((t - math.floor(t)) * 1e9)

    def joint_state(self, t: float | None = None, names=None, position=None, velocity=None):
        from sensor_msgs.msg import JointState

        m = JointState(name=self.names if names is None else names)
        m.position = self.default if position is None else position
        m.velocity = [0.0] * 12 if velocity is None else velocity
        self.stamp(m, self.now() if t is None else t)
        return m

    def imu(self, t: float | None = None, quat=(1.0, 0.0, 0.0, 0.0), gyro=(0.0, 0.0, 0.0), no_orientation=False):
        from sensor_msgs.msg import Imu

        m = Imu()
        m.orientation.w, m.orientation.x, m.orientation.y, m.orientation.z = (float(v) for v in quat)
        m.angular_velocity.x, m.angular_velocity.y, m.angular_velocity.z = (float(v) for v in gyro)
        if no_orientation:
            m.orientation_covariance[0] = -1.0
        self.stamp(m, self.now() if t is None else t)
        return m

    def publish_clock(self, t: float) -> None:
        from rosgraph_msgs.msg import Clock

        clock = Clock()
        clock.clock.sec, clock.clock.nanosec = int(t), int((t - math.floor(t)) * 1e9)
        self.clock_pub.publish(clock)

    def _stream_loop(self) -> None:
        next_t = time.perf_counter()
        while self._streaming:
            t = self.now()
            with contextlib.suppress(Exception):  # the context is shut down at the end
                if self.sim_time:
                    self.publish_clock(t)
                if self.js_on:
                    self.js_pub.publish(self.joint_state(t))
                    self.last_js_stamp = t
                if self.imu_on:
                    self.imu_pub.publish(self.imu(t))
                    self.last_imu_stamp = t
            next_t += self._stream_period
            time.sleep(max(0.0, next_t - time.perf_counter()))

    # -- what comes back
    def _on_command(self, m) -> None:
        received = time.time()
        p = np.asarray(m.position)
        bad = not (np.isfinite(m.velocity).all() and np.isfinite(m.effort).all())
        if p.size:
            bad |= p.shape != (12,) or not np.isfinite(p).all() or (p < self.lower).any() or (p > self.upper).any()
        with self.lock:
            if bad:
                self.violations.append(f"joint_commands {list(m.position)}")
            self.commands.append((received, m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec, bool(p.size)))

    def _on_forward(self, m) -> None:
        p = np.asarray(m.data)
        if p.shape != (12,) or not np.isfinite(p).all() or (p < self.lower).any() or (p > self.upper).any():
            with self.lock:
                self.violations.append(f"forward_commands {list(m.data)}")

    def _on_state(self, m) -> None:
        with self.lock:
            self.mode = m.data
            self.modes.append((time.time(), m.data))

    # -- driving it
    def alive(self) -> bool:
        return self.proc_handle.poll() is None

    @property
    def proc_handle(self) -> subprocess.Popen:
        return self.rig.procs[self.proc]

    def log(self) -> str:
        return self.rig.log(self.proc)

    def wait_mode(self, mode: str, timeout: float = 5.0) -> bool:
        return wait(lambda: self.mode == mode, timeout)

    def ensure_running(self, timeout: float = 20.0) -> None:
        end = time.time() + timeout
        while self.mode != "running":
            if time.time() > end:
                raise RuntimeError(f"the policy node did not reach RUNNING (mode {self.mode!r})\n{self.log()[-3000:]}")
            if self.mode in ("passive", "damping"):
                self.rig.call_trigger("trot_policy/start")
            self.wait_mode("running", 1.0)

    def first_damping_after(self, t: float, timeout: float = 2.0, by_stamp: bool = True) -> float | None:
        """Header stamp (or receipt time) of the first damping command stamped/received after ``t``."""
        index = 1 if by_stamp else 0

        def find() -> float | None:
            with self.lock:
                return next((c[index] for c in self.commands if c[index] >= t and not c[2]), None)

        wait(lambda: find() is not None, timeout)
        return find()

    def stall(self, t0: float, t1: float, by_stamp: bool = True) -> float:
        """The longest stall measured during [t0, t1] (wall clock; with ``by_stamp`` the commands'
        stamps, else their receipt here): of the host (the graph's StallProbe) or of the node's own
        control loop (a gap in its commands beyond a control period)."""
        index = 1 if by_stamp else 0
        with self.lock:
            stamps = [c[index] for c in self.commands if t0 - 2 * self.period <= c[index] <= t1 + self.period]
        return max(self.rig.stalls.longest(t0, t1), longest_gap(stamps, t0, t1, self.period))

    def position_commands_since(self, t: float) -> int:
        with self.lock:
            return sum(1 for c in self.commands if c[0] >= t and c[2])

    def diagnostics(self, timeout: float = 3.0) -> dict[str, str]:
        from diagnostic_msgs.msg import DiagnosticArray

        got: dict[str, str] = {}

        def on(m) -> None:
            for s in m.status:
                if s.name.endswith("trot_policy"):
                    got.update({kv.key: kv.value for kv in s.values})

        first = self._on_diagnostics is None
        self._on_diagnostics = on  # (set before subscribing: a message may come at once)
        if first:  # subscribed once: never destroyed under the spinning thread
            self.rig.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: self._on_diagnostics(m), 10)
        wait(lambda: bool(got), timeout)
        self._on_diagnostics = lambda m: None
        return got

    def stop_stream(self) -> None:
        self._streaming = False
        self._stream.join(timeout=2.0)

    def stream_in_bursts(self, seconds: float, burst_s: float) -> int:
        """Sim time only: like a bag player catching up after a stall, publish nothing for ``burst_s``
        of wall time, then that much sim time of samples (/clock, joint state, IMU each) back to
        back; for ``seconds``, then the steady stream again. Returns the number of bursts."""
        self.stop_stream()
        t, bursts, end = self.now(), 0, time.time() + seconds
        while time.time() < end:
            time.sleep(burst_s)
            target = self.now()
            while t < target:
                t += self._stream_period
                self.publish_clock(t)
                self.js_pub.publish(self.joint_state(t))
                self.imu_pub.publish(self.imu(t))
            bursts += 1
        self._streaming = True
        self._stream = threading.Thread(target=self._stream_loop, daemon=True)
        self._stream.start()
        return bursts
