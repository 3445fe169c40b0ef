"""trot policy node: a lifecycle node that serves an ONNX policy artifact safely.

In: sensor_msgs/JointState (joint_states), sensor_msgs/Imu (imu), geometry_msgs/Twist (cmd_vel).
Out: sensor_msgs/JointState (joint_commands): position targets + zero velocity/effort in RUNNING
and STANDUP (track them with the contract's Kp/Kd); in DAMPING the message has NO positions,
zero velocities and efforts: the driver must apply damping only. Optionally
std_msgs/Float64MultiArray positions in ``forward_joint_order`` for a ros2_control
forward_command_controller (in DAMPING the measured pose: a position interface cannot take zero
stiffness). Services ~/start, ~/stop, ~/estop (std_srvs/Trigger).
All decisions are made by :class:`trot.policies.controller.PolicyController`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Twist
from rclpy._rclpy_pybind11 import InvalidHandle
from rclpy.duration import Duration
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile
from rclpy.time import Time
from rclpy.wait_for_message import wait_for_message
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger

from trot.policies.artifact import ArtifactError
from trot.policies.controller import Mode, PolicyController, SafetyConfig, joint_order_problem, next_event_tick
from trot.policies.runtime import PolicyRuntime
from trot.policies.settings import above, at_least, unsound
from trot.ros_nodes import realtime
from trot.ros_nodes.cdr import CdrError, JointStateReader, JointStateWriter, read_imu
from trot.ros_nodes.params import declare, doc, fail, realtime_friendly_gil, spin_node


@dataclass
class PolicyNodeParams:
    policy_path: str = field(
        default="", metadata=doc("policy artifact folder, its policy.onnx, or a shipped name (go2_flat)")
    )
    control_rate: float = field(default=0.0, metadata=doc("Hz; 0 = the artifact's control period"))
    start_mode: str = field(
        default="passive",
        metadata=doc(
            "passive: configure + activate, then wait in PASSIVE for ~/start; auto: also stand up and run; "
            "manual: wait for lifecycle transitions (a lifecycle manager)"
        ),
    )
    joint_states_topic: str = "joint_states"
    imu_topic: str = "imu"
    cmd_vel_topic: str = "cmd_vel"
    joint_commands_topic: str = "joint_commands"
    forward_command_topic: str = field(default="", metadata=doc("Float64MultiArray topic; empty = off"))
    forward_joint_order: list[str] = field(
        default_factory=list, metadata=doc("the forward_command_controller's joints: each policy joint once")
    )
    joint_state_timeout_s: float = field(default=5.0, metadata=doc("configure waits this long for joint names"))
    realtime_priority: int = field(
        default=0,
        metadata=doc(
            "SCHED_FIFO priority of the control thread (1-99; the middleware's receive threads get one below; "
            "needs CAP_SYS_NICE or an rtprio limit); 0 = off"
        ),
    )
    control_trigger: str = field(
        default="timer",
        metadata=doc(
            "timer: tick on absolute deadlines; joint_states: tick as each fresh joint state arrives (lowest "
            "latency when the driver publishes at the control rate; the timer still ticks if they stop)"
        ),
    )

    prewarm_lead_s: float = field(
        default=0.002,
        metadata=doc(
            "this long before each tick (timer: its deadline; joint_states: when the next samples are "
            "expected), run the policy once on the current inputs, result thrown away, so that its weights "
            "and code are back in the CPU caches when the tick comes (a process that slept finds them "
            "cold: on this VM the round trip's median fell from ~1.3 to ~0.95 ms); 0 = off; also off with "
            "use_sim_time and when not below half a control period"
        ),
    )
    busy_wait_s: float = field(
        default=0.0003,
        metadata=doc(
            "the control thread busy-waits instead of sleeping this long before each tick (timer: its "
            "deadline) or, with control_trigger:=joint_states, this long either side of when the next "
            "samples are expected: a CPU that went idle takes time to wake (on this 2-core VM the wake-up "
            "was 0.2 ms late at p99, 0.5 ms at p99.9); costs this much CPU per tick (twice with "
            "joint_states); 0 = off; also off with use_sim_time"
        ),
    )

    def problems(self) -> list[str]:
        """Each unsound number, named with its value and what it must be; [] when all are sound."""
        return unsound(self, {
            "control_rate": at_least(0, "(0 = the artifact's)"), "joint_state_timeout_s": above(0),
            "realtime_priority": ((lambda v: 0 <= v <= 99), "0 (off) to 99"),
            "prewarm_lead_s": at_least(0, "(0 = off)"), "busy_wait_s": at_least(0, "(0 = off)"),
        })  # fmt: skip


def timing_figures(
    period: float, periods: np.ndarray, infer_s: np.ndarray, delivery_s: np.ndarray, reaction_s: np.ndarray
) -> dict[str, float]:
    """PolicyNode.timing's figures from its samples (seconds each); {} before the first ticks."""
    if not periods.size:
        return {}
    jitter = np.abs(periods - period)
    figures = {
        "loop_rate_hz": float(1 / periods.mean()),
        "period_jitter_p50_ms": float(np.percentile(jitter, 50) * 1e3),
        "period_jitter_p99_ms": float(np.percentile(jitter, 99) * 1e3),
        "period_max_ms": float(periods.max() * 1e3),  # a one-off stall, which p99 can hide
        "inference_ms_p99": float(np.percentile(infer_s, 99) * 1e3) if infer_s.size else float("nan"),
    }
    for name, samples in (("joint_state_delivery", delivery_s), ("reaction", reaction_s)):
        if samples.size:
            figures[f"{name}_ms_p50"], figures[f"{name}_ms_p99"] = np.percentile(samples * 1e3, [50, 99]).tolist()
    return figures


