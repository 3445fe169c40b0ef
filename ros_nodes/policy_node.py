"""trot policy node: a lifecycle node that serves an ONNX policy artifact safely.

In: sensor_msgs/JointState (joint_states), sensor_msgs/Imu (imu), geometry_msgs/Twist (cmd_vel).
Out: sensor_msgs/JointState (joint_commands): position targets + zero velocity/effort in RUNNING
and STANDUP (track them with the contract's Kp/Kd); in DAMPING the message has NO positions,
zero velocities and efforts: the driver must apply damping only. Optionally
std_msgs/Float64MultiArray positions in ``forward_joint_order`` for a ros2_control
forward_command_controller (in DAMPING the measured pose: a position interface cannot take zero
stiffness). Services ~/start, ~/stop, ~/estop (std_srvs/Trigger).
All decisions are made by :class:`trot.policies.controller.PolicyController`. Parameters:
:mod:`trot.ros_nodes.policy_params`; input thread: :mod:`trot.ros_nodes.policy_inputs`; tick
schedule: :mod:`trot.ros_nodes.schedule`; /diagnostics: :mod:`trot.ros_nodes.policy_diagnostics`;
one source per input (~/start refused, DAMPING while running): :mod:`trot.ros_nodes.sources`.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile
from rclpy.wait_for_message import wait_for_message
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger

from trot.policies.artifact import ArtifactError
from trot.policies.controller import Mode, PolicyController
from trot.policies.runtime import PolicyRuntime
from trot.policies.settings import SafetyConfig
from trot.ros_nodes import realtime
from trot.ros_nodes.cdr import JointStateWriter
from trot.ros_nodes.log_thread import LogThread
from trot.ros_nodes.params import await_acknowledgment, declare, realtime_friendly_gil, spin_node
from trot.ros_nodes.params import fail as fail_process
from trot.ros_nodes.policy_diagnostics import TickTimes, diagnostic_status, timing_figures
from trot.ros_nodes.policy_inputs import PolicyInputs
from trot.ros_nodes.policy_params import PolicyNodeParams, configure_problem, joint_order_problem, parameters_record
from trot.ros_nodes.schedule import DeadlineSchedule, SampleSchedule, busy_wait_in_effect, prewarm_in_effect


class PolicyNode(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("trot_policy", **kwargs)
        # node parameters plus every safety setting (trot.policies.settings.SafetyConfig) by its field name
        self.params, self.safety, self.unknown_params = declare(self, PolicyNodeParams, SafetyConfig)
        if self.unknown_params:
            self.get_logger().error(f"unknown parameters {self.unknown_params} (check the parameter file)")
        self.controller: PolicyController | None = None
        self.lock = threading.Lock()  # the controller's: every call into it holds this
        self.active = False  # ticks may run (between activate and a stop)
        self._loop_thread: threading.Thread | None = None
        self._loop_generation = 0  # each activation's control loop runs only while this is its own
        self._diag_timer = None
        self.overruns = 0
        self.warm_ups = 0  # prewarm_lead_s passes (/diagnostics)
        self._prewarm_s = 0.0  # the prewarm_lead_s in effect (on_configure)
        self._busy_wait_s = 0.0  # the busy_wait_s in effect (on_configure)
        self._auto_start = self.params.start_mode == "auto"
        self.event_ticks = self.params.control_trigger == "joint_states"
        self.events = SampleSchedule()  # joint_states mode: which samples tick (the input thread's)
        self._halted = False  # a tick raised (fail): no tick after that
        self._tearing_down = False  # destroy_node began
        self._tick_lock = threading.Lock()  # the loop thread and (joint_states mode) the input thread both tick
        self.times = TickTimes()  # (/diagnostics)
        self._gc = realtime.GcPauses()  # (/diagnostics)
        self._log = LogThread(self.get_logger(), "trot_policy_log")  # the controller's lines (mode transitions)
        self._periods_in_sim_time = False
        self._cmd_pub = self._fwd_pub = self._diag_pub = None
        self._inputs = PolicyInputs(self)
        self._write_command: JointStateWriter | None = None
        self._inputs.start()
        # the mode on every change (latched): bags and replay tell standup from policy ticks by it
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._state_pub = self.create_publisher(String, "~/state", latched)
        # what this node runs with (latched, JSON): recorded with each episode, so a bag says which
        # safety limits and timing served it, not only which artifact
        self._parameters_pub = self.create_publisher(String, "~/parameters", latched)
        self._published_mode: Mode | None = None
        for action in ("start", "stop", "estop"):
            self.create_service(Trigger, f"~/{action}", lambda request, response, a=action: self._service(a, response))
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
        return self._inputs.io.get_clock()

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
        log, p = self.get_logger(), self.params
        if problem := configure_problem(p, self.safety, self.unknown_params):
            log.error(f"configure failed: {problem}")
            return TransitionCallbackReturn.FAILURE
        try:
            runtime = PolicyRuntime(p.policy_path)
        except ArtifactError as exc:
            log.error(f"configure failed: policy_path: {exc}")
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # an artifact whose checks pass but whose graph ONNX Runtime rejects
            log.error(f"configure failed: policy_path {p.policy_path!r}: ONNX Runtime cannot load "
                      f"the policy: {type(exc).__name__}: {exc}")  # fmt: skip
            return TransitionCallbackReturn.FAILURE
        if p.forward_command_topic and (problem := joint_order_problem(p.forward_joint_order, runtime.joint_names)):
            log.error(f"configure failed: forward_joint_order {problem}")
            return TransitionCallbackReturn.FAILURE
        period = 1.0 / p.control_rate if p.control_rate > 0 else runtime.contract.control_dt
        try:
            controller = PolicyController(runtime, self.safety, period, log=self._log.info, warn=self._log.warn)
        except ValueError as exc:  # unsound safety settings, each named
            log.error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        if self._inputs.seen_joint_names is None:  # wait here (on our own wait set) for the robot's joint names
            ok, msg = wait_for_message(JointState, self, p.joint_states_topic, time_to_wait=p.joint_state_timeout_s)
            if ok:
                self._inputs.seen_joint_names = tuple(msg.name)
        if (seen := self._inputs.seen_joint_names) is None:
            log.error(f"configure failed: no message on {p.joint_states_topic} within "
                      f"{p.joint_state_timeout_s} s; cannot check the robot's joint names")  # fmt: skip
            return TransitionCallbackReturn.FAILURE
        if missing := [n for n in runtime.joint_names if n not in seen]:
            log.error(f"configure failed: the robot publishes no state for the policy's joints {missing}")
            return TransitionCallbackReturn.FAILURE
        sim_time = self.get_parameter("use_sim_time").value
        self._prewarm_s = prewarm_in_effect(p.prewarm_lead_s, period, sim_time)
        self._busy_wait_s = busy_wait_in_effect(p.busy_wait_s, period, sim_time)
        self.events.period, self.events.lead, self.events.spin = period, self._prewarm_s, self._busy_wait_s
        with self.lock:
            self.controller = controller
        # First calls that import or build caches lazily, made here and not in the first /diagnostics
        # while the policy runs: np.percentile's first call imports numpy.ma (tens of ms with the GIL
        # held in stretches: the control thread would stall and the watchdog damp).
        # tests/ros_nodes/first_time_work_probe.py finds any others.
        timing_figures(period, *(np.ones(2),) * 4)
        self._periods_in_sim_time = sim_time  # (the loop's periods: of the robot's time, not the wall's)
        self._cmd_pub = self.create_lifecycle_publisher(JointState, p.joint_commands_topic, 10)
        self._write_command = JointStateWriter(runtime.joint_names)
        if p.forward_command_topic:
            self._fwd_index = np.array([runtime.joint_names.index(n) for n in p.forward_joint_order], dtype=np.intp)
            self._fwd_pub = self.create_lifecycle_publisher(Float64MultiArray, p.forward_command_topic, 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._parameters_pub.publish(String(data=parameters_record(p, self.safety, sim_time, period, runtime)))
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
        self.active = True
        realtime.receive_threads_below(self.params.realtime_priority, self.get_logger())
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
        if not self.active:
            return
        with self._tick_lock, self.lock:  # (after a tick in flight has published)
            self.active = False  # before anything else: no tick after this, an auto start's neither
            self._auto_start = False
            controller = self.controller
            commanding = controller is not None and controller.mode is not Mode.PASSIVE
            if commanding:
                controller.stop(self.now(), reason=reason)
        if self._loop_thread is not None:
            self._loop_thread.join(timeout=1.0)  # (a loop still asleep ends on its own: generation)
        if commanding:
            self.tick()
            await_acknowledgment(self, (self._cmd_pub, self._fwd_pub))
        self._destroy_diag_timer()

    def fail(self, what: str) -> None:
        """A tick raised (a bug: every input is checked before it gets there): no tick after this, on
        either thread; one damping command written without the controller, whose state is now
        suspect (none from a node still PASSIVE); and the process ends with status 1 (params.fail)
        instead of living on, silent, with the node still ACTIVE."""
        try:
            with self._tick_lock:  # (a tick in flight on the other thread publishes first)
                self._halted = True
                self.active = False
                controller, write, pub = self.controller, self._write_command, self._cmd_pub
                if controller is not None and controller.mode is not Mode.PASSIVE and write and pub:
                    sec, nanosec = divmod(self.control_clock().now().nanoseconds, 1_000_000_000)
                    zeros = np.zeros(write.count)
                    pub.publish(write(sec, nanosec, None, zeros, zeros))
            await_acknowledgment(self, (self._cmd_pub, self._fwd_pub))
        except Exception:  # (a publisher released under us: the fault below is what matters)
            traceback.print_exc()
        finally:
            fail_process(self, what)

    def serving(self) -> bool:
        """Not being torn down (destroy_node runs before the context shuts down, and may destroy a
        publisher under a tick whose thread did not end in time: not a fault of the node)."""
        return not self._tearing_down and self.context.ok()

    def _destroy_diag_timer(self) -> None:
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None

    def _release(self) -> None:
        """Back to unconfigured: no controller, no command publishers (a new configure makes them)."""
        with self._tick_lock, self.lock:
            self.controller = None
        self._destroy_diag_timer()
        for pub in (self._cmd_pub, self._fwd_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
        self._cmd_pub = self._fwd_pub = self._diag_pub = None

    # ------------------------------------------------------------------ control loop
    def _control_loop(self) -> None:
        """Ticks on absolute deadlines of the node's clock (ROS time: follows /clock with use_sim_time;
        trot.ros_nodes.schedule.DeadlineSchedule), in its own thread so that message callbacks cannot
        delay it. With control_trigger:=joint_states the input thread ticks, and this one ticks only
        while joint states stop (the watchdog acts)."""
        realtime.control_thread("trot_control", self.params.realtime_priority, self.get_logger())
        clock = self.control_clock()
        controller, generation = self.controller, self._loop_generation  # (cleanup may clear self.controller)
        if controller is None:
            return
        sim_time = self.get_parameter("use_sim_time").value
        schedule = DeadlineSchedule(
            period=round(controller.period * 1e9), jump=round(self.safety.clock_jump_s * 1e9),
            # (joint_states: the input thread warms up and busy-waits for the samples)
            lead=round(self._prewarm_s * 1e9) if not self.event_ticks else 0,
            spin=round(self._busy_wait_s * 1e9) if not self.event_ticks else 0,
            max_nap_s=0.001 if sim_time else 0.1,
        )  # fmt: skip
        # joint_states on the wall clock: wake half a period after the next tick is due, not on a grid
        # of its own, whose phase could fall on the samples' arrival and slow that tick (GIL and CPU
        # taken from the input thread)
        watch_event_ticks = self.event_ticks and not sim_time

        def now_ns() -> int:
            return clock.now().nanoseconds

        def active() -> bool:
            return self.active and self._loop_generation == generation

        schedule.start(now_ns())
        while active() and rclpy.ok():
            not_before = None
            if watch_event_ticks:
                due = self.events.last_tick + 1.5 * controller.period
                not_before = now_ns() + round((due - time.perf_counter()) * 1e9)
            schedule.advance(not_before)
            schedule.wait_for_deadline(now_ns, active, self.warm_up)
            now = now_ns()
            if (jumped := schedule.arrived(now)) is not None:
                with self.lock:
                    controller.clock_jumped(jumped * 1e-9, now * 1e-9)
                self.times.last_tick = None  # (a period across the jump is none of the loop's)
            if sim_time:  # /clock can outrun samples still in flight (a player catching up replays 0.1 s
                # in a few ms): while samples keep arriving, give them up to a period to land
                give_up = time.perf_counter() + controller.period
                while (active() and time.perf_counter() < give_up and not controller.fresh(self.now())
                       and time.perf_counter() - self._inputs.sample_arrival < 0.005):  # fmt: skip
                    time.sleep(0.0005)
            if not active():
                return
            if not self.event_ticks or time.perf_counter() - self.events.last_tick > 1.5 * controller.period:
                try:
                    self.tick()  # in joint_states mode only when the joint states stopped: the watchdog acts
                except Exception:
                    if self.serving():  # (not a teardown under us: SIGINT/SIGTERM)
                        self.fail("the control loop")
                    return
            self.overruns += schedule.skip_overrun(now_ns())  # (skipped, not burst)

    def tick(self, now_ns: int | None = None) -> None:
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
        self.times.ticked(now if self._periods_in_sim_time else time.perf_counter())
        with self.lock:
            if self._auto_start and self.controller.mode is Mode.PASSIVE and self._inputs.sources.problem() is None:
                ok, _ = self.controller.start(now)
                self._auto_start = not ok
            self._inputs.take_commands(self.controller, now)
            t0 = time.perf_counter()
            cmd = self.controller.tick(now)
            self.times.infer_s.append(time.perf_counter() - t0)
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

    def warm_up(self) -> None:
        """The next tick's path through the caches: the last joint state's decoding and checks, the
        policy step and the filters (PolicyController.warm_up), with nothing kept."""
        try:  # (either thread may run it: one that raised here would stop ticking or reading, unseen)
            joint_state = self._inputs.last_joint_state()
            with self._tick_lock, self.lock:
                if self.controller is not None:  # (cleanup may have released it since the wait began)
                    self.warm_ups += self.controller.warm_up(self._inputs.input_now(), joint_state)
        except Exception:
            if self.serving():
                self.fail("a cache warm-up")

    # ------------------------------------------------------------------ services
    def _service(self, action: str, response: Trigger.Response) -> Trigger.Response:
        if (controller := self.controller) is None:
            response.success, response.message = False, "not configured"
            return response
        if action == "start" and not self.active:  # nothing would tick: the stand-up would not run
            response.success, response.message = False, "not active: activate the node (lifecycle) first"
            return response
        if action == "start":  # one source per input (trot.ros_nodes.sources): the graph read now
            self._inputs.sources.refresh()
            if problem := self._inputs.sources.problem():
                response.success, response.message = False, f"refusing to start: more than one source: {problem}"
                return response
        with self._tick_lock, self.lock:  # (a tick in flight publishes first: none of its mode after the reply)
            response.success, response.message = getattr(controller, action)(self.now())
        return response

    # ------------------------------------------------------------------ diagnostics
    def timing(self, last: int = 1000) -> dict[str, float]:
        """Over the last ticks: loop rate, period jitter (|period - nominal|) p50/p99, longest period,
        inference p99, joint-state delivery and (joint_states mode) reaction p50/p99."""
        if (controller := self.controller) is None:  # (unconfigured)
            return {}
        return self.times.figures(controller.period, last)

    def _diagnostics(self) -> None:
        if (c := self.controller) is None:
            return
        now = self.now()
        msg = diagnostic_status(self.get_fully_qualified_name(), c, self.timing(last=100), now, self.overruns,
                                self.warm_ups, self._gc, self._inputs.sources.counts())  # fmt: skip
        msg.header.stamp = self.control_clock().now().to_msg()
        self._diag_pub.publish(msg)

    def destroy_node(self) -> None:
        """Stop the control loop (one damping command on the way out: SIGINT/SIGTERM must not leave
        the driver holding the last target at full stiffness) and the input thread before the
        publishers go away."""
        self._tearing_down = True
        try:
            self._stop_controlling("node shutdown requested")
        except Exception:  # (a context already shut down: nothing can be sent any more)
            traceback.print_exc()
        self.active = False
        if self._loop_thread is not None:
            self._loop_thread.join(timeout=1.0)
        self._inputs.close()
        self._gc.close()
        self._log.close()  # after every line queued before (the last tick's included)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    realtime_friendly_gil()
    return spin_node(PolicyNode, args)


if __name__ == "__main__":
    sys.exit(main())
