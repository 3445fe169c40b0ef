"""Fault and bad-input suite: what the stack survives, and what it never does (issue 8).

Every scenario runs the real thing: the policy node and the recorder as separate processes over
real ROS 2 (rclpy, Fast DDS), real rosbag2 files, real training runs killed with SIGKILL. This
process is the robot side: it streams valid sensor data, injects the faults, and checks every
command the node publishes. Each scenario function returns rows of the printed table, and the
test suite (tests/test_faults.py) runs the same functions with smaller counts.

    python bench/faults.py [--fuzz-messages 10000] [--only fuzz,dropouts,driver,recorder,training,artifacts]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "policies" / "go2_flat"
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


@dataclass
class Row:
    """One line of the reliability table."""

    area: str
    scenario: str
    figure: str
    target: str
    ok: bool
    data: dict = field(default_factory=dict)
    """The raw figures (the test suite checks these, with allowances for a loaded CI machine)."""


def print_table(rows: list[Row]) -> str:
    lines = ["| area | scenario | measured | target | ok |", "|---|---|---|---|---|"]
    lines += [f"| {r.area} | {r.scenario} | {r.figure} | {r.target} | {'yes' if r.ok else '**NO**'} |" for r in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


# ---------------------------------------------------------------------------------------- ROS rig
class Rig:
    """One ROS domain: node processes plus a probe node spun on a background thread (publishing
    from the caller's thread is safe in rclpy), in its own rclpy context."""

    def __init__(self, domain: int) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        sys.setswitchinterval(1e-3)  # the sensor stream thread keeps its rate while the caller publishes bursts
        self.env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = Node("fault_probe", context=self.context, start_parameter_services=False)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self._spin_forever, daemon=True)
        self._spin.start()
        self.procs: list[subprocess.Popen] = []
        self.logs: list[list[str]] = []
        self.on_close: list[Callable[[], None]] = []  # stop this process's publishing threads first
        self._clients: dict[str, Any] = {}  # made once: never destroyed under the spinning thread

    def _spin_forever(self) -> None:
        """Until the context shuts down. An entity destroyed by another thread while the executor
        waits on it raises in here (rclpy's InvalidHandle): that costs one wait, not the probe. The
        old spin() ended this thread silently on any error, after which every reply and message
        would be lost (the likeliest reading of a CI fuzz run whose probe still thought a RUNNING
        policy node damped)."""
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

    def start(self, args: list[str]) -> int:
        proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)  # fmt: skip
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
        self.procs.append(proc)
        self.logs.append(lines)
        return len(self.procs) - 1

    def start_node(self, module: str, *params: str, ros_args: tuple[str, ...] = ()) -> int:
        args = [sys.executable, "-m", module, "--ros-args", *ros_args, *itertools.chain(*(("-p", p) for p in params))]
        return self.start(args)

    def log(self, index: int) -> str:
        return "".join(self.logs[index])

    def wait_for_log(self, index: int, text: str, timeout: float = 40.0, count: int = 1) -> bool:
        return wait(lambda: self.log(index).count(text) >= count, timeout)

    def call_trigger(self, name: str, timeout: float = 10.0):
        from std_srvs.srv import Trigger

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
        stop_processes(self.procs)
        self.executor.shutdown(timeout_sec=1.0)
        self._spin.join(timeout=2.0)
        self.node.destroy_node()
        self.context.try_shutdown()


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