class PolicyNode(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("trot_policy", **kwargs)
        # node parameters plus every safety setting (trot.policies.controller.SafetyConfig) by its field name
        self.params, self.safety, self.unknown_params = declare(self, PolicyNodeParams, SafetyConfig)
        if self.unknown_params:
            self.get_logger().error(f"unknown parameters {self.unknown_params} (check the parameter file)")
        self.controller: PolicyController | None = None
        self._lock = threading.Lock()
        self._seen_joint_names: tuple[str, ...] | None = None
        self._active = False
        self._loop_thread: threading.Thread | None = None
        self._loop_generation = 0  # each activation's control loop runs only while this is its own
        self._diag_timer = None
        self.overruns = 0
        self.warm_ups = 0  # prewarm_lead_s passes (/diagnostics)
        self._prewarm_s = 0.0  # the prewarm_lead_s in effect (on_configure)
        self._busy_wait_s = 0.0  # the busy_wait_s in effect (on_configure)
        self._auto_start = self.params.start_mode == "auto"
        self._event_ticks = self.params.control_trigger == "joint_states"
        self._last_event_tick = 0.0
        self._event_tick_due = 0.0  # joint_states mode: when the next tick is due (perf_counter)
        self._cycle_start: float | None = None  # joint_states mode: the first sample's arrival since the last tick
        self._cycle_starts: deque[float] = deque(maxlen=4)  # ...and those of the last ticks (_warm_up_at)
        self._warmed_after = 0.0  # the cycle start the last warm-up followed
        self._halted = False  # a tick raised (_fail): no tick after that
        self._tearing_down = False  # destroy_node began
        self._tick_lock = threading.Lock()  # the loop thread and (joint_states mode) the input thread both tick
        self._periods: deque[float] = deque(maxlen=1000)  # for /diagnostics: the last 1000 ticks
        self._infer_s: deque[float] = deque(maxlen=1000)
        # where a joint state's latency goes (/diagnostics): DDS delivery (the driver's publication
        # to this process's reception: DDS timestamps, meaningful with synchronised clocks) and, in
        # joint_states mode, this node's reaction (reception to the command's publication)
        self._delivery_s: deque[float] = deque(maxlen=1000)
        self._reaction_s: deque[float] = deque(maxlen=1000)
        self._js_received_ns = 0
        self._gc = realtime.GcPauses()  # (/diagnostics)
        # The controller's log lines (mode transitions, bad input) are written by a thread of their
        # own: an rclpy log call costs ~1 ms of Python here (it finds its caller's file through
        # inspect and realpath), and in the control thread each transition's tick took 1.4-1.7 ms
        # instead of ~0.2: the very command a transition makes (the first damping one) came late.
        self._log_lines: queue.SimpleQueue[tuple[str, str] | None] = queue.SimpleQueue()
        self._log_thread = threading.Thread(target=self._write_log_lines, name="trot_policy_log", daemon=True)
        self._log_thread.start()
        self._last_tick: float | None = None
        self._periods_in_sim_time = False
        self._cmd_pub = self._fwd_pub = self._diag_pub = None
        p = self.params
        # Sensor input goes through a minimal companion node served by its own thread from one
        # wait set (_serve_inputs), not an executor: rclpy's executor rebuilds its wait set over
        # every entity and runs a task machinery per message; this lifecycle node alone has ~20
        # entities (lifecycle, parameter and start/stop/estop services). Measured here, the executor
        # added ~0.6 ms (all entities) and then ~0.2 ms (the companion alone) to each
        # joint_states -> joint_commands round trip.
        # Topic names are resolved (namespace, remappings) by this node; the companion takes no
        # command-line arguments, or a launch file's `-r __node:=...` would rename it too.
        self._io = rclpy.create_node(
            f"{self.get_name()}_io", namespace=self.get_namespace(), context=self.context,
            use_global_arguments=False, start_parameter_services=False, enable_rosout=False,
            parameter_overrides=[self.get_parameter("use_sim_time")],
        )  # fmt: skip
        topic = self.resolve_topic_name
        # serialized (raw) messages, read by trot.ros_nodes.cdr: see there why
        self._read_joint_state = JointStateReader()
        self._warm_reader = JointStateReader()  # warm-ups decode the last joint state again (any thread)
        self._last_joint_state: bytes | None = None
        self._js_sub = self._io.create_subscription(
            JointState, topic(p.joint_states_topic), self._on_joint_state, 10, raw=True
        )
        self._io.create_subscription(Imu, topic(p.imu_topic), self._on_imu, 10, raw=True)
        self._write_command: JointStateWriter | None = None
        # /cmd_vel is a mailbox the control loop reads once per tick (at most the queue's 10
        # messages), on a node no executor waits on: a flood (a runaway teleop node at 40 kHz) is
        # overwritten inside DDS instead of starving the sensor callbacks, and is detected by the
        # publication rate of what each tick takes (SafetyConfig.max_cmd_rate_hz).
        self._cmd_mailbox = rclpy.create_node(
            f"{self.get_name()}_cmd", namespace=self.get_namespace(), context=self.context,
            use_global_arguments=False, start_parameter_services=False, enable_rosout=False,
        )  # fmt: skip
        self._cmd_sub = self._cmd_mailbox.create_subscription(Twist, topic(p.cmd_vel_topic), lambda msg: None, 10)
        self._io_wake = self._io.create_guard_condition(lambda: None)  # ends _serve_inputs' wait
        self._pending_clock_ns: int | None = None  # see _serve_inputs
        self._sample_arrival = 0.0  # perf_counter of the last joint state or IMU message
        self._io_serving = True
        self._io_thread = threading.Thread(target=self._serve_inputs, name="trot_policy_io", daemon=True)
        self._io_thread.start()
        # the mode on every change (latched): bags and replay tell standup from policy ticks by it
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._state_pub = self.create_publisher(String, "~/state", latched)
        # what this node runs with (latched, JSON): recorded with each episode, so a bag says which
        # safety limits and timing served it, not only which artifact
        self._parameters_pub = self.create_publisher(String, "~/parameters", latched)
        self._published_mode: Mode | None = None
        for name, handler in (("~/start", self._srv_start), ("~/stop", self._srv_stop), ("~/estop", self._srv_estop)):
            self.create_service(Trigger, name, handler)
        if self.params.start_mode != "manual":  # (a mistyped one fails configure, naming it)
            self._boot = self.create_timer(0.05, self._autoboot)

    # ------------------------------------------------------------------ lifecycle
    def _autoboot(self) -> None:
        self._boot.cancel()
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def control_clock(self):
        """The one clock of inputs, ticks and services: the input node's. With use_sim_time its /clock
        subscription is served by the input thread with the samples, so a sample is always judged
        against the newest time (the main node's /clock lags while its executor is busy)."""
        return self._io.get_clock()

    def now(self) -> float:
        return self.control_clock().now().nanoseconds * 1e-9

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Check every parameter, load the artifact and match the robot's joints; FAILURE (the node
        stays unconfigured, commanding nothing) with one log line naming what is wrong."""
        try:
            return self._configure()
        except Exception as exc:  # rclpy would turn it into ERROR without a word
            self.get_logger().error(f"configure failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            self._release()
            return TransitionCallbackReturn.FAILURE

    def _configure(self) -> TransitionCallbackReturn:
        log = self.get_logger()
        if self.unknown_params:
            log.error(f"configure failed: unknown parameters {self.unknown_params}")
            return TransitionCallbackReturn.FAILURE
        if self.params.start_mode not in ("passive", "auto", "manual"):
            log.error(f"configure failed: start_mode {self.params.start_mode!r} is not passive, auto or manual")
            return TransitionCallbackReturn.FAILURE
        if self.params.control_trigger not in ("timer", "joint_states"):
            log.error(f"configure failed: control_trigger {self.params.control_trigger!r} is not 'timer' or "
                      "'joint_states'")  # fmt: skip
            return TransitionCallbackReturn.FAILURE
        if problems := self.params.problems() + self.safety.problems():
            log.error(f"configure failed: {'; '.join(problems)}")
            return TransitionCallbackReturn.FAILURE
        try:
            runtime = PolicyRuntime(self.params.policy_path)
        except ArtifactError as exc:
            log.error(f"configure failed: policy_path: {exc}")
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # an artifact whose checks pass but whose graph ONNX Runtime rejects
            log.error(f"configure failed: policy_path {self.params.policy_path!r}: ONNX Runtime cannot load "
                      f"the policy: {type(exc).__name__}: {exc}")  # fmt: skip
            return TransitionCallbackReturn.FAILURE
        if self.params.forward_command_topic and (
            problem := joint_order_problem(self.params.forward_joint_order, runtime.joint_names)
        ):
            log.error(f"configure failed: forward_joint_order {problem}")
            return TransitionCallbackReturn.FAILURE
        p = self.params
        period = 1.0 / p.control_rate if p.control_rate > 0 else runtime.contract.control_dt
        try:
            controller = PolicyController(runtime, self.safety, period,
                                          log=lambda m: self._log_lines.put(("info", m)),
                                          warn=lambda m: self._log_lines.put(("warn", m)))  # fmt: skip
        except ValueError as exc:  # unsound safety settings, each named
            log.error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        if self._seen_joint_names is None:  # wait here (on our own wait set) for the robot's joint names
            ok, msg = wait_for_message(
                JointState, self, self.params.joint_states_topic, time_to_wait=self.params.joint_state_timeout_s
            )
            if ok:
                self._seen_joint_names = tuple(msg.name)
        if self._seen_joint_names is None:
            log.error(f"configure failed: no message on {self.params.joint_states_topic} within "
                      f"{self.params.joint_state_timeout_s} s; cannot check the robot's joint names")  # fmt: skip
            return TransitionCallbackReturn.FAILURE
        missing = [n for n in runtime.joint_names if n not in self._seen_joint_names]
        if missing:
            log.error(f"configure failed: the robot publishes no state for the policy's joints {missing}")
            return TransitionCallbackReturn.FAILURE
        with self._lock:
            self.controller = controller
        self._prewarm_s = self._prewarm_lead()
        # First calls that import or build caches lazily, made here and not in the first /diagnostics
        # while the policy runs: np.percentile's first call imports numpy.ma (35-65 ms here, the GIL
        # held in stretches; on a 16-core machine it froze the control thread for ~50 ms once per
        # process, and the watchdog damped). tests/first_time_work_probe.py finds any others.
        timing_figures(period, *(np.ones(2),) * 4)
        sim_time = self.get_parameter("use_sim_time").value
        self._periods_in_sim_time = sim_time  # (the loop's periods: of the robot's time, not the wall's)
        self._busy_wait_s = 0.0 if sim_time else min(self.params.busy_wait_s, 0.25 * period)
        self._cmd_pub = self.create_lifecycle_publisher(JointState, p.joint_commands_topic, 10)
        self._write_command = JointStateWriter(runtime.joint_names)
        if p.forward_command_topic:
            self._fwd_index = np.array([runtime.joint_names.index(n) for n in p.forward_joint_order], dtype=np.intp)
            self._fwd_pub = self.create_lifecycle_publisher(Float64MultiArray, p.forward_command_topic, 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._parameters_pub.publish(String(data=json.dumps({
            "node": dataclasses.asdict(p), "safety": dataclasses.asdict(self.safety), "use_sim_time": sim_time,
            "control_period_s": period, "policy_sha256": runtime.onnx_sha256,
            "robot": runtime.contract.robot, "joint_names": list(runtime.joint_names),
            # the gains the targets are meant for (contract order): a driver bridge can take them from here
            # rather than keep a second copy, and the bag records what the robot should have run
            "kp": list(runtime.contract.kp), "kd": list(runtime.contract.kd),
            "torque_limits": list(runtime.contract.torque_limits)})))  # fmt: skip
        log.info(f"configured: {p.policy_path} ({runtime.contract.robot}, {1 / period:.0f} Hz)")
        trained_hz = 1.0 / runtime.contract.control_dt
        if abs(period - runtime.contract.control_dt) > 1e-9:  # (allowed: a benchmark, a deliberate test)
            log.warn(f"control_rate {p.control_rate:g} Hz is not the {trained_hz:g} Hz the policy was trained at: "
                     "its actions (and the last action it observes) assume that period")  # fmt: skip
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        self._auto_start = self.params.start_mode == "auto"  # (again after a cleanup and configure)
        self._loop_generation += 1  # a loop of an earlier activation that has not ended yet stops
        self._active = True
        self._realtime_middleware()
        self._loop_thread = threading.Thread(target=self._control_loop, name="trot_control", daemon=True)
        self._loop_thread.start()
        self._diag_timer = self.create_timer(1.0, self._diagnostics)
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_controlling("lifecycle deactivate requested")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """From any state, ACTIVE included: damp first (rclpy leaves lifecycle publishers enabled
        through a shutdown, and the loop would go on sending the policy's targets)."""
        self._stop_controlling("lifecycle shutdown requested")
        self._release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised (its traceback is logged): damp, release, back to UNCONFIGURED."""
        self.get_logger().error(f"lifecycle error during a transition from {state.label}: damping and "
                                "returning to unconfigured")  # fmt: skip
        self._stop_controlling("lifecycle error")
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_controlling(self, reason: str) -> None:
        """DAMPING with ``reason``, the control loop stopped, and one damping command sent on the way
        out (the driver must not be left holding the last target at full stiffness); a node still
        PASSIVE stays so, commanding nothing. Nothing when not active."""
        if not self._active:
            return
        with self._tick_lock, self._lock:  # (after a tick in flight has published)
            self._active = False  # before anything else: no tick after this, an auto start's neither
            self._auto_start = False
            controller = self.controller
            commanding = controller is not None and controller.mode is not Mode.PASSIVE
            if commanding:
                controller.stop(self.now(), reason=reason)
        if self._loop_thread is not None:
            self._loop_thread.join(timeout=1.0)  # (a loop still asleep ends on its own: generation)
        if commanding:
            self._tick()
            self._await_acknowledgment()
        self._destroy_diag_timer()

    def _fail(self, what: str) -> None:
        """A tick raised (a bug: every input is checked before it gets there): no tick after this, on
        either thread; one damping command written without the controller, whose state is now
        suspect (none from a node still PASSIVE); and the process ends with status 1 (params.fail)
        instead of living on, silent, with the node still ACTIVE."""
        try:
            with self._tick_lock:  # (a tick in flight on the other thread publishes first)
                self._halted = True
                self._active = False
                controller, write, pub = self.controller, self._write_command, self._cmd_pub
                if controller is not None and controller.mode is not Mode.PASSIVE and write and pub:
                    sec, nanosec = divmod(self.control_clock().now().nanoseconds, 1_000_000_000)
                    zeros = np.zeros(write.count)
                    pub.publish(write(sec, nanosec, None, zeros, zeros))
            self._await_acknowledgment()
        except Exception:  # (a publisher released under us: the fault below is what matters)
            traceback.print_exc()
        finally:
            fail(self, what)

    def _serving(self) -> bool:
        """Not being torn down (destroy_node runs before the context shuts down, and may destroy a
        publisher under a tick whose thread did not end in time: not a fault of the node)."""
        return not self._tearing_down and self.context.ok()

    def _await_acknowledgment(self, timeout_s: float = 0.5) -> None:
        """Until every reliable subscriber (the driver) has acknowledged what was sent, the last
        damping command included, or ``timeout_s`` for all publishers together. A shutdown destroys
        the publishers next, and a reliable writer destroyed right after a write loses that sample
        if its first transmission was dropped (a busy reader's full queue; `bench/dds_last_sample.py`;
        seen once in the lifecycle test as a RUNNING command last). Polled: rclpy's wait holds the GIL."""
        pending = [pub for pub in (self._cmd_pub, self._fwd_pub) if pub is not None]
        end = time.monotonic() + timeout_s
        while pending:
            pending = [pub for pub in pending if not pub.wait_for_all_acked(Duration(seconds=0))]
            if not pending or time.monotonic() > end:
                break
            time.sleep(0.001)
        for pub in pending:
            self.get_logger().warn(f"{pub.topic_name}: the last damping command was not acknowledged by "
                                   f"every subscriber within {timeout_s} s")  # fmt: skip

    def _destroy_diag_timer(self) -> None:
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None

    def _release(self) -> None:
        """Back to unconfigured: no controller, no command publishers (a new configure makes them)."""
        with self._tick_lock, self._lock:
            self.controller = None
        self._destroy_diag_timer()
        for pub in (self._cmd_pub, self._fwd_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
        self._cmd_pub = self._fwd_pub = self._diag_pub = None

    def _control_loop(self) -> None:
        """Ticks on absolute deadlines of the node's clock (ROS time: follows /clock with use_sim_time),
        in its own thread so that message callbacks cannot delay it. With control_trigger:=joint_states
        the input thread ticks, and this one ticks only while joint states stop (the watchdog acts)."""
        self._realtime_thread("trot_control")
        clock = self.control_clock()
        controller, generation = self.controller, self._loop_generation  # (cleanup may clear self.controller)
        if controller is None:
            return
        period = round(controller.period * 1e9)
        jump_ns = round(self.safety.clock_jump_s * 1e9)
        sim_time = self.get_parameter("use_sim_time").value
        lead = round(self._prewarm_s * 1e9) if not self._event_ticks else 0  # (joint_states: _serve_inputs)
        spin = round(self._busy_wait_s * 1e9) if not self._event_ticks else 0  # (the same)
        # joint_states on the wall clock: wake half a period after the next tick is due, not on a grid
        # of its own, whose phase could fall on the samples' arrival and slow that tick (measured: in a
        # run where it did, 18 of the 20 slowest round trips; GIL and CPU taken from the input thread)
        watch_event_ticks = self._event_ticks and not sim_time
        deadline = last = clock.now().nanoseconds

        def active() -> bool:
            return self._active and self._loop_generation == generation

        while active() and rclpy.ok():
            deadline += period
            if watch_event_ticks:
                due = self._last_event_tick + 1.5 * controller.period
                deadline = max(deadline, clock.now().nanoseconds + round((due - time.perf_counter()) * 1e9))
            warm = lead > 0
            while active() and (remaining := deadline - (now := clock.now().nanoseconds)) > 0:
                if now < last - period:  # the clock went backwards: waiting for the deadline could take forever
                    break
                if warm and remaining <= lead:
                    warm = False
                    self._warm_up()
                    continue
                if remaining <= spin:  # busy_wait_s: the CPU stays awake for the deadline
                    os.sched_yield()  # (and lets other threads take the GIL)
                    continue
                nap = remaining - max(lead if warm else 0, spin)
                # wall clock: one sleep (in slices of 0.1 s at most: a deactivation is noticed); sim
                # time: poll, since /clock may run at any rate
                time.sleep(min(nap * 1e-9, 0.001) if sim_time else min(nap * 1e-9, 0.1))
            now = clock.now().nanoseconds
            if not last or now < last - period or now > last + jump_ns:  # (sim time: 0 until /clock arrives)
                if last:
                    with self._lock:
                        controller.clock_jumped((now - last) * 1e-9, now * 1e-9)
                    self._last_tick = None  # (a period across the jump is none of the loop's)
                deadline = now
            last = now
            if sim_time:  # /clock can outrun samples still in flight (a player catching up replays 0.1 s
                # in a few ms): while samples keep arriving, give them up to a period to land
                give_up = time.perf_counter() + controller.period
                while (active() and time.perf_counter() < give_up and not controller.fresh(self.now())
                       and time.perf_counter() - self._sample_arrival < 0.005):  # fmt: skip
                    time.sleep(0.0005)
            if not active():
                return
            if not self._event_ticks or time.perf_counter() - self._last_event_tick > 1.5 * controller.period:
                try:
                    self._tick()  # in joint_states mode only when the joint states stopped: the watchdog acts
                except Exception:
                    if self._serving():  # (not a teardown under us: SIGINT/SIGTERM)
                        self._fail("the control loop")
                    return
            behind = clock.now().nanoseconds - deadline
            if behind > period:  # overrun: skip the missed ticks instead of bursting
                self.overruns += behind // period
                deadline += (behind // period) * period

    # ------------------------------------------------------------------ inputs
    def _input_now(self) -> float:
        """The time a sample is judged against (input thread): with use_sim_time, the newest /clock
        taken after the sample, even before the control clock shows it (see _serve_inputs)."""
        return self._pending_clock_ns * 1e-9 if self._pending_clock_ns is not None else self.now()

    def _on_joint_state(self, data: bytes) -> None:
        self._sample_arrival = time.perf_counter()
        if self._cycle_start is None:
            self._cycle_start = self._sample_arrival
        try:
            msg = self._read_joint_state(data)
        except CdrError as exc:
            if (controller := self.controller) is not None:
                with self._lock:
                    controller.reject(f"joint state: {exc}", self._input_now())
            return
        self._seen_joint_names = msg.names
        self._last_joint_state = data
        if (controller := self.controller) is None:  # (one read: cleanup may clear it meanwhile)
            return
        now = self._input_now()
        stamp = msg.stamp or now  # an unstamped message counts as received now
        velocity = msg.velocity if len(msg.velocity) else np.zeros(len(msg.names))
        with self._lock:
            fresh = controller.set_joint_state(msg.names, msg.position, velocity, stamp, now)
        # joint_states mode: tick on the first sample from a quarter period before each tick is due,
        # ticks due a control period apart (next_event_tick: a driver at the control rate ticks every
        # sample, also after a stall; a faster one is decimated to the control rate on average)
        if self._event_ticks and fresh and self._active:
            arrival, period = time.perf_counter(), controller.period
            if (tick := next_event_tick(self._event_tick_due, arrival, period)) is not None:
                if tick.late:  # the first tick, a stall or a restart: the cycle history projects no more
                    self._cycle_starts.clear()
                self._event_tick_due = tick.due
                self._last_event_tick = arrival
                self._cycle_starts.append(self._cycle_start)
                self._cycle_start = None
                try:
                    self._tick(self._pending_clock_ns)
                except Exception:
                    if self._serving():  # (not a teardown under us, as in the control loop)
                        self._fail("a control tick on a joint state")
                    return
                if self._js_received_ns:
                    self._reaction_s.append((time.time_ns() - self._js_received_ns) * 1e-9)

    def _on_imu(self, data: bytes) -> None:
        self._sample_arrival = time.perf_counter()
        if self._cycle_start is None:
            self._cycle_start = self._sample_arrival
        if (controller := self.controller) is None:
            return
        now = self._input_now()
        try:
            msg = read_imu(data)
        except CdrError as exc:
            with self._lock:
                controller.reject(f"IMU: {exc}", now)
            return
        with self._lock:
            controller.set_imu(msg.quat_wxyz, msg.angular_velocity, msg.stamp or now, now,
                                    has_orientation=msg.orientation_covariance0 != -1.0)  # fmt: skip

    def _take_commands(self, now: float) -> None:
        """Every /cmd_vel waiting in the mailbox (each is checked; the newest stays), received ``now``;
        their publication instants go to the flood detection."""
        published: list[float] = []
        while len(published) < 16:
            with self._cmd_sub.handle:
                taken = self._cmd_sub.handle.take_message(Twist, False)
            if taken is None:
                break
            msg, info = taken
            published.append(info["source_timestamp"] * 1e-9)
            self.controller.set_command(msg.linear.x, msg.linear.y, msg.angular.z, now)
        self.controller.commands_received(published, now)

    # ------------------------------------------------------------------ services
    def _service(self, action: str, response: Trigger.Response) -> Trigger.Response:
        if (controller := self.controller) is None:
            response.success, response.message = False, "not configured"
            return response
        if action == "start" and not self._active:  # nothing would tick: the stand-up would not run
            response.success, response.message = False, "not active: activate the node (lifecycle) first"
            return response
        with self._tick_lock, self._lock:  # (a tick in flight publishes first: none of its mode after the reply)
            response.success, response.message = getattr(controller, action)(self.now())
        return response

    def _srv_start(self, request, response):
        return self._service("start", response)

    def _srv_stop(self, request, response):
        return self._service("stop", response)

    def _srv_estop(self, request, response):
        return self._service("estop", response)

    # ------------------------------------------------------------------ control loop
    def _tick(self, now_ns: int | None = None) -> None:
        """One control step at ``now_ns`` (default: the control clock's now)."""
        with self._tick_lock:
            self._tick_locked(now_ns)

    def _tick_locked(self, now_ns: int | None) -> None:
        if self.controller is None or self._cmd_pub is None or self._halted:
            return
        if now_ns is None:  # the command is stamped with the instant its inputs were sampled
            now_ns = self.control_clock().now().nanoseconds
        now = now_ns * 1e-9
        # the period on the robot's clock: simulated with use_sim_time (a sim faster or slower than real
        # time keeps 20 ms of its own time, not of the wall's), else the monotonic wall clock
        tick_at = now if self._periods_in_sim_time else time.perf_counter()
        if self._last_tick is not None and tick_at > self._last_tick:  # (not across a jump of simulated time)
            self._periods.append(tick_at - self._last_tick)
        self._last_tick = tick_at
        with self._lock:
            if self._auto_start and self.controller.mode is Mode.PASSIVE:
                ok, _ = self.controller.start(now)
                self._auto_start = not ok
            self._take_commands(now)
            t0 = time.perf_counter()
            cmd = self.controller.tick(now)
            self._infer_s.append(time.perf_counter() - t0)
            if self.controller.mode is not self._published_mode:
                self._published_mode = self.controller.mode
                self._state_pub.publish(String(data=self.controller.mode.value))
            if cmd is None:
                return
            sec, nanosec = divmod(now_ns, 1_000_000_000)
            damping = cmd.mode is Mode.DAMPING
            msg = self._write_command(sec, nanosec, None if damping else cmd.position, cmd.velocity, cmd.effort)
            # DAMPING: a position interface has no zero stiffness; the measured pose as the target
            # (clipped to the limits) leaves the driver's damping term alone, instead of holding the
            # last target at full stiffness; none before a pose was measured (an estop before the
            # first joint state: the zeros it starts as would be a pose like any other)
            forward = None
            if self._fwd_pub and (not damping or self.controller.has_joint_state):
                forward = cmd.position[self._fwd_index].tolist()
        self._cmd_pub.publish(msg)
        if forward is not None:
            self._fwd_pub.publish(Float64MultiArray(data=forward))

    def timing(self, last: int = 1000) -> dict[str, float]:
        """Over the last ticks: loop rate, period jitter (|period - nominal|) p50/p99, longest period,
        inference p99, joint-state delivery and (joint_states mode) reaction p50/p99."""
        if (controller := self.controller) is None:  # (unconfigured)
            return {}
        return timing_figures(controller.period, *(np.array(samples)[-last:] for samples in (
            self._periods, self._infer_s, self._delivery_s, self._reaction_s)))  # fmt: skip

    def _diagnostics(self) -> None:
        if (c := self.controller) is None:
            return
        status = DiagnosticStatus(name=self.get_fully_qualified_name(), hardware_id=c.contract.robot)
        status.level = DiagnosticStatus.OK if c.mode is not Mode.DAMPING else DiagnosticStatus.WARN
        status.message = c.mode.value
        now = self.now()
        timing = self.timing(last=100)
        values = {
            "state": c.mode.value,
            **{key: f"{timing[key]:.3f}" if key in timing else "n/a" for key in (
                "loop_rate_hz", "period_jitter_p50_ms", "period_jitter_p99_ms", "period_max_ms", "inference_ms_p99",
                "joint_state_delivery_ms_p50", "joint_state_delivery_ms_p99", "reaction_ms_p50", "reaction_ms_p99")},
            "joint_state_age_ms": f"{(now - c._joints.stamp) * 1e3:.1f}",
            "imu_age_ms": f"{(now - c._imu.stamp) * 1e3:.1f}",
            "watchdog_trips": str(c.stats.watchdog_trips),
            "overruns": str(self.overruns),
            "cache_warm_ups": str(self.warm_ups),
            "bad_inputs": str(c.stats.bad_inputs),
            "stale_samples_dropped": str(c.stats.stale_dropped),
            "clock_jumps": str(c.stats.clock_jumps),
            "gc_collections": str(self._gc.count),
            "gc_pause_max_ms": f"{self._gc.longest_s * 1e3:.2f}",
        }  # fmt: skip
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.control_clock().now().to_msg()
        self._diag_pub.publish(msg)

    def _realtime_thread(self, name: str) -> None:
        """Name the calling thread for the OS (ps -L, top -H) and, when realtime_priority is set,
        put it at SCHED_FIFO: each logs what it got."""
        realtime.name_this_thread(name)
        if (priority := self.params.realtime_priority) > 0:
            try:
                realtime.set_fifo(priority)
            except (OSError, AttributeError) as exc:
                self.get_logger().warn(f"realtime_priority {priority} not granted ({name}): {exc}")
                return
            self.get_logger().info(f"SCHED_FIFO {priority} for the control thread ({name})")

    def _realtime_middleware(self) -> None:
        """With realtime_priority, the middleware's receive threads at SCHED_FIFO one below it: every
        sample passes through one before the control thread sees it (see ros_nodes/realtime.py), and
        they then preempt everything on the machine but the control thread."""
        priority, log = self.params.realtime_priority, self.get_logger()
        if priority <= 0:
            return
        threads, below = realtime.receive_threads(), max(1, priority - 1)
        if not threads:
            log.warn("realtime_priority: no Fast DDS receive threads found (another RMW?): they keep their scheduling")
        try:
            for tid in threads:
                realtime.set_fifo(below, tid)
        except (OSError, AttributeError) as exc:
            log.warn(f"realtime_priority {priority} not granted to the receive threads: {exc}")
            return
        names = ", ".join(sorted(threads.values()))
        log.info(f"SCHED_FIFO {below} for {len(threads)} receive threads ({names}), one below the control thread")

    def _serve_inputs(self) -> None:
        """The input thread: wait on the companion node's subscriptions (joint states, IMU and, with
        use_sim_time, /clock) and run each message's callback as it arrives."""
        if self._event_ticks:  # the input thread runs the ticks: it is the control thread too
            self._realtime_thread("trot_policy_io")
        else:
            realtime.name_this_thread("trot_policy_io")
        # With use_sim_time, /clock is a subscription of this node (its time source's). A player
        # catching up publishes bursts of /clock + samples: each sample is judged against the newest
        # /clock taken after it (one read at wake-up would make later samples look stamped in the
        # future: DAMPING), and the control clock moves only once the samples that came with that
        # time are in (a tick in between would find them stale: watchdog).
        clock_sub = next((sub for sub in self._io.subscriptions if sub.topic_name == "/clock"), None)
        # joint states last: when an IMU sample arrived with them, the tick they trigger uses it
        inputs = [sub for sub in self._io.subscriptions if sub is not clock_sub]
        inputs.sort(key=lambda sub: sub is self._js_sub)
        subscriptions = [*inputs, *([clock_sub] if clock_sub else [])]
        newest_clock = None

        def take_clock() -> None:
            nonlocal newest_clock
            while clock_sub is not None and (taken := clock_sub.handle.take_message(clock_sub.msg_type, clock_sub.raw)):
                newest_clock = taken[0]
                self._pending_clock_ns = Time.from_msg(newest_clock.clock).nanoseconds

        def serve_all() -> int:
            nonlocal newest_clock
            give_up = time.perf_counter() + 0.02  # until nothing is left (a burst goes on arriving), within bounds
            total = 0
            while time.perf_counter() < give_up:
                served = 0
                for sub in inputs:
                    while self._io_serving and (taken := sub.handle.take_message(sub.msg_type, sub.raw)):
                        take_clock()
                        if sub is self._js_sub and (received := taken[1]["received_timestamp"]):
                            self._js_received_ns = received  # 0: an RMW without reception stamps
                            self._delivery_s.append((received - taken[1]["source_timestamp"]) * 1e-9)
                        sub.callback(taken[0])
                        served += 1
                total += served
                if not served:
                    break
            take_clock()
            if newest_clock is not None:
                clock_sub.callback(newest_clock)  # the control clock shows it now
                newest_clock = self._pending_clock_ns = None
            return total

        wait_set = _rclpy.WaitSet(len(subscriptions), 1, 0, 0, 0, 0, self.context.handle)
        with contextlib.ExitStack() as handles, contextlib.suppress(InvalidHandle):  # InvalidHandle: shutting down
            for entity in (*subscriptions, self._io_wake):
                handles.enter_context(entity.handle)
            while self._io_serving and self.context.ok():
                wait_set.clear_entities()
                for sub in subscriptions:
                    wait_set.add_subscription(sub.handle)
                wait_set.add_guard_condition(self._io_wake.handle)
                expected = self._samples_expected()  # (once per wake-up: in a busy-wait this loop is the poll)
                warm_at, (spin_from, spin_until) = self._warm_up_at(expected), self._busy_wait_window(expected)
                now, timeout = time.perf_counter(), 0.2  # 0.2 s: also a bound on noticing a context shut down
                if warm_at is not None:
                    timeout = min(timeout, max(0.0, warm_at - now))
                if spin_from is not None and now < spin_until:  # busy_wait_s: from spin_from on, poll:
                    timeout = min(timeout, max(0.0, spin_from - now))  # the CPU stays awake for the samples
                    if timeout == 0.0:  # and this thread lets the receive thread that brings them run
                        os.sched_yield()
                wait_set.wait(int(timeout * 1e9))
                if not serve_all() and warm_at is not None and time.perf_counter() >= warm_at:
                    self._warmed_after = self._cycle_starts[-1]
                    self._warm_up()

    def _samples_expected(self) -> float | None:
        """joint_states mode: when the next tick's samples are expected (perf_counter), or None: a
        driver at the control rate sends them a period after the first sample (IMU or joint state)
        of the last tick (the earliest such projection of the last four ticks: one late delivery
        must not make the warm-up late too, running into the next sample); a faster driver as soon
        as a tick may fire (see _on_joint_state)."""
        starts, controller = self._cycle_starts, self.controller
        if not self._event_ticks or not self._active or not starts or controller is None:
            return None
        period = controller.period
        expected = min(start + (len(starts) - i) * period for i, start in enumerate(starts))
        return max(expected, self._event_tick_due - 0.25 * period)

    def _warm_up_at(self, expected: float | None) -> float | None:
        """When to warm the caches for the next joint-state tick (perf_counter; once per tick,
        prewarm_lead_s before its samples are ``expected``), or None."""
        lead, starts = self._prewarm_s, self._cycle_starts
        if lead <= 0 or expected is None or self._warmed_after == starts[-1]:
            return None
        return expected - lead

    def _busy_wait_window(self, expected: float | None) -> tuple[float | None, float]:
        """(from, until) perf_counter: busy_wait_s either side of when the next tick's samples are
        ``expected``, and on until busy_wait_s after the first of them arrived (a driver sends IMU
        and joint state one after the other); (None, 0) when off. Once the tick ran, the next
        window is a period later."""
        spin = self._busy_wait_s
        if spin <= 0 or expected is None:
            return None, 0.0
        first = self._cycle_start  # (None until a sample arrived since the last tick)
        return expected - spin, max(expected, first or expected) + spin

    def _prewarm_lead(self) -> float:
        """prewarm_lead_s, or 0 when it is not below half a control period (at such rates the ticks
        themselves keep the caches warm, and a warm-up would double the work per period) or with
        use_sim_time (a simulation or replay, often faster than real time: CPU matters more there
        than a fraction of a millisecond of latency)."""
        lead = self.params.prewarm_lead_s
        if lead >= 0.5 * self.controller.period or self.get_parameter("use_sim_time").value:
            return 0.0
        return lead

    def _warm_up(self) -> None:
        """The next tick's path through the caches: the last joint state's decoding and checks, the
        policy step and the filters (PolicyController.warm_up), with nothing kept."""
        try:  # (either thread may run it: one that raised here would stop ticking or reading, unseen)
            joint_state = ()
            if (data := self._last_joint_state) is not None:
                msg = self._warm_reader(data)  # (it decoded once already)
                velocity = msg.velocity if len(msg.velocity) else np.zeros(len(msg.names))
                joint_state = (msg.names, msg.position, velocity)
            with self._tick_lock, self._lock:
                if self.controller is not None:  # (cleanup may have released it since the wait began)
                    self.warm_ups += self.controller.warm_up(self._input_now(), joint_state)
        except Exception:
            if self._serving():
                self._fail("a cache warm-up")

    def _write_log_lines(self) -> None:
        """The log thread: writes the controller's lines, in order, until None."""
        realtime.name_this_thread("trot_policy_log")
        logger = self.get_logger()
        while (line := self._log_lines.get()) is not None:
            level, text = line
            try:  # (one call site per severity: rclpy refuses a site whose severity changes)
                if level == "warn":
                    logger.warn(text)
                else:
                    logger.info(text)
            except Exception:  # a line lost, not every later one
                traceback.print_exc()

    def destroy_node(self) -> None:
        """Stop the control loop (one damping command on the way out: SIGINT/SIGTERM must not leave
        the driver holding the last target at full stiffness) and the input thread before the
        publishers go away."""
        self._tearing_down = True
        try:
            self._stop_controlling("node shutdown requested")
        except Exception:  # (a context already shut down: nothing can be sent any more)
            traceback.print_exc()
        self._active = False
        if self._loop_thread is not None:
            self._loop_thread.join(timeout=1.0)
        self._io_serving = False
        self._io_wake.trigger()
        self._io_thread.join(timeout=1.0)
        self._io.destroy_node()
        self._cmd_mailbox.destroy_node()
        self._gc.close()
        self._log_lines.put(None)  # after every line queued before (the last tick's included)
        self._log_thread.join(timeout=1.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    realtime_friendly_gil()
    return spin_node(PolicyNode, args)


if __name__ == "__main__":
    sys.exit(main())
