"""The policy node's input: joint states, IMU and (with use_sim_time) /clock served by a thread of
its own from one hand-built wait set, and /cmd_vel as a mailbox each tick empties.

Sensor input goes through a minimal companion node served from one wait set, not an executor:
rclpy's executor rebuilds its wait set over every entity and runs a task machinery per message,
and the lifecycle node alone has ~20 entities (lifecycle, parameter and start/stop/estop
services); each would add to every joint_states -> joint_commands round trip. Topic names are
resolved (namespace, remappings) by the policy node; the companion takes no command-line
arguments, or a launch file's ``-r __node:=...`` would rename it too.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

import numpy as np
import rclpy
from geometry_msgs.msg import Twist
from rclpy._rclpy_pybind11 import InvalidHandle
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import LifecycleNode
from rclpy.time import Time
from sensor_msgs.msg import Imu, JointState

from trot.policies.controller import PolicyController
from trot.policies.inputs import Fault
from trot.ros_nodes import realtime
from trot.ros_nodes.cdr import CdrError, JointStateReader, read_imu
from trot.ros_nodes.sources import InputSources


class PolicyInputs:
    """The companion nodes and the input thread of ``node`` (a trot.ros_nodes.policy_node.PolicyNode,
    not imported: it imports this); the samples go to its controller, and with
    control_trigger:=joint_states a fresh joint state runs the tick it is due for."""

    def __init__(self, node: LifecycleNode) -> None:
        self._node = node
        p = node.params
        self.io = rclpy.create_node(
            f"{node.get_name()}_io", namespace=node.get_namespace(), context=node.context,
            use_global_arguments=False, start_parameter_services=False, enable_rosout=False,
            parameter_overrides=[node.get_parameter("use_sim_time")],
        )  # fmt: skip
        topic = node.resolve_topic_name
        # serialized (raw) messages, read by trot.ros_nodes.cdr: see there why
        self._read_joint_state = JointStateReader()
        self._warm_reader = JointStateReader()  # warm-ups decode the last joint state again (any thread)
        self._last_joint_state: bytes | None = None
        self.seen_joint_names: tuple[str, ...] | None = None  # the robot's, from its last joint state
        self._js_sub = self.io.create_subscription(
            JointState, topic(p.joint_states_topic), self._on_joint_state, 10, raw=True
        )
        self.io.create_subscription(Imu, topic(p.imu_topic), self._on_imu, 10, raw=True)
        # /cmd_vel is a mailbox the control loop reads once per tick (at most the queue's 10
        # messages), on a node no executor waits on: a flood (a runaway teleop node at 40 kHz) is
        # overwritten inside DDS instead of starving the sensor callbacks, and is detected by the
        # publication rate of what each tick takes (SafetyConfig.max_cmd_rate_hz).
        self._cmd_mailbox = rclpy.create_node(
            f"{node.get_name()}_cmd", namespace=node.get_namespace(), context=node.context,
            use_global_arguments=False, start_parameter_services=False, enable_rosout=False,
        )  # fmt: skip
        self._cmd_sub = self._cmd_mailbox.create_subscription(Twist, topic(p.cmd_vel_topic), lambda msg: None, 10)
        self._wake = self.io.create_guard_condition(lambda: None)  # ends the input thread's wait
        # one source per input (trot.ros_nodes.sources): the sequence numbers of what the threads take,
        # the graph polled by the input thread
        self.sources = InputSources(self.io, {
            "joint_states": topic(p.joint_states_topic), "imu": topic(p.imu_topic), "cmd_vel": topic(p.cmd_vel_topic),
        }, accepted={"cmd_vel": p.cmd_vel_sources})  # fmt: skip
        self.pending_clock_ns: int | None = None  # see _serve
        self.sample_arrival = 0.0  # perf_counter of the last joint state or IMU message
        self._serving = True
        self._thread = threading.Thread(target=self._serve, name="trot_policy_io", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """The input thread ended (within a second) and the companion nodes destroyed."""
        self._serving = False
        self._wake.trigger()
        self._thread.join(timeout=1.0)
        self.io.destroy_node()
        self._cmd_mailbox.destroy_node()

    def input_now(self) -> float:
        """The time a sample is judged against (input thread): with use_sim_time, the newest /clock
        taken after the sample, even before the control clock shows it (see _serve)."""
        return self.pending_clock_ns * 1e-9 if self.pending_clock_ns is not None else self._node.now()

    def last_joint_state(self) -> tuple:
        """The last joint state received, decoded again: (names, positions, velocities), or ()."""
        if (data := self._last_joint_state) is None:
            return ()
        msg = self._warm_reader(data)  # (it decoded once already)
        velocity = msg.velocity if len(msg.velocity) else np.zeros(len(msg.names))
        return msg.names, msg.position, velocity

    def take_commands(self, controller: PolicyController, now: float) -> None:
        """Every /cmd_vel waiting in the mailbox (each is checked; the newest stays), received ``now``;
        their publication instants go to the flood detection, their sequence numbers to the check
        for a second source (the controller's lock held)."""
        published: list[float] = []
        while len(published) < 16:
            with self._cmd_sub.handle:
                taken = self._cmd_sub.handle.take_message(Twist, False)
            if taken is None:
                break
            msg, info = taken
            published.append(info["source_timestamp"] * 1e-9)
            if self.sources.message("cmd_vel", info, time.perf_counter()):
                self.sources.refresh("cmd_vel")
                self.sources.judge(controller, now)
            controller.set_command(msg.linear.x, msg.linear.y, msg.angular.z, now)
        controller.commands_received(published, now)

    def judge_sources(self) -> None:
        """The input thread: act on a change in what the sources show (InputSources.judge)."""
        node, sources = self._node, self.sources
        if (controller := node.controller) is not None and sources.problem() != sources.judged:
            with node.lock:
                sources.judge(controller, self.input_now())

    def _on_joint_state(self, data: bytes) -> None:
        node, events = self._node, self._node.events
        self.sample_arrival = time.perf_counter()
        events.sample_arrived(self.sample_arrival)
        try:
            msg = self._read_joint_state(data)
        except CdrError as exc:
            if (controller := node.controller) is not None:
                with node.lock:
                    controller.reject(Fault.JOINT_STATE_UNDECODABLE, f"joint state: {exc}", self.input_now())
            return
        self.seen_joint_names = msg.names
        self._last_joint_state = data
        if (controller := node.controller) is None:  # (one read: cleanup may clear it meanwhile)
            return
        now = self.input_now()
        stamp = msg.stamp or now  # an unstamped message counts as received now
        velocity = msg.velocity if len(msg.velocity) else np.zeros(len(msg.names))
        with node.lock:
            fresh = controller.set_joint_state(msg.names, msg.position, velocity, stamp, now)
        # joint_states mode: tick on the first sample from a quarter period before each tick is due,
        # ticks due a control period apart (trot.ros_nodes.schedule.next_event_tick: a driver at the
        # control rate ticks every sample, also after a stall; a faster one is decimated to the
        # control rate on average)
        if node.event_ticks and fresh and node.active and events.ticks(time.perf_counter()):
            try:
                node.tick(self.pending_clock_ns)
            except Exception:
                if node.serving():  # (not a teardown under us, as in the control loop)
                    node.fail("a control tick on a joint state")
                return
            if received := node.times.js_received_ns:
                node.times.reaction_s.append((time.time_ns() - received) * 1e-9)

    def _on_imu(self, data: bytes) -> None:
        node = self._node
        self.sample_arrival = time.perf_counter()
        node.events.sample_arrived(self.sample_arrival)
        if (controller := node.controller) is None:
            return
        now = self.input_now()
        try:
            msg = read_imu(data)
        except CdrError as exc:
            with node.lock:
                controller.reject(Fault.IMU_UNDECODABLE, f"IMU: {exc}", now)
            return
        with node.lock:
            controller.set_imu(msg.quat_wxyz, msg.angular_velocity, msg.stamp or now, now,
                               has_orientation=msg.orientation_covariance0 != -1.0)  # fmt: skip

    def _samples_expected(self) -> float | None:
        """joint_states mode, while active and configured: when the next tick's samples are expected
        (perf_counter; SampleSchedule.expected), else None."""
        node = self._node
        if not node.event_ticks or not node.active or node.controller is None:
            return None
        return node.events.expected()

    def _serve(self) -> None:
        """The input thread: wait on the companion node's subscriptions (joint states, IMU and, with
        use_sim_time, /clock) and run each message's callback as it arrives."""
        node, events, times = self._node, self._node.events, self._node.times
        if node.event_ticks:  # the input thread runs the ticks: it is the control thread too
            realtime.control_thread("trot_policy_io", node.params.realtime_priority, node.get_logger())
        else:
            realtime.name_this_thread("trot_policy_io")
        # With use_sim_time, /clock is a subscription of this node (its time source's). A player
        # catching up publishes bursts of /clock + samples: each sample is judged against the newest
        # /clock taken after it (one read at wake-up would make later samples look stamped in the
        # future: DAMPING), and the control clock moves only once the samples that came with that
        # time are in (a tick in between would find them stale: watchdog).
        clock_sub = next((sub for sub in self.io.subscriptions if sub.topic_name == "/clock"), None)
        # joint states last: when an IMU sample arrived with them, the tick they trigger uses it
        inputs = [sub for sub in self.io.subscriptions if sub is not clock_sub]
        inputs.sort(key=lambda sub: sub is self._js_sub)
        labels = {sub: "joint_states" if sub is self._js_sub else "imu" for sub in inputs}
        sources = self.sources
        subscriptions = [*inputs, *([clock_sub] if clock_sub else [])]
        newest_clock = None

        def take_clock() -> None:
            nonlocal newest_clock
            while clock_sub is not None and (taken := clock_sub.handle.take_message(clock_sub.msg_type, clock_sub.raw)):
                newest_clock = taken[0]
                self.pending_clock_ns = Time.from_msg(newest_clock.clock).nanoseconds

        def serve_all() -> int:
            nonlocal newest_clock
            give_up = time.perf_counter() + 0.02  # until nothing is left (a burst goes on arriving), within bounds
            total = 0
            while time.perf_counter() < give_up:
                served = 0
                for sub in inputs:
                    while self._serving and (taken := sub.handle.take_message(sub.msg_type, sub.raw)):
                        take_clock()
                        if sub is self._js_sub and (received := taken[1]["received_timestamp"]):
                            times.js_received_ns = received  # 0: an RMW without reception stamps
                            times.delivery_s.append((received - taken[1]["source_timestamp"]) * 1e-9)
                        if sources.message(labels[sub], taken[1], time.perf_counter()):
                            sources.refresh(labels[sub])  # (a second source: judged before its sample counts)
                            self.judge_sources()
                        sub.callback(taken[0])
                        served += 1
                total += served
                if not served:
                    break
            take_clock()
            if newest_clock is not None:
                clock_sub.callback(newest_clock)  # the control clock shows it now
                newest_clock = self.pending_clock_ns = None
            return total

        wait_set = _rclpy.WaitSet(len(subscriptions), 1, 0, 0, 0, 0, node.context.handle)
        with contextlib.ExitStack() as handles, contextlib.suppress(InvalidHandle):  # InvalidHandle: shutting down
            for entity in (*subscriptions, self._wake):
                handles.enter_context(entity.handle)
            while self._serving and node.context.ok():
                wait_set.clear_entities()
                for sub in subscriptions:
                    wait_set.add_subscription(sub.handle)
                wait_set.add_guard_condition(self._wake.handle)
                expected = self._samples_expected()  # (once per wake-up: in a busy-wait this loop is the poll)
                warm_at, (spin_from, spin_until) = events.warm_up_at(expected), events.busy_wait_window(expected)
                now = time.perf_counter()
                poll_due = sources.poll(now)  # (a few microseconds: the graph's publisher counts)
                self.judge_sources()
                timeout = min(0.2, max(0.0, poll_due - now))  # 0.2 s: also a bound on noticing a context shut down
                if warm_at is not None:
                    timeout = min(timeout, max(0.0, warm_at - now))
                if spin_from is not None and now < spin_until:  # busy_wait_s: from spin_from on, poll:
                    timeout = min(timeout, max(0.0, spin_from - now))  # the CPU stays awake for the samples
                    if timeout == 0.0:  # and this thread lets the receive thread that brings them run
                        os.sched_yield()
                wait_set.wait(int(timeout * 1e9))
                if not serve_all() and warm_at is not None and time.perf_counter() >= warm_at:
                    events.warmed()
                    node.warm_up()
