"""A simulated Go2 motor board: the MuJoCo robot behind Unitree's low-level DDS interface.

The world is trot's one world builder (:mod:`trot.sim.world`, as the robot node's), stepped at the
board's rate (500 Hz, a Go2's ``rt/lowstate`` rate). Each step it publishes ``rt/lowstate``
(``unitree_go`` ``LowState_``): motor q, dq and tau_est in the robot config's motor slots
(``unitree.motors``, by joint name), the IMU quaternion, gyro, accelerometer and rpy, the foot
contact forces (N, ``unitree.feet`` order), a millisecond tick, and the CRC. It serves the motion
switcher a Go2 runs (``CheckMode``, ``ReleaseMode``, ``SelectMode``): while a built-in controller
holds the robot (``sport_mode``, "normal" at start as a Go2 boots) the board keeps the standing pose
on its own and ignores ``rt/lowcmd``. Released, it consumes ``rt/lowcmd`` as the motor board does: a
command whose CRC does not match is dropped (counted, logged once); each motor gets
tau = kp (q* - q) + kd (dq* - dq) + tau_ff within its torque limit, a stop position or velocity
switching that loop off; with no valid command for ``command_timeout_s`` (or none yet) every motor is
damped (kd ``damping_kd``). The base's true state goes out on ROS as
``odom`` (nav_msgs/Odometry) for tests and plots; a real Go2 has none. The wireless remote's 40
bytes in ``rt/lowstate`` are what it was last told on ``~/wireless_remote`` (std_msgs/UInt8MultiArray;
:func:`trot.ros_nodes.unitree_remote.encode` makes them). Sensor faults for tests come in on
``~/fault`` (std_msgs/String, JSON; :meth:`UnitreeBoard.fault`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time

# isort: off
from trot.sim.gl import choose_offscreen_gl

choose_offscreen_gl()  # before mujoco's first import, which reads MUJOCO_GL (see trot.sim.gl)
import mujoco

# isort: on
import numpy as np
from nav_msgs.msg import Odometry
from rclpy.node import Node
from std_msgs.msg import String, UInt8MultiArray
from unitree_sdk2py.comm.motion_switcher import motion_switcher_api as msw
from unitree_sdk2py.core.channel import ChannelFactoryInitialize, ChannelPublisher, ChannelSubscriber
from unitree_sdk2py.idl.unitree_go.msg.dds_ import LowCmd_, LowState_
from unitree_sdk2py.rpc.server import Server

from trot.ros_nodes import unitree_map as um
from trot.ros_nodes.params import declare, fail, realtime_friendly_gil, spin_node
from trot.ros_nodes.unitree_params import BoardParams
from trot.sim.robot import load_robot
from trot.sim.world import compile_model, home_qpos, joint_gains, set_joint_gains


class MotionSwitcher(Server):
    """The motion switcher service of a Go2, served by the simulated board: which built-in controller
    holds the robot (``{"name": ...}``, "" when released), release it, select one."""

    def __init__(self, board: UnitreeBoard) -> None:
        super().__init__(msw.MOTION_SWITCHER_SERVICE_NAME)
        self._board = board

    def Init(self) -> None:  # (the SDK's names)
        self._SetApiVersion(msw.MOTION_SWITCHER_API_VERSION)
        self._RegistHandler(msw.MOTION_SWITCHER_API_ID_CHECK_MODE, self._check, False)
        self._RegistHandler(msw.MOTION_SWITCHER_API_ID_RELEASE_MODE, self._release, False)
        self._RegistHandler(msw.MOTION_SWITCHER_API_ID_SELECT_MODE, self._select, False)

    def _check(self, parameter: str) -> tuple[int, str]:
        return 0, json.dumps({"form": "0", "name": self._board.mode})

    def _release(self, parameter: str) -> tuple[int, str]:
        self._board.set_mode("")
        return 0, ""

    def _select(self, parameter: str) -> tuple[int, str]:
        self._board.set_mode(str(json.loads(parameter or "{}").get("name", "")))
        return 0, ""


class UnitreeBoard(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("trot_unitree_board", **kwargs)
        self.params, unknown = declare(self, BoardParams)
        if unknown:
            raise ValueError(f"unknown parameters {unknown} (check the parameter file)")
        if problems := self.params.problems():
            raise ValueError("; ".join(problems))
        p = self.params
        robot = load_robot(p.robot)
        # the board's rate is its physics step: each rt/lowstate a new state, as a Go2's
        self.robot = dataclasses.replace(robot, sim=dataclasses.replace(robot.sim, timestep=1.0 / p.rate))
        self.motors = um.MotorMap.of(self.robot)  # robot joint order
        self.model, self.index = compile_model(self.robot)
        self.data = mujoco.MjData(self.model)
        n = len(self.robot.joint_names)
        set_joint_gains(self.model, self.index, np.zeros(n), np.zeros(n))  # the board's torque does it all
        self.data.qpos[:] = home_qpos(self.model, self.index, self.robot)
        mujoco.mj_forward(self.model, self.data)
        self._limit = np.array([j.torque_limit for j in self.robot.joints.values()])
        body = {mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_BODY, i): i for i in range(self.model.nbody)}
        self._feet = np.array([body[f] for f in self.motors.feet], dtype=np.intp)
        # the newest valid command, swapped in whole by the DDS listener thread: ([5, J] q, dq, kp, kd, tau; receipt)
        self._command: tuple[np.ndarray, float] | None = None
        self.bad_crc = 0
        self.received = 0
        self._damped: bool | None = None
        self.mode = p.sport_mode  # the built-in controller holding the robot ("": released)
        self._stand = np.array([j.default for j in self.robot.joints.values()])
        self._stand_gains = joint_gains(self.robot)  # (the built-in controller's: the robot config's)
        self._state = um.new_state()
        self._state.head = [0xFE, 0xEF]
        self._state.level_flag = um.LOW_LEVEL
        self._odom = Odometry()
        self._odom.header.frame_id, self._odom.child_frame_id = "odom", "base"
        self.pub_odom = self.create_publisher(Odometry, p.odom_topic, 10)
        self._remote = [0] * 40  # the wireless remote's bytes, as told on ~/wireless_remote
        self.create_subscription(UInt8MultiArray, "~/wireless_remote", self._on_remote, 10)
        self._fault: tuple[dict, float] | None = None  # (what, until time.monotonic())
        self._tick_offset = 0
        self.create_subscription(String, "~/fault", self.fault, 10)
        ChannelFactoryInitialize(p.dds_domain, p.network_interface)
        self._lowstate = ChannelPublisher(um.LOWSTATE_TOPIC, LowState_)
        self._lowstate.Init()
        self._lowcmd = ChannelSubscriber(um.LOWCMD_TOPIC, LowCmd_)
        self._lowcmd.Init(self._on_lowcmd, 0)
        self._switcher = MotionSwitcher(self)
        self._switcher.Init()
        self._switcher.Start()
        held = self.mode or "no built-in controller"
        self.get_logger().info(f"{self.robot.name} motor board on {p.network_interface!r}, DDS domain "
                               f"{p.dds_domain}: rt/lowstate at {p.rate:g} Hz, damping without rt/lowcmd "
                               f"for {p.command_timeout_s} s; held by {held}")  # fmt: skip
        self._running = True
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _on_remote(self, msg: UInt8MultiArray) -> None:
        if len(msg.data) != len(self._remote):
            self.get_logger().warn(f"~/wireless_remote: {len(msg.data)} bytes, not {len(self._remote)}: ignored")
            return
        self._remote = list(msg.data)

    def fault(self, msg: String) -> None:
        """A sensor fault in the rt/lowstate messages of the next ``seconds`` (JSON; NaN allowed):
        ``{"seconds": 0.3, "motor": 2, "q": NaN}`` (a motor slot's position), ``{"seconds": 0.3,
        "quaternion": [...]}``, ``{"seconds": 0.3, "gyroscope": [...]}``, or ``{"tick_offset": -100000}``
        (added to every tick from now on: the counter of a board that restarted, or jumped)."""
        try:
            what = json.loads(msg.data)
            if "tick_offset" in what:
                self._tick_offset += int(what["tick_offset"])
            else:
                self._fault = (what, time.monotonic() + float(what["seconds"]))
            self.get_logger().warn(f"~/fault: {msg.data}")
        except (ValueError, KeyError, TypeError) as exc:
            self.get_logger().error(f"~/fault: {msg.data!r} ignored: {exc!r}")

    def _apply_fault(self, s: LowState_) -> None:
        what, until = self._fault
        if time.monotonic() > until:
            self._fault = None
            return
        if "motor" in what:
            s.motor_state[int(what["motor"])].q = float(what["q"])
        for key in ("quaternion", "gyroscope"):
            if key in what:
                setattr(s.imu_state, key, [float(v) for v in what[key]])

    # ------------------------------------------------------------------ rt/lowcmd
    def _on_lowcmd(self, cmd: LowCmd_) -> None:
        if not um.crc_ok(cmd):
            self.bad_crc += 1
            if self.bad_crc == 1:
                self.get_logger().warn("rt/lowcmd: a command with a bad CRC, dropped (each one is; counted, "
                                       "logged once)")  # fmt: skip
            return
        values = self.motors.read_command(cmd)
        if not np.isfinite(values).all():  # (a board cannot apply NaN; the last valid command stands)
            return
        self.received += 1
        self._command = (values, time.monotonic())

    def set_mode(self, name: str) -> None:
        """The motion switcher's request: ``name`` holds the robot from now ("": released)."""
        if name != self.mode:
            then = "" if name else ": rt/lowcmd drives the motors"
            self.get_logger().info(f"motion switcher: {name or 'no built-in controller'} holds the robot (was "
                                   f"{self.mode or 'none'}){then}")  # fmt: skip
            self._command, self._damped = None, None  # (commands from before do not count)
            self.mode = name

    # ------------------------------------------------------------------ physics
    def _torque(self) -> np.ndarray:
        """The motors' torque now: the built-in controller's standing pose while it holds the robot,
        else the newest command's PD, or damping when there is none fresh."""
        d, idx = self.data, self.index
        q, dq = d.qpos[idx.qpos_adr], d.qvel[idx.qvel_adr]
        if self.mode:
            kp, kd = self._stand_gains
            return np.clip(kp * (self._stand - q) - kd * dq, -self._limit, self._limit)
        command = self._command  # (one read: the listener may swap in the next one meanwhile)
        damped = command is None or time.monotonic() - command[1] > self.params.command_timeout_s
        if damped != self._damped:
            if damped and self._damped is not None:
                self.get_logger().warn(f"no valid rt/lowcmd for {self.params.command_timeout_s} s: motors damped")
            elif not damped:
                self.get_logger().info("rt/lowcmd: motors follow it")
            self._damped = damped
        if damped:
            return np.clip(-self.params.damping_kd * dq, -self._limit, self._limit)
        q_t, dq_t, kp, kd, tau = command[0]
        return np.clip(kp * (q_t - q) + kd * (dq_t - dq) + tau, -self._limit, self._limit)

    def _loop(self) -> None:
        try:
            self._step_forever()
        except Exception:
            if self._running and self.context.ok():
                fail(self, "the board's physics loop")

    def _step_forever(self) -> None:
        dt = self.model.opt.timestep
        odom_every = max(1, round(1.0 / (self.params.odom_rate * dt)))
        rtf = self.params.real_time_factor
        deadline, step = time.perf_counter(), 0
        feet = [0] * len(self._feet)
        while self._running:
            # one instant: the state, the sensors and the torque the motors apply in it, published as
            # a board publishes what it measured; then the step integrates under that torque
            mujoco.mj_step1(self.model, self.data)
            tau = self._torque()
            self.data.qfrc_applied[self.index.dof_adr] = tau
            self._publish_state(tau, feet)
            mujoco.mj_step2(self.model, self.data)
            feet = self._foot_forces()  # (solved in step2: published with the next state)
            step += 1
            if step % odom_every == 0:
                self._publish_odom()
            if rtf > 0:
                deadline += dt / rtf
                delay = deadline - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -0.1:  # far behind (machine overloaded): do not try to catch up
                    deadline = time.perf_counter()

    def _foot_forces(self) -> list[int]:
        """Each foot's ground contact normal force, N (Unitree's foot_force order)."""
        m, d = self.model, self.data
        force, wrench = np.zeros(len(self._feet)), np.zeros(6)
        bodies = m.geom_bodyid
        for i in range(d.ncon):
            contact = d.contact[i]
            hit = np.flatnonzero((self._feet == bodies[contact.geom1]) | (self._feet == bodies[contact.geom2]))
            if hit.size:
                mujoco.mj_contactForce(m, d, i, wrench)
                force[hit[0]] += wrench[0]
        return [int(min(f, 32767)) for f in force]

    def _publish_state(self, tau: np.ndarray, feet: list[int]) -> None:
        d, idx, s = self.data, self.index, self._state
        self.motors.write_state(s, d.qpos[idx.qpos_adr], d.qvel[idx.qvel_adr], tau)
        quat = [float(v) for v in d.sensordata[idx.orientation]]
        imu = s.imu_state
        imu.quaternion = quat
        imu.gyroscope = [float(v) for v in d.sensordata[idx.gyro]]
        imu.accelerometer = [float(v) for v in d.sensordata[idx.accelerometer]]
        imu.rpy = list(um.rpy(quat))
        s.foot_force = feet
        s.wireless_remote = self._remote
        s.tick = (round(d.time * 1000) + self._tick_offset) & 0xFFFFFFFF
        if self._fault is not None:
            self._apply_fault(s)
        s.crc = um.crc(s)
        self._lowstate.Write(s)

    def _publish_odom(self) -> None:
        d, idx, odom = self.data, self.index, self._odom
        odom.header.stamp = self.get_clock().now().to_msg()
        pose, twist = odom.pose.pose, odom.twist.twist
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in d.qpos[:3])
        pose.orientation.w, pose.orientation.x, pose.orientation.y, pose.orientation.z = (float(v) for v in d.qpos[3:7])
        twist.linear.x, twist.linear.y, twist.linear.z = (float(v) for v in d.sensordata[idx.linvel])
        twist.angular.x, twist.angular.y, twist.angular.z = (float(v) for v in d.sensordata[idx.gyro])
        self.pub_odom.publish(odom)

    def destroy_node(self) -> None:
        self._running = False
        self._thread.join(timeout=2.0)
        if self.bad_crc:
            self.get_logger().info(f"{self.bad_crc} rt/lowcmd messages with a bad CRC dropped")
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    realtime_friendly_gil()  # the physics loop beside the rt/lowcmd listener
    return spin_node(UnitreeBoard, args)


if __name__ == "__main__":
    sys.exit(main())