def wait(condition: Callable[[], bool], timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if condition():
            return True
        time.sleep(0.002)
    return bool(condition())


_domains = itertools.count(int(os.environ.get("TROT_FAULTS_DOMAIN_BASE", "150")))


@contextlib.contextmanager
def rig() -> Iterator[Rig]:
    r = Rig(next(_domains))
    try:
        yield r
    finally:
        r.close()


# ------------------------------------------------------------------------ the node under test
class PolicyUnderTest:
    """A policy node process fed by a sensor stream from this process; every command it publishes
    is checked (finite, inside the joint limits) as it arrives."""

    def __init__(self, r: Rig, *params: str, sim_time: bool = False, rate_hz: float = 200.0) -> None:
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
        self.proc = r.start_node(
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


# --------------------------------------------------------------------------- fuzz messages
def _fuzz_catalogue(p: PolicyUnderTest) -> dict[str, tuple[str, Callable[[np.random.Generator], object], bool]]:
    """name -> (topic, generator, must_damp). Faults must force DAMPING; the others must not."""
    names, default = p.names, p.default

    def huge(rng) -> float:
        return float(rng.choice([-1, 1]) * 10.0 ** rng.uniform(3, 300))

    def js(rng, **kw):
        return p.joint_state(**kw)

    def non_unit(quat: np.ndarray) -> np.ndarray:
        """Outside the norm band the controller accepts (0.9-1.1): one drawn inside it (3.6 % of them)
        would be a valid sample counted as a fault."""
        return quat * 2.0 if 0.9 <= float(np.linalg.norm(quat)) <= 1.1 else quat

    def with_one(rng, value) -> list[float]:
        v = list(default)
        v[int(rng.integers(12))] = value
        return v

    def twist(vx, vy, wz):
        from geometry_msgs.msg import Twist

        t = Twist()
        t.linear.x, t.linear.y, t.angular.z = vx, vy, wz
        return t

    perm = lambda rng: [int(i) for i in rng.permutation(12)]  # noqa: E731
    return {
        # joint states
        "short position array": ("js", lambda r: js(r, position=default[: int(r.integers(0, 12))]), True),
        "long velocity array": ("js", lambda r: js(r, velocity=[0.0] * int(r.integers(13, 40))), True),
        "unknown joint names": ("js", lambda r: js(r, names=[f"joint_{i}_{r.integers(1e6)}" for i in range(12)]), True),
        "a policy joint missing": (
            "js",
            lambda r: (lambda k: js(r, names=names[:k] + names[k + 1 :] + ["extra"]))(int(r.integers(12))),
            True,
        ),
        "duplicated joint name": (
            "js",
            lambda r: (lambda k: js(r, names=names[:k] + [names[(k + 1) % 12]] + names[k + 1 :]))(int(r.integers(12))),
            True,
        ),
        "NaN position": ("js", lambda r: js(r, position=with_one(r, math.nan)), True),
        "Inf velocity": ("js", lambda r: js(r, velocity=with_one(r, math.inf)[:12]), True),
        "huge position": ("js", lambda r: js(r, position=with_one(r, huge(r))), True),
        "huge velocity": ("js", lambda r: js(r, velocity=[huge(r)] + [0.0] * 11), True),
        "stamp far in the future": ("js", lambda r: js(r, t=p.now() + 10.0 ** r.uniform(0, 6)), True),
        # IMU
        "non-unit quaternion": (
            "imu",
            lambda r: p.imu(quat=non_unit(r.uniform(-3, 3, 4) * (2 if r.random() < 0.5 else 0.2))),
            True,
        ),
        "zero quaternion": ("imu", lambda r: p.imu(quat=(0.0, 0.0, 0.0, 0.0)), True),
        "NaN quaternion": ("imu", lambda r: p.imu(quat=(math.nan, 0.0, 0.0, 1.0)), True),
        "Inf angular velocity": ("imu", lambda r: p.imu(gyro=(0.0, -math.inf, 0.0)), True),
        "huge angular velocity": ("imu", lambda r: p.imu(gyro=(huge(r), 0.0, 0.0)), True),
        "IMU without orientation": ("imu", lambda r: p.imu(no_orientation=True), True),
        "IMU stamp in the future": ("imu", lambda r: p.imu(t=p.now() + 10.0 ** r.uniform(0, 6)), True),
        # velocity commands
        "NaN cmd_vel": ("cmd", lambda r: twist(math.nan, 0.0, 0.0), True),
        "Inf cmd_vel": ("cmd", lambda r: twist(0.0, 0.0, -math.inf), True),
        # not faults: dropped, clipped or simply valid
        "joint state from the past (dropped)": ("js", lambda r: js(r, t=p.now() - 10.0 ** r.uniform(0, 6)), False),
        "IMU from the past (dropped)": ("imu", lambda r: p.imu(t=p.now() - 10.0 ** r.uniform(0, 6)), False),
        "huge cmd_vel (clipped)": ("cmd", lambda r: twist(huge(r), huge(r), huge(r)), False),
        "permuted joint order (valid)": (
            "js",
            lambda r: (lambda o: js(r, names=[names[i] for i in o], position=[default[i] for i in o]))(perm(r)),
            False,
        ),
        "extra joints (valid)": (
            "js",
            lambda r: js(r, names=names + ["arm_joint"], position=default + [0.0], velocity=[0.0] * 13),
            False,
        ),
    }


def _publish(p: PolicyUnderTest, topic: str, msg) -> None:
    {"js": p.js_pub, "imu": p.imu_pub, "cmd": p.cmd_pub}[topic].publish(msg)


def fuzz_policy_node(
    messages: int = 10_000, repeats: int = 3, burst: int = 500, burst_hz: float = 6000.0, seed: int = 0
) -> list[Row]:
    """Every fault category alone (time to DAMPING, and DAMPING holds until ~/start), then random
    bursts of all categories at ``burst_hz`` until ``messages`` have been sent."""
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    with rig() as r:
        p = PolicyUnderTest(r)
        catalogue = _fuzz_catalogue(p)
        p.ensure_running(timeout=60.0)
        sent, delays, missed, false_trips, not_held = 0, [], [], [], []
        for _ in range(repeats):
            for name, (topic, make, must_damp) in catalogue.items():
                p.ensure_running()
                msg = make(rng)
                t = time.time()
                _publish(p, topic, msg)
                sent += 1
                if must_damp:
                    damped = p.first_damping_after(t)
                    if damped is None:
                        missed.append(name)
                        continue
                    delays.append(damped - t)
                    time.sleep(4 * p.period)  # the valid stream goes on: DAMPING must hold
                    if p.mode != "damping" or p.position_commands_since(damped + 0.01):
                        not_held.append(name)
                else:
                    time.sleep(4 * p.period)
                    if p.mode != "running" or p.first_damping_after(t, timeout=0.0) is not None:
                        false_trips.append(name)
        single = sent
        names = list(catalogue)
        faults = [n for n in names if catalogue[n][2]]
        rates, burst_delays, burst_ok = [], [], True
        faulty = sum(catalogue[n][2] for n in catalogue) * repeats
        while sent < messages:
            p.ensure_running()
            picks = [str(rng.choice(faults))] + [str(rng.choice(names)) for _ in range(min(burst, messages - sent) - 1)]
            batch = [(catalogue[n][0], catalogue[n][1](rng)) for n in picks]
            t0 = time.time()
            for i, (topic, msg) in enumerate(batch):
                while time.time() < t0 + i / burst_hz:
                    pass  # paced: a sleep would oversleep at these rates
                _publish(p, topic, msg)
            t1 = time.time()
            faulty += sum(catalogue[n][2] for n in picks)
            sent += len(batch)
            rates.append(len(batch) / max(t1 - t0, 1e-9))
            damped = p.first_damping_after(t0)
            if damped is None:
                missed.append("burst")
            else:  # DDS keeps the last 10 per topic: the first fault may be overwritten, a later one counts
                burst_delays.append(damped - t0)
                burst_ok &= damped - t0 <= (t1 - t0) + 3 * p.period
        time.sleep(0.3)
        alive = p.alive() and "Traceback" not in p.log()
        diag = p.diagnostics() if alive else {}
        if alive:  # and it still works
            p.ensure_running()
        with p.lock:
            violations, commands = list(p.violations), len(p.commands)
        p.stop_stream()
        period_ms = p.period * 1e3
    d = np.array(delays) * 1e3
    rows.append(Row("policy node", f"fuzz: {sent} messages in {len(catalogue)} categories "
                    f"({single} one by one, the rest in bursts at {np.median(rates) if rates else 0:.0f} msg/s)",
                    f"{len(violations)} non-finite or out-of-limit commands of {commands} published; "
                    f"{0 if alive else 1} crashes; {faulty} faulty messages sent, the node rejected "
                    f"{diag.get('bad_inputs', '?')} (DDS keeps the newest 10 per topic of a burst)",
                    "0 bad commands, 0 crashes", not violations and alive,
                    {"sent": sent, "violations": violations, "alive": alive, "commands": commands}))  # fmt: skip
    rows.append(Row("policy node", f"fuzz: time to DAMPING after a bad input ({len(d)} faults, "
                    f"{len(faults)} kinds)", f"p50 {np.median(d):.1f} ms, max {d.max():.1f} ms "
                    f"({d.max() / period_ms:.2f} periods); missed: {sorted(set(missed)) or 'none'}",
                    "every fault, <= 3 periods (60 ms)", not missed and d.max() <= 3 * period_ms,
                    {"delays_ms": d.tolist(), "missed": missed, "period_ms": period_ms}))  # fmt: skip
    if burst_delays:
        b = np.array(burst_delays) * 1e3
        rows.append(Row("policy node", f"fuzz bursts: time to DAMPING from burst start ({len(b)} bursts)",
                        f"p50 {np.median(b):.1f} ms, max {b.max():.1f} ms; burst rate p50 {np.median(rates):.0f} "
                        "msg/s", ">= 5 kHz; <= 3 periods after the burst ends",
                        burst_ok and np.median(rates) >= 5000, {"rates": rates, "delays_ms": b.tolist()}))  # fmt: skip
    rows.append(Row("policy node", "fuzz: DAMPING holds until ~/start; dropped, clipped, valid inputs keep RUNNING",
                    f"left DAMPING by itself: {sorted(set(not_held)) or 'never'}; false trips: "
                    f"{sorted(set(false_trips)) or 'none'}", "never; none",
                    not not_held and not false_trips, {"not_held": not_held, "false_trips": false_trips}))  # fmt: skip
    return rows


# --------------------------------------------------------------------------------- dropouts
STORM = """
import sys, time
import rclpy
from geometry_msgs.msg import Twist
rclpy.init()
node = rclpy.create_node("cmd_vel_storm", start_parameter_services=False, enable_rosout=False)
pub = node.create_publisher(Twist, "cmd_vel", 10)
while pub.get_subscription_count() == 0:
    time.sleep(0.01)
fast, ok = Twist(), Twist()
ok.linear.x = 0.3
fast.linear.x, fast.angular.z = 50.0, -50.0
count, t0 = 0, time.time()
end = t0 + float(sys.argv[1])
while time.time() < end:
    pub.publish(fast if count % 2 else ok)
    count += 1
print(f"storm: {count} messages from {t0:.6f} to {time.time():.6f}", flush=True)
"""


def dropouts(repeats: int = 3) -> list[Row]:
    """Sensors stop (time from the last sample to the first damping command, both node-clock
    stamps), a /cmd_vel storm, and sim clock jumps (time from the jump to the damping command's
    arrival here); after each, DAMPING must hold with the sensors back until ~/start."""
    rows: list[Row] = []
    violations: list[str] = []

    def row(label: str, delays: list[float], held: list[bool], period_ms: float, after: str) -> Row:
        d = np.array(delays) * 1e3
        return Row("policy node", f"{label} ({len(d)}x)", f"DAMPING {np.median(d):.1f} ms p50, "
                   f"{d.max():.1f} ms max ({d.max() / period_ms:.2f} periods) after {after}; held until ~/start: "
                   f"{sum(held)}/{len(held)}", "<= 3 periods; held", d.max() <= 3 * period_ms and all(held),
                   {"delays_ms": d.tolist(), "held": held, "period_ms": period_ms})  # fmt: skip

    with rig() as r:
        p = PolicyUnderTest(r)
        period_ms = p.period * 1e3
        for label, attr, stamp in (("dropout: joint states stop", "js_on", "last_js_stamp"),
                                   ("dropout: IMU alone stops", "imu_on", "last_imu_stamp")):  # fmt: skip
            delays, held = [], []
            for _ in range(repeats):
                p.ensure_running(timeout=60.0)
                time.sleep(0.2)
                setattr(p, attr, False)
                time.sleep(0.05)
                last = getattr(p, stamp)
                damped = p.first_damping_after(last)
                setattr(p, attr, True)  # the sensor comes back...
                time.sleep(0.3)
                held.append(p.mode == "damping")  # ...and DAMPING holds until an explicit start
                delays.append(damped - last if damped is not None else math.inf)
            rows.append(row(label, delays, held, period_ms, "the last sample"))
        # teleop at 100 Hz (the fast end of normal) must not trip the flood detection
        from geometry_msgs.msg import Twist

        p.ensure_running()
        teleop, t0 = Twist(), time.time()
        teleop.linear.x = 0.5
        while time.time() - t0 < 1.0:
            p.cmd_pub.publish(teleop)
            time.sleep(0.01)
        with p.lock:
            stamps = np.array([c[1] for c in p.commands if t0 <= c[1] and c[2]])
        rate = stamps.size / (time.time() - t0)
        rows.append(Row("policy node", "/cmd_vel from teleop at 100 Hz (1 s)", f"stayed {p.mode}; {rate:.1f} "
                        "commands/s", "RUNNING, 50 commands/s", p.mode == "running" and rate >= 45.0,
                        {"mode": p.mode, "command_rate": rate}))  # fmt: skip
        # a /cmd_vel storm from another process (a runaway teleop node), as fast as it can publish
        # for 1 s, half of it out of range, while this process keeps streaming the sensors
        delays, held, reasons, rates = [], [], [], []
        for _ in range(repeats):
            p.ensure_running()
            time.sleep(0.2)
            storm = r.start([sys.executable, "-c", STORM, "1.0"])
            if not r.wait_for_log(storm, "storm: ", timeout=60.0):
                raise RuntimeError(f"the storm publisher did not run: {r.log(storm)}")
            match = re.search(r"storm: (\d+) messages from ([\d.]+) to ([\d.]+)", r.log(storm))
            count, t0, t1 = int(match.group(1)), float(match.group(2)), float(match.group(3))
            rates.append(count / (t1 - t0))
            damped = p.first_damping_after(t0)
            delays.append(damped - t0 if damped is not None else math.inf)
            time.sleep(0.3)  # the storm is over
            held.append(p.mode == "damping")
            reasons.append(p.log().count("/cmd_vel flood"))
        rows.append(row(f"/cmd_vel storm from another process at {np.median(rates):.0f} msg/s", delays, held,
                        period_ms, "the storm began"))  # fmt: skip
        rows[-1].data["flood_logged"] = reasons
        with p.lock:
            violations += p.violations
    with rig() as r:  # sim time: the clock jumps (a simulator reset, a replayed bag looping)
        p = PolicyUnderTest(r, sim_time=True)
        for label, jump in (("sim clock jumps forward 10 s", 10.0), ("sim clock jumps back 20 s", -20.0)):
            delays, held = [], []
            for _ in range(repeats):
                p.ensure_running(timeout=60.0)
                time.sleep(0.2)
                t = time.time()
                p.time_offset += jump  # clock and sensor stamps jump together: only the jump itself is wrong
                damped = p.first_damping_after(t, by_stamp=False)  # stamps are sim time: use receipt
                delays.append(damped - t if damped is not None else math.inf)
                time.sleep(0.3)
                held.append(p.mode == "damping")
            rows.append(row(label, delays, held, period_ms, "the jump"))
        # not a fault: a player catching up publishes /clock and samples in bursts; each sample
        # must be judged against the /clock published with it, never as "from the future". (The
        # watchdog may still trip: at ~50x real time a sample that DDS delivers 1 ms after its
        # /clock is 50 ms late in sim time; that is reported, not judged.)
        p.ensure_running(timeout=60.0)
        before, trips_before, t0 = p.log().count("bad input"), p.log().count("watchdog:"), time.time()
        bursts = p.stream_in_bursts(3.0, burst_s=0.15)
        time.sleep(0.2)
        commands = p.position_commands_since(t0) / (time.time() - t0)
        faults_logged, trips = p.log().count("bad input") - before, p.log().count("watchdog:") - trips_before
        rows.append(Row("policy node", f"sim time: /clock and samples in {bursts} bursts of 0.15 s (3 s)",
                        f"{faults_logged} bad inputs logged; ended {p.mode}; {trips} watchdog trips; "
                        f"{commands:.1f} commands/s", "0 bad inputs", faults_logged == 0,
                        {"mode": p.mode, "bad_inputs": faults_logged, "watchdog_trips": trips,
                         "command_rate": commands, "log": p.log()[-2000:]}))  # fmt: skip
        with p.lock:
            violations += p.violations
    rows.append(Row("policy node", "dropouts: commands published outside limits or non-finite", str(len(violations)),
                    "0", not violations, {"violations": violations}))  # fmt: skip
    return rows


# ------------------------------------------------------------------------------- robot driver
SILENCE = "no joint command for"


def _last_transition(log: str) -> str:
    """The policy node's newest mode change in its log ("running -> damping"), or ""."""
    found = re.findall(r"\]: (\w+ -> \w+)", log)
    return found[-1] if found else ""


def driver_faults(repeats: int = 3) -> list[Row]:
    """The controller dies without a last word (SIGKILL while RUNNING, no final damping command):
    the robot's driver (the MuJoCo robot node, like a real driver's watchdog) must damp by itself
    after its ``command_timeout_s`` (0.25 s). Timed from the kill to the stamp of the driver's own
    warning (both wall clock); the robot must then sink, not stand stiff on the last target."""
    from nav_msgs.msg import Odometry

    from trot.ros_nodes.sim_node import SimNodeParams

    timeout_s = SimNodeParams().command_timeout_s
    delays, drops = [], []
    with rig() as r:
        heights: list[float] = []
        r.node.create_subscription(Odometry, "odom", lambda m: heights.append(m.pose.pose.position.z), 10)
        sim = r.start_node("trot.ros_nodes.sim_node", f"policy_path:={POLICY}")
        for _ in range(repeats):
            policy = r.start_node("trot.ros_nodes.policy_node", f"policy_path:={POLICY}", "start_mode:=auto",
                                  "standup_s:=1.0")  # fmt: skip
            for _ in range(3):  # (a stall of this loaded machine may trip the watchdog: start again)
                wait(lambda p=policy: _last_transition(r.log(p)).endswith("-> running"), timeout=30.0)
                time.sleep(1.0)
                if _last_transition(r.log(policy)).endswith("-> running"):
                    break
                r.call_trigger("trot_policy/start")
            else:
                raise RuntimeError(f"the policy node did not stay RUNNING:\n{r.log(policy)[-2000:]}")
            if not wait(lambda: heights, timeout=30.0):
                raise RuntimeError("no odometry from the robot node")
            # (a stall of this machine may have tripped the timeout before: count from here)
            before, standing, killed = r.log(sim).count(SILENCE), heights[-1], time.time()
            r.procs[policy].kill()
            r.procs[policy].wait()
            if r.wait_for_log(sim, SILENCE, timeout=5.0, count=before + 1):
                line = [x for x in r.log(sim).splitlines() if SILENCE in x][before]
                delays.append(float(re.search(r"\[(\d+\.\d+)\]", line).group(1)) - killed)
            else:
                delays.append(math.inf)
            time.sleep(2.0)
            drops.append(standing - heights[-1])
        log = r.log(sim)
    d, drop = np.array(delays) * 1e3, np.array(drops) * 1e3
    ok = d.min() > 0.0 and d.max() <= timeout_s * 1e3 + 50.0 and drop.min() > 50.0 and "Traceback" not in log
    return [Row("robot driver", f"controller SIGKILLed while RUNNING ({len(d)}x): the driver's command timeout "
                f"({timeout_s} s)", f"damping {np.median(d):.0f} ms p50, {d.max():.0f} ms max after the kill; the "
                f"base sank {drop.min():.0f}-{drop.max():.0f} mm in 2 s", f"<= {timeout_s * 1e3 + 50:.0f} ms; sinks",
                ok, {"delays_ms": d.tolist(), "drops_mm": drop.tolist(), "log": log[-2000:]})]  # fmt: skip


# --------------------------------------------------------------------------------- recorder
class SeqStream:
    """JointState messages carrying a sequence number (in frame_id) at ``rate`` Hz, reliable."""

    def __init__(self, r: Rig, topic: str = "/fault_seq", rate: float = 1000.0) -> None:
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


def _record_then_signal(out: Path, sig: int, record_s: float) -> tuple[SeqStream, float, int, Path]:
    """A recorder records the 1 kHz stream for ``record_s``, then gets ``sig`` while the stream
    goes on; returns the stream, the signal's time, the exit code and the bag."""
    with rig() as r:
        stream = SeqStream(r)
        index = r.start([sys.executable, "-m", "trot.ros_nodes.recorder_node", "--ros-args", "-p",
                         "topics:=['/fault_seq']", "-p", f"output_dir:={out}"])  # fmt: skip
        if not _wait_subscribed(stream):
            raise RuntimeError(f"the recorder never subscribed: {r.log(index)}")
        stream.start()
        time.sleep(record_s)
        t = time.time()
        r.procs[index].send_signal(sig)
        code = r.procs[index].wait(timeout=20)
        stream.stop()
    (bag,) = [d for d in out.iterdir() if d.is_dir()]
    return stream, t, code, bag


def recorder_faults(workdir: Path, record_s: float = 3.0) -> list[Row]:
    rows: list[Row] = []
    # SIGTERM mid-episode: everything published before the signal must be in the closed bag
    stream, t, code, bag = _record_then_signal(workdir / "sigterm", signal.SIGTERM, record_s)
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
    # phase of the recorder's 0.5 s flush timer (at a fixed 3 s, i.e. 6 periods, it fell just after a
    # flush, and "lost 0.00 s" showed the best case, not the usual)
    kill_after = record_s + float(np.random.default_rng().uniform(0.0, 0.5))
    stream, t, _, bag = _record_then_signal(workdir / "sigkill", signal.SIGKILL, kill_after)
    cli = subprocess.run([sys.executable, "-m", "trot.cli", "bag", "recover", str(bag)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    seqs = _recorded_seqs(bag) if cli.returncode == 0 else []
    last = stream.last_before(t)
    lost_s = (last - seqs[-1]) * stream.period if seqs else math.inf
    holes = len(set(range(0, seqs[-1] + 1)) - set(seqs)) if seqs else -1
    rows.append(Row("recorder", "SIGKILL mid-episode, then `trot bag recover` (at a random phase of the flush)",
                    f"readable: {cli.returncode == 0}; lost the last {lost_s:.2f} s; {holes} holes before",
                    "readable, <= ~1 s lost", cli.returncode == 0 and lost_s <= 1.0 and holes == 0,
                    {"readable": cli.returncode == 0, "lost_s": lost_s, "holes": holes}))  # fmt: skip
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
    with rig() as r:
        stream = SeqStream(r)
        if tmpfs:
            r.env |= {"SIZE": f"{size_mib}m", "MNT": str(mount), "OUT": str(out)}
            index = r.start(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", *recorder])
        else:
            limit = size_mib << 20  # Python ignores SIGXFSZ: writes past the limit fail with EFBIG
            with_limit = (f"import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
                          "os.execv(sys.executable, sys.argv[1:])")  # fmt: skip
            index = r.start([sys.executable, "-c", with_limit, *recorder])
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
    match = re.search(r"(\d+) messages written before are safe", log)
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


# --------------------------------------------------------------------------------- training
SMALL_RUN = ["--env.num-envs", "32", "--steps-per-env", "8", "--save-interval", "1", "--env.nthread", "1"]


def interrupted_and_resumed_run(workdir: Path, name: str, sig: int, iterations: int) -> Path:
    """A small go2-flat run stopped with ``sig`` once its second checkpoint exists, then resumed."""
    run = workdir / name
    args = ["train", "go2-flat", *SMALL_RUN, "--max-iterations", str(iterations), "--log-dir", str(workdir)]
    proc = subprocess.Popen([sys.executable, "-m", "trot.cli", *args, "--run-name", name], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 240
    while not (run / "checkpoints" / "model_00002.pt").exists():
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read())
        if time.time() > deadline:
            raise TimeoutError("no second checkpoint within 240 s")
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.wait(timeout=120)
    if sig == signal.SIGTERM and proc.returncode != 0:
        raise RuntimeError(proc.stderr.read())
    if len((run / "metrics.jsonl").read_text().splitlines()) >= iterations:  # (a kill may cut the last line)
        raise RuntimeError(f"the run finished all {iterations} iterations before {sig!r} stopped it")
    resume = subprocess.run([sys.executable, "-m", "trot.cli", "train", "--resume", str(run)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    if resume.returncode != 0:
        raise RuntimeError(resume.stderr[-2000:])
    return run


def training_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


CURVE_KEYS = ("loss/value", "loss/surrogate", "policy/learning_rate", "perf/total_env_steps", "episode/mean_return")


def training_resume(workdir: Path, iterations: int = 6) -> list[Row]:
    straight = subprocess.run(
        [sys.executable, "-m", "trot.cli", "train", "go2-flat", *SMALL_RUN, "--max-iterations", str(iterations),
         "--log-dir", str(workdir), "--run-name", "straight"], cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if straight.returncode != 0:
        raise RuntimeError(straight.stderr[-2000:])
    killed = interrupted_and_resumed_run(workdir, "killed", signal.SIGKILL, iterations)
    a, b = training_metrics(workdir / "straight"), training_metrics(killed)
    same_iterations = [row["iteration"] for row in b] == [row["iteration"] for row in a]

    def gap(x: dict, y: dict, key: str) -> float:  # (a curve one run logged and the other did not: a difference)
        if (key in x) != (key in y):
            return math.inf
        return abs(float(x[key]) - float(y[key])) if key in x else 0.0

    diffs = {k: max(gap(x, y, k) for x, y in zip(a, b, strict=False)) for k in CURVE_KEYS}
    worst = max(diffs.values())
    return [Row("training", f"SIGKILL during a {iterations}-iteration run, then --resume",
                f"iterations {len(b)}/{iterations}, gap-free: {same_iterations}; max abs difference of the curves vs "
                f"an uninterrupted run: {worst:.3g} ({', '.join(f'{k} {v:.3g}' for k, v in diffs.items())})",
                "same curve (difference 0)", same_iterations and worst == 0.0,
                {"worst": worst, "iterations": len(b)})]  # fmt: skip


# --------------------------------------------------------------------------------- artifacts
def onnx_runtime_rejects(workdir: Path) -> Path:
    """The shipped artifact with one weight matrix a row short, in ``workdir``: its ONNX file,
    signature and contract pass every check of the artifact reader, and ONNX Runtime refuses the
    graph (before a catch-all, configure failed without a word: rclpy swallows the exception)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(POLICY / "policy.onnx")
    weight = next(init for init in model.graph.initializer if len(init.dims) == 2)
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight)[:-1], weight.name))
    broken = workdir / "unloadable_policy"
    broken.mkdir(parents=True)
    onnx.save(model, broken / "policy.onnx")
    return broken


def _bad_artifacts(workdir: Path) -> dict[str, tuple[list[str], str]]:
    """case -> (policy node parameters / ROS args, the text its refusal must contain)."""
    import onnx

    from trot.policies.artifact import CONTRACT_KEY

    def copy(name: str) -> Path:
        d = workdir / name
        d.mkdir(parents=True)
        shutil.copy(POLICY / "policy.onnx", d / "policy.onnx")
        return d / "policy.onnx"

    truncated = copy("truncated")
    truncated.write_bytes(truncated.read_bytes()[:20_000])
    swapped = copy("swapped")
    model = onnx.load(swapped)
    for entry in model.metadata_props:
        if entry.key == CONTRACT_KEY:
            contract = json.loads(entry.value)
            names = contract["joint_names"]
            names[1], names[2] = names[2], names[1]  # FL thigh <-> FL calf: each keeps its limits and gains
            entry.value = json.dumps(contract)
    onnx.save(model, swapped)
    malformed = workdir / "malformed.yaml"
    malformed.write_text("/**:\n  ros__parameters:\n    standup_s: [1.0\n")
    unknown = workdir / "unknown_key.yaml"
    unknown.write_text("/**:\n  ros__parameters:\n    standup_seconds: 1.0\n")
    return {
        "truncated ONNX": ([f"-p policy_path:={truncated}"], "not a valid ONNX model"),
        "contract tampered: two joints swapped": ([f"-p policy_path:={swapped}"], "['joint_names'] were changed"),
        "artifact file missing": ([f"-p policy_path:={workdir / 'nowhere'}"], "no such policy file"),
        "ONNX graph ONNX Runtime rejects (a weight a row short)": (
            [f"-p policy_path:={onnx_runtime_rejects(workdir)}"], "ONNX Runtime cannot load the policy"),
        "unsound safety setting: joint_limit_margin 2.0 rad": (
            [f"-p policy_path:={POLICY}", "-p joint_limit_margin:=2.0"], "joint_limit_margin is 2.0: must be below"),
        "parameter file: malformed YAML": ([f"-p policy_path:={POLICY}", f"--params-file {malformed}"], str(malformed)),
        "parameter file: unknown key": ([f"-p policy_path:={POLICY}", f"--params-file {unknown}"], "standup_seconds"),
        "parameter file missing": ([f"-p policy_path:={POLICY}", f"--params-file {workdir / 'no.yaml'}"], "no.yaml"),
        "robot lacks a policy joint": ([f"-p policy_path:={POLICY}", "-r joint_states:=partial_joint_states"],
                                       "publishes no state for the policy's joints"),
    }  # fmt: skip


def artifact_refusals(workdir: Path) -> list[Row]:
    """Each bad artifact or configuration: the policy node names the problem and never activates
    (no command, ~/start refused), with a live robot publishing joint states the whole time."""
    from sensor_msgs.msg import JointState

    from trot.policies.artifact import read_artifact

    _, contract = read_artifact(POLICY)
    names = list(contract.joint_names)
    cases = _bad_artifacts(workdir)
    rows = []
    with rig() as r:
        full = [r.node.create_publisher(JointState, f"/case{i}/joint_states", 10) for i in range(len(cases))]
        partial = [r.node.create_publisher(JointState, f"/case{i}/partial_joint_states", 10) for i in range(len(cases))]
        commands: dict[int, int] = {i: 0 for i in range(len(cases))}
        for i in range(len(cases)):
            r.node.create_subscription(JointState, f"/case{i}/joint_commands",
                                       lambda m, i=i: commands.__setitem__(i, commands[i] + 1), 10)  # fmt: skip
        procs = {}
        for i, (_, (args, _)) in enumerate(cases.items()):
            ros_args = [a for arg in args for a in arg.split(" ", 1)]
            procs[i] = r.start([sys.executable, "-m", "trot.ros_nodes.policy_node", "--ros-args",
                                 "-r", f"__ns:=/case{i}",
                                "-p", "start_mode:=auto", "-p", "joint_state_timeout_s:=20.0", *ros_args])  # fmt: skip
        js, js_partial = JointState(name=names, position=list(contract.default_joint_pos)), JointState(name=names[:-1])
        js_partial.position = list(contract.default_joint_pos)[:-1]
        end = time.time() + 60
        expected = {i: text for i, (_, (_, text)) in enumerate(cases.items())}
        while time.time() < end and not all(text in r.log(procs[i]) for i, text in expected.items()):
            for i in range(len(cases)):
                js.header.stamp = js_partial.header.stamp = r.node.get_clock().now().to_msg()
                full[i].publish(js)
                partial[i].publish(js_partial)
            time.sleep(0.02)
        time.sleep(1.0)
        starts = {}
        for i in range(len(cases)):
            if r.procs[procs[i]].poll() is None:
                response = r.call_trigger(f"/case{i}/trot_policy/start", timeout=5.0)
                starts[i] = response.success if response is not None else False
            else:
                starts[i] = False
        for i, (case, (_, text)) in enumerate(cases.items()):
            log = r.log(procs[i])
            named = text in log
            line = next((x for x in log.splitlines() if text in x), "")
            line = re.sub(r"^\[[A-Z]+\] \[[\d.]+\] \[[^\]]*\]: ", "", line.strip()).replace(f"{workdir}/", "")[:150]
            state = "exited" if r.procs[procs[i]].poll() is not None else "alive, unconfigured"
            ok = named and commands[i] == 0 and not starts[i] and "configured:" not in log and "Traceback" not in log
            rows.append(Row("artifacts & config", case, f"refused ({state}, {commands[i]} commands): `{line}`",
                            "refused naming the problem; never activates", ok))  # fmt: skip
    return rows + robot_config_refusals(workdir)


def robot_config_refusals(workdir: Path) -> list[Row]:
    """A robot YAML that is malformed or has a misspelled key: the MuJoCo robot node refuses to
    start (exit 2) with one line naming the file or the field."""
    good = (ROOT / "sim" / "robots" / "go2.yaml").read_text()
    cases = {
        "robot config: malformed YAML": ("broken.yaml", good.replace(":", "", 1) + "\n  - [", "is not valid YAML"),
        "robot config: unknown key": ("misspelled.yaml", good.replace("joints:", "joint:", 1), "joint"),
    }
    rows = []
    for case, (name, text, expected) in cases.items():
        path = workdir / name
        path.write_text(text)
        run = subprocess.run([sys.executable, "-m", "trot.ros_nodes.sim_node", "--ros-args", "-p", f"robot:={path}"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
        line = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ""
        ok = run.returncode == 2 and expected in line and "Traceback" not in run.stderr
        rows.append(Row("artifacts & config", case, f"exit {run.returncode}: `{line.replace(f'{workdir}/', '')[:150]}`",
                        "refused naming the problem", ok))  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------- main
SCENARIOS = ("fuzz", "dropouts", "driver", "recorder", "training", "artifacts")


def run(only: tuple[str, ...] = SCENARIOS, fuzz_messages: int = 10_000) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="trot_faults_") as tmp:
        work = Path(tmp)
        for name in only:
            t0 = time.time()
            if name == "fuzz":
                rows += fuzz_policy_node(messages=fuzz_messages)
            elif name == "dropouts":
                rows += dropouts()
            elif name == "driver":
                rows += driver_faults()
            elif name == "recorder":
                rows += recorder_faults(work / "recorder")
            elif name == "training":
                rows += training_resume(work / "training")
            elif name == "artifacts":
                rows += artifact_refusals(work / "artifacts")
            print(f"[{name}: {time.time() - t0:.0f} s]", file=sys.stderr, flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fuzz-messages", type=int, default=10_000)
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}")
    a = parser.parse_args()
    rows = run(tuple(s for s in a.only.split(",") if s), a.fuzz_messages)
    print_table(rows)
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
