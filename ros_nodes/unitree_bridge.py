"""trot_unitree_bridge: a Unitree robot's low-level DDS interface as the topics the policy node speaks.

In (CycloneDDS, Unitree's SDK): ``rt/lowstate`` (``unitree_go`` ``LowState_``). Out (ROS 2):
``joint_states`` (sensor_msgs/JointState, by joint name: the robot config's ``unitree.motors`` says
which motor slot is which joint, so Unitree's motor order never reaches the policy) and ``imu``
(sensor_msgs/Imu), one of each per ``rt/lowstate`` whose CRC checks. In (ROS 2): ``joint_commands``
(sensor_msgs/JointState). Out (CycloneDDS): ``rt/lowcmd`` at ``rate`` (a Go2's 500 Hz), holding the
newest target (the writes phase-locked to come just after the targets arrive:
:mod:`trot.ros_nodes.write_phase`), with the policy contract's Kp/Kd (read from the artifact, by joint name), the
command's velocities and efforts as dq and tau (within the torque limits), positions clipped to the
joint ranges, unused motor slots in the SDK's stop mode, and the CRC the SDK computes.

Damping (kp 0, kd ``damping_kd``, no torque) is sent for a command without positions, for one the
bridge cannot map (a missing joint, lengths that differ, a non-finite number: refused, naming why),
before the first command, when commands stop for ``command_timeout_s``, and while a joint reads
beyond its range by more than ``joint_range_margin`` (then no joint state is forwarded either: a
wrong ``unitree.motors`` reads a thigh at a calf's angle), and while ``rt/lowstate``'s ticks are out
of order (:class:`~trot.ros_nodes.unitree_map.TickCheck`: a second writer, a restarted board; nothing
forwarded until 25 states in a row are in order, so the policy node's watchdog damps too).

Nothing is sent, and no joint state forwarded, until the robot's motion switcher says that no
built-in controller holds the robot: the bridge asks it every ``mode_check_period_s``, releases the
one it names (``release_sport_mode``) or refuses, naming it, and stops commanding whenever one holds
the robot again or the switcher does not answer.

The wireless remote (``remote``; :mod:`trot.ros_nodes.unitree_remote`): its sticks become
``cmd_vel`` at 50 Hz within the policy's command ranges while one is out of its dead zone (then one
zero), its button combinations calls of the policy node's ``~/start``, ``~/stop`` and ``~/estop``.
The e-stop also damps the bridge itself from its next ``rt/lowcmd`` until the policy node's own
damping command arrives (a lost service call cannot leave the robot driven).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import NamedTuple

import numpy as np
from geometry_msgs.msg import Twist
from rclpy.node import Node
from sensor_msgs.msg import Imu, JointState
from std_srvs.srv import Trigger
from unitree_sdk2py.comm.motion_switcher.motion_switcher_client import MotionSwitcherClient
from unitree_sdk2py.core.channel import ChannelFactoryInitialize, ChannelPublisher, ChannelSubscriber
from unitree_sdk2py.idl.unitree_go.msg.dds_ import LowCmd_, LowState_

from trot.ros_nodes import unitree_map as um
from trot.ros_nodes import unitree_remote as remote
from trot.ros_nodes.cdr import JointStateWriter
from trot.ros_nodes.params import declare, fail, realtime_friendly_gil, spin_node
from trot.ros_nodes.unitree_params import BridgeParams
from trot.ros_nodes.write_phase import WritePhase
from trot.sim.robot import load_robot
from trot.sim.world import joint_gains


class Target(NamedTuple):
    """The newest joint command, in the contract's joint order, swapped in whole by the executor's thread."""

    q: np.ndarray | None  # None: damping
    dq: np.ndarray
    tau: np.ndarray
    wall_s: float  # time.monotonic() at receipt


class UnitreeBridge(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("trot_unitree_bridge", **kwargs)
        self.params, unknown = declare(self, BridgeParams)
        if unknown:
            raise ValueError(f"unknown parameters {unknown} (check the parameter file)")
        if problems := self.params.problems():
            raise ValueError("; ".join(problems))
        p = self.params
        from trot.policies.artifact import read_artifact

        _, contract = read_artifact(p.policy_path)
        robot = load_robot(p.robot or contract.robot)
        if robot.name != contract.robot:
            raise ValueError(f"robot {robot.name!r} is not the one policy_path {p.policy_path!r} was trained on "
                             f"({contract.robot})")  # fmt: skip
        if 0 < p.command_timeout_s < 2 * contract.control_dt:
            raise ValueError(f"command_timeout_s is {p.command_timeout_s!r}: at least two of the policy's "
                             f"control periods ({2 * contract.control_dt:g} s), or the robot damps between its "
                             "commands")  # fmt: skip
        self.motors = um.MotorMap.of(robot, contract.joint_names)  # contract order
        self.kp, self.kd = joint_gains(robot, contract, contract.joint_names)
        self._lower, self._upper = np.array(contract.joint_pos_lower), np.array(contract.joint_pos_upper)
        self._limit = np.array(contract.torque_limits)
        n = len(contract.joint_names)
        self._zeros, self._damping_kd = np.zeros(n), np.full(n, p.damping_kd)
        self._write_joint_state = JointStateWriter(contract.joint_names)
        self._imu = Imu()
        self._imu.header.frame_id = "imu"
        self._name_cache: dict[tuple[str, ...], np.ndarray] = {}
        self._target: Target | None = None
        self._phase = WritePhase(1.0 / p.rate)  # the writes' phase: just after the targets arrive
        self._implausible = False  # a joint reads beyond its range: damping, nothing forwarded
        self._ticks = um.TickCheck()
        self._out_of_order = False  # rt/lowstate's ticks out of order: damping, nothing forwarded
        self._in_control = False  # the motion switcher names no built-in controller holding the robot
        self._refusal: str | None = None  # why not, as last logged
        self._stop = threading.Event()
        self._running = False  # (the loops', from the end of construction to destroy_node)
        self._mode: str | None = None  # what the writer sends: "pd" or why it damps
        self.states = self.bad_crc = self.commands = 0
        self._ranges = contract.command_ranges
        self._combinations = remote.Combinations()
        self._estopped = False  # the remote's e-stop: damping until the policy node's own damping command
        self._last_cmd_vel, self._sticks_out = -math.inf, False
        if p.remote:
            self.pub_cmd_vel = self.create_publisher(Twist, p.cmd_vel_topic, 10)
            self._policy_services = {a: self.create_client(Trigger, f"{p.policy_node}/{a}") for a in remote.ACTIONS}
        self.pub_js = self.create_publisher(JointState, p.joint_states_topic, 10)
        self.pub_imu = self.create_publisher(Imu, p.imu_topic, 10)
        self.create_subscription(JointState, p.joint_commands_topic, self._on_command, 10)
        ChannelFactoryInitialize(p.dds_domain, p.network_interface)
        self._cmd = um.stop_command()
        self._lowcmd = ChannelPublisher(um.LOWCMD_TOPIC, LowCmd_)
        self._lowcmd.Init()
        self._lowstate = ChannelSubscriber(um.LOWSTATE_TOPIC, LowState_)
        self._lowstate.Init(self._on_lowstate, 0)
        self.get_logger().info(f"{robot.name} on {p.network_interface!r}, DDS domain {p.dds_domain}: rt/lowcmd at "
                               f"{p.rate:g} Hz with the contract's gains, damping after {p.command_timeout_s} s "
                               "without a joint command")  # fmt: skip
        self._running = True
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._supervisor.start()

    # ------------------------------------------------------------------ who holds the robot
    def _supervise(self) -> None:
        """Ask the motion switcher which built-in controller holds the robot, every mode_check_period_s."""
        client = MotionSwitcherClient()
        client.SetTimeout(3.0)
        client.Init()
        while not self._stop.is_set():
            try:
                released = self._check_mode(client)
            except Exception as exc:  # (the SDK's RPC raising: as good as no answer)
                released = self._refuse_control(f"asking the motion switcher failed: {exc!r}")
            self._stop.wait(1.0 if released else self.params.mode_check_period_s)

    def _check_mode(self, client: MotionSwitcherClient) -> bool:
        """One ask (and release); returns whether a release was requested (ask again soon)."""
        code, result = client.CheckMode()
        if code != 0 or not isinstance(result, dict):
            p = self.params
            self._refuse_control(f"the robot's motion switcher did not answer (code {code}): is the robot on "
                                 f"{p.network_interface!r}, DDS domain {p.dds_domain}?")  # fmt: skip
            return False
        holder = str(result.get("name", ""))
        if not holder:
            if not self._in_control:
                self.get_logger().info("no built-in controller holds the robot: rt/lowcmd from here on")
                self._in_control, self._refusal = True, None
            return False
        if self.params.release_sport_mode:
            self._refuse_control(f"the robot's built-in controller {holder!r} holds it: releasing it (motion "
                                 "switcher)", error=False)  # fmt: skip
            client.ReleaseMode()
            return True
        self._refuse_control(f"the robot's built-in controller {holder!r} holds it and release_sport_mode is false: "
                             "release it (Unitree's app) to command")  # fmt: skip
        return False

    def _refuse_control(self, why: str, error: bool = True) -> bool:
        """Stop commanding (nothing sent, nothing forwarded), logging ``why`` when it is news."""
        self._in_control = False
        if why != self._refusal:
            if error:  # (rclpy: one severity per call site)
                self.get_logger().error(f"not commanding: {why}")
            else:
                self.get_logger().info(f"not commanding: {why}")
            self._refusal = why
        return False

    # ------------------------------------------------------------------ rt/lowstate -> joint_states, imu
    def _on_lowstate(self, state: LowState_) -> None:
        if not (self._in_control and self._running):  # (no policy is to start on a robot the bridge cannot
            return  # command; nothing is published while the node is destroyed)
        if not um.crc_ok(state):
            self.bad_crc += 1
            if self.bad_crc == 1:
                self.get_logger().warn("rt/lowstate: a state with a bad CRC, dropped (each one is; counted, "
                                       "logged once)")  # fmt: skip
            return
        if (why := self._ticks.check(int(state.tick))) is not None:
            if not self._out_of_order:
                self.get_logger().error(f"rt/lowstate out of order ({why}): a second writer on rt/lowstate, a "
                                        "restarted board or a corrupted state; damping, no joint states forwarded "
                                        f"until {self._ticks.settle} states in a row are in order")  # fmt: skip
            self._out_of_order = True
            return
        if self._out_of_order:
            self.get_logger().info(f"rt/lowstate in order again ({self._ticks.settle} states in a row): joint states "
                                   "forwarded")  # fmt: skip
            self._out_of_order = False
        q, dq, tau = self.motors.read(state)
        bad = um.out_of_range(q, self._lower, self._upper, self.params.joint_range_margin)
        if bad.size:
            if not self._implausible:
                readings = ", ".join(f"{self.motors.slot_label(i)} reads {q[i]:.2f} rad, range "
                                     f"[{self._lower[i]:.2f}, {self._upper[i]:.2f}]" for i in bad)  # fmt: skip
                self.get_logger().error(f"joints beyond their ranges: {readings}; damping, no joint states "
                                        "forwarded (check the robot config's unitree.motors)")  # fmt: skip
            self._implausible = True
            return
        if self._implausible:
            self.get_logger().info("every joint within its range again: joint states forwarded")
            self._implausible = False
        stamp = self.get_clock().now().to_msg()
        self.pub_js.publish(self._write_joint_state(stamp.sec, stamp.nanosec, q, dq, tau))
        imu, s = self._imu, state.imu_state
        imu.header.stamp = stamp
        o, w, a = imu.orientation, imu.angular_velocity, imu.linear_acceleration
        o.w, o.x, o.y, o.z = (float(v) for v in s.quaternion)
        w.x, w.y, w.z = (float(v) for v in s.gyroscope)
        a.x, a.y, a.z = (float(v) for v in s.accelerometer)
        self.pub_imu.publish(imu)
        self.states += 1
        if self.params.remote:
            self._on_remote(remote.decode(state.wireless_remote))

    def _on_remote(self, r: remote.Remote) -> None:
        for action in self._combinations.pressed(r):
            if action == "estop":
                self._estopped = True  # (before the call: damping from the next rt/lowcmd)
            service = self._policy_services[action]
            missing = "" if service.service_is_ready() else f" ({service.srv_name} not available yet)"
            if action == "estop":  # (rclpy: one severity per call site)
                self.get_logger().warn(f"remote: estop{missing}")
            else:
                self.get_logger().info(f"remote: {action}{missing}")
            service.call_async(Trigger.Request())
        # cmd_vel while a stick is out of its dead zone, at 50 Hz (each rt/lowstate would be 500), and one
        # zero as they all come back: an idle remote sends nothing
        now = time.monotonic()
        command = remote.velocity(r, self._ranges, self.params.remote_dead_zone)
        out = any(command)
        if (out and now - self._last_cmd_vel >= 0.02) or (not out and self._sticks_out):
            self._last_cmd_vel, self._sticks_out = now, out
            twist = Twist()
            twist.linear.x, twist.linear.y, twist.angular.z = command
            self.pub_cmd_vel.publish(twist)

    # ------------------------------------------------------------------ joint_commands -> rt/lowcmd
    def _refuse(self, why: str) -> None:
        self.get_logger().warn(f"joint command refused, damping: {why}", throttle_duration_sec=1.0)
        self._target = Target(None, self._zeros, self._zeros, time.monotonic())

    def _on_command(self, msg: JointState) -> None:
        self.commands += 1
        key = tuple(msg.name)
        order = self._name_cache.get(key)
        if order is None:
            position = {n: i for i, n in enumerate(msg.name)}
            if missing := [n for n in self.motors.joint_names if n not in position]:
                return self._refuse(f"no entry for joints {missing}")
            order = self._name_cache[key] = np.array([position[n] for n in self.motors.joint_names], dtype=np.intp)
        arrays = []
        for what, values in (("position", msg.position), ("velocity", msg.velocity), ("effort", msg.effort)):
            if len(values) == 0:  # (optional, as in sensor_msgs/JointState)
                arrays.append(None)
                continue
            if len(values) != len(msg.name):
                return self._refuse(f"{what} and name lengths differ")
            values = np.asarray(values, dtype=np.float64)[order]
            if not np.isfinite(values).all():
                return self._refuse(f"non-finite {what}")
            arrays.append(values)
        q, dq, tau = arrays
        if q is None:  # damping (the policy node's DAMPING and PASSIVE)
            self._target = Target(None, self._zeros, self._zeros, time.monotonic())
            if self._estopped:
                self._estopped = False
                self.get_logger().info("the policy node damps: the remote's e-stop handed over to it")
            return
        q = np.clip(q, self._lower, self._upper)
        tau = self._zeros if tau is None else np.clip(tau, -self._limit, self._limit)
        self._target = Target(q, self._zeros if dq is None else dq, tau, time.monotonic())
        self._phase.arrived(time.perf_counter())

    def _loop(self) -> None:
        try:
            deadline = time.perf_counter()
            while self._running:
                if self._in_control:
                    self._write()
                deadline = self._phase.next_deadline(deadline)  # absolute deadlines: no drift
                delay = deadline - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -0.1:  # far behind (machine overloaded): do not try to catch up
                    deadline = time.perf_counter()
        except Exception:
            if self._running and self.context.ok():
                fail(self, "the rt/lowcmd loop")

    def _why_damping(self, target: Target | None) -> str | None:
        if self._estopped:
            return "the remote's e-stop"
        if self._implausible:
            return "joints beyond their ranges"
        if self._out_of_order:
            return "rt/lowstate out of order"
        if target is None:
            return "no joint command yet"
        if time.monotonic() - target.wall_s > self.params.command_timeout_s:
            return f"no joint command for {self.params.command_timeout_s} s"
        return "a damping command" if target.q is None else None

    def _write(self, why: str | None = None) -> None:
        """One rt/lowcmd: the newest target's PD, or damping (``why`` forces it)."""
        target = self._target  # (one read: the executor may swap in the next one meanwhile)
        why = why or self._why_damping(target)
        if why is None:
            self.motors.write_command(self._cmd, target.q, self.kp, self.kd, target.dq, target.tau)
        else:
            self.motors.write_command(self._cmd, None, self._zeros, self._damping_kd, self._zeros, self._zeros)
        mode = why or "pd"
        if mode != self._mode:
            if why is None:
                self.get_logger().info("rt/lowcmd: PD on the joint commands' targets")
            elif why.startswith("no joint command for"):
                self.get_logger().warn(f"rt/lowcmd: damping: {why}")
            else:
                self.get_logger().info(f"rt/lowcmd: damping: {why}")
            self._mode = mode
        self._cmd.crc = um.crc(self._cmd)
        self._lowcmd.Write(self._cmd)

    def destroy_node(self) -> None:
        """Stop the loop; damping is the last rt/lowcmd (until the robot's own timeout takes over)."""
        if self._running:
            self._running = False
            self._stop.set()
            self._thread.join(timeout=2.0)
            if self._in_control:
                self._write("the bridge stops")
                time.sleep(0.05)  # (a reliable writer destroyed right after a write can lose it)
            self.get_logger().info(f"{self.states} rt/lowstate forwarded, {self.bad_crc} with a bad CRC dropped, "
                                   f"{self._ticks.out_of_order} out of order")  # fmt: skip
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    realtime_friendly_gil()  # the rt/lowcmd writer beside the 500 Hz rt/lowstate handler
    return spin_node(UnitreeBridge, args)


if __name__ == "__main__":
    sys.exit(main())
