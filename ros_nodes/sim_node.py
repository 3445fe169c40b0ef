"""trot robot simulation node: a MuJoCo robot with the interface of a real robot driver.

Publishes sensor_msgs/JointState (joint_states), sensor_msgs/Imu (imu), nav_msgs/Odometry (odom,
ground truth) and rosgraph_msgs/Clock (/clock, optional); subscribes sensor_msgs/JointState
(joint_commands) and applies PD at every physics step with the gains of the artifact's contract
(or the robot config, or parameters): tau = kp (q* - q) + kd (qd* - qd) + tau_ff, with the
command's velocity targets qd* and efforts tau_ff where it carries them (the sum within the
motor's torque limit). A command without positions means damping only. Services:
~/reset (std_srvs/Trigger), ~/pause (std_srvs/SetBool: a paused robot publishes nothing, like a
dead driver).
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import NamedTuple

# isort: off
from trot.sim.gl import choose_offscreen_gl

choose_offscreen_gl()  # before mujoco's first import, which reads MUJOCO_GL (see trot.sim.gl)
import mujoco

# isort: on
import numpy as np
from builtin_interfaces.msg import Time
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Imu, JointState
from std_srvs.srv import SetBool, Trigger

from trot.policies.settings import at_least, unsound
from trot.ros_nodes.cdr import JointStateWriter
from trot.ros_nodes.params import declare, doc, fail, spin_node
from trot.ros_nodes.sources import SourceTracker, publisher_names
from trot.sim import randomization
from trot.sim.randomization import RandomizationConfig
from trot.sim.robot import load_robot
from trot.sim.strict import ConfigError
from trot.sim.world import DAMPING_KD, compile_model, home_qpos, joint_gains, read_joint_gains, set_joint_gains


class Command(NamedTuple):
    """The newest joint command, swapped in whole by the subscription's thread (robot joint order)."""

    target: np.ndarray | None  # None: damping only
    feed_forward: np.ndarray  # kd qd* + tau_ff, N m
    wall_s: float  # time.monotonic() at receipt
    sim_s: float  # simulated time at receipt


NO_COMMAND = Command(None, np.zeros(0), -math.inf, -math.inf)
# beyond 1e10, MuJoCo zeroes every control (mjWARN_BADCTRL), as if each motor got a target of 0 rad; far
# below that, any PD saturates long before: a target clipped here drives its motor as the original would
MAX_TARGET_RAD = 1e6


@dataclass
class SimNodeParams:
    robot: str = field(
        default="", metadata=doc("shipped robot name or robot YAML path ('': the policy's robot, else go2)")
    )
    policy_path: str = field(default="", metadata=doc("if set, PD gains come from this artifact's contract"))
    kp: list[float] = field(default_factory=list, metadata=doc("per-joint override, robot joint order"))
    kd: list[float] = field(default_factory=list, metadata=doc("per-joint override, robot joint order"))
    damping_kd: float = field(default=DAMPING_KD, metadata=doc("gain for commands without positions"))
    command_timeout_s: float = field(
        default=0.25, metadata=doc("no joint command for this long (wall clock and sim time) -> damping; 0 = off")
    )
    real_time_factor: float = field(default=1.0, metadata=doc("1 = real time; 0 = as fast as possible"))
    publish_clock: bool = field(default=False, metadata=doc("publish /clock and stamp with simulation time"))
    joint_noise: float = field(default=0.0, metadata=doc("std of Gaussian noise on published joint positions, rad"))
    gyro_noise: float = field(default=0.0, metadata=doc("std of Gaussian noise on the published gyro, rad/s"))
    randomize: bool = field(default=False, metadata=doc("draw the training domain randomization once"))
    push_interval_s: float = field(default=0.0, metadata=doc("0 = no pushes"))
    push_velocity: float = field(
        default=0.5, metadata=doc("m/s added to the base's horizontal velocity, random direction, at each push")
    )
    shuffle_joint_order: bool = field(default=False, metadata=doc("publish joints in a permuted order"))
    publish_rate: float = field(
        default=250.0, metadata=doc("Hz of joint_states/imu/odom (a multiple of physics steps)")
    )
    seed: int = field(default=0, metadata=doc("seed of the noise, pushes and randomization"))
    joint_states_topic: str = field(default="joint_states", metadata=doc("out: sensor_msgs/JointState"))
    imu_topic: str = field(default="imu", metadata=doc("out: sensor_msgs/Imu"))
    odom_topic: str = field(default="odom", metadata=doc("out: nav_msgs/Odometry, the simulated base's true state"))
    joint_commands_topic: str = field(default="joint_commands", metadata=doc("in: sensor_msgs/JointState targets"))

    def problems(self) -> list[str]:
        """Each unsound number, named with its value and what it must be (a NaN gain makes the
        physics diverge, a negative noise is an error deep inside numpy); [] when all are sound."""

        names = ("damping_kd", "command_timeout_s", "real_time_factor", "joint_noise", "gyro_noise",
                 "push_interval_s", "push_velocity", "publish_rate", "kp", "kd")  # fmt: skip
        return unsound(self, dict.fromkeys(names, at_least(0)))


class SimNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("trot_sim", **kwargs)
        self.params, unknown = declare(self, SimNodeParams)
        if unknown:
            raise ValueError(f"unknown parameters {unknown} (check the parameter file)")
        if problems := self.params.problems():
            raise ValueError("; ".join(problems))
        p = self.params
        contract = None
        if p.policy_path:
            from trot.policies.artifact import read_artifact

            _, contract = read_artifact(p.policy_path)
        try:
            self.robot = load_robot(p.robot or (contract.robot if contract else "go2"))
        except ConfigError as exc:
            if p.robot or contract is None:
                raise
            raise ValueError(f"{exc}: it is the robot policy_path {p.policy_path!r} was trained on; if that "
                             "robot is not shipped, give its YAML with robot:=PATH") from exc  # fmt: skip
        self.model, self.index = compile_model(self.robot)
        self.data = mujoco.MjData(self.model)
        self.rng = np.random.default_rng(p.seed)
        names = list(self.robot.joint_names)
        if contract is not None:
            self._check_policy_fits(contract)
        kp, kd = joint_gains(self.robot, contract)  # the contract's where a policy is given, by joint name
        if p.kp:
            kp = np.asarray(p.kp, dtype=np.float64)
        if p.kd:
            kd = np.asarray(p.kd, dtype=np.float64)
        if kp.shape != (len(names),) or kd.shape != (len(names),):
            raise ValueError(f"kp/kd must have {len(names)} entries (one per joint of {self.robot.name})")
        if p.randomize:  # the gains too (kp_scale, kd_scale, motor_strength): scaled from the ones in use
            set_joint_gains(self.model, self.index, kp, kd)
            cfg = RandomizationConfig()
            nominal = randomization.Nominal.read(self.model, self.index)
            params = randomization.sample(self.rng, cfg, 1)[0]
            randomization.apply(self.model, nominal, self.index, params)
            kp, kd = read_joint_gains(self.model, self.index)
            self.get_logger().info(f"randomized: {dict(zip(randomization.PARAMS, params.round(3), strict=True))}")
        self.kp, self.kd = kp, kd  # what "pd" mode sets (_apply_gains)
        self.joint_names = names
        self.publish_order = self.rng.permutation(len(names)) if p.shuffle_joint_order else np.arange(len(names))
        # 250 Hz x 3 messages from Python: joint states are written as CDR bytes straight from the
        # arrays, and the IMU and odometry messages are built once and refilled (a new Imu or
        # Odometry builds its covariance arrays anew; the setters check every list element)
        self._write_joint_state = JointStateWriter([names[i] for i in self.publish_order])
        self._imu, self._odom = Imu(), Odometry()
        self._imu.header.frame_id = "imu"
        self._odom.header.frame_id, self._odom.child_frame_id = "odom", "base"
        self._lock = threading.Lock()
        # no lock for the command: the physics loop, running as fast as it can (real_time_factor 0),
        # took the lock back each step before a waiting callback woke, and commands 20 ms apart
        # reached it 0.25 s late; a reference swap needs only the GIL, which changes hands every few ms
        self._command = NO_COMMAND
        self._expired: Command | None = None  # the command the timeout damped (the physics loop's own)
        self._silenced = False  # since that timeout, no position command yet
        self._torque_limit = self.model.actuator_forcerange[self.index.actuator_ids, 1].copy()
        # what the physics loop has to say is logged by the executor's thread: a log line costs
        # ~1 ms of Python, the first one in a process ~30 ms, and physics steps every 4 ms
        self._news: queue.SimpleQueue[bool] = queue.SimpleQueue()  # the physics loop's `stopped` (no lock:
        # at real_time_factor 0 the loop holds its lock nearly always)
        self._news_ready = self.create_guard_condition(self._log_news)
        self._paused = False
        self._name_cache: dict[tuple[str, ...], np.ndarray] = {}
        self._gains_mode: str | None = None
        self.pushes = 0
        self.pub_js = self.create_publisher(JointState, p.joint_states_topic, 10)
        self.pub_imu = self.create_publisher(Imu, p.imu_topic, 10)
        self.pub_odom = self.create_publisher(Odometry, p.odom_topic, 10)
        self.pub_clock = self.create_publisher(Clock, "/clock", 10) if p.publish_clock else None
        # one controller per robot (trot.ros_nodes.sources): commands from two publishers at once
        # (their sequence numbers interleave) are refused, damping, until one is left
        self._commanders = SourceTracker(self.resolve_topic_name(p.joint_commands_topic))
        self.create_subscription(JointState, p.joint_commands_topic, lambda msg, info: self._on_command(msg, info), 10)
        self.create_service(Trigger, "~/reset", self._srv_reset)
        self.create_service(SetBool, "~/pause", self._srv_pause)
        self.reset()
        gains = "the artifact's contract" if p.policy_path else "the robot config"
        timeout = f"{p.command_timeout_s} s" if p.command_timeout_s > 0 else "off"
        self.get_logger().info(f"{self.robot.name}: physics at {1 / self.robot.sim.timestep:.0f} Hz, PD gains "
                               f"from {gains}, command timeout {timeout}")  # fmt: skip
        self._running = True
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _check_policy_fits(self, contract) -> None:
        """The simulated robot is the one the policy was trained on (a Go1 policy on the Go2 model
        would run, with the wrong body and torque limits, and prove nothing), and the timeout fits."""
        p = self.params
        if contract.robot != self.robot.name:
            raise ValueError(f"robot is {p.robot!r} ({self.robot.name}), but policy_path {p.policy_path!r} was "
                             f"trained on {contract.robot}: set robot:={contract.robot}, or leave robot empty to "
                             "simulate the policy's robot")  # fmt: skip
        if missing := [n for n in self.robot.joint_names if n not in contract.joint_names]:
            raise ValueError(f"policy_path {p.policy_path!r} has no joints {missing} of the {self.robot.name}")
        if 0 < p.command_timeout_s < 2 * contract.control_dt:
            raise ValueError(f"command_timeout_s is {p.command_timeout_s!r}: must be 0 (off) or at least two "
                             f"of the policy's control periods ({2 * contract.control_dt:g} s), or the robot "
                             "damps between its commands")  # fmt: skip

    # ------------------------------------------------------------------ commands
    def _on_command(self, msg: JointState, info: dict | None = None) -> None:
        """The newest command, held for the physics loop. A bad one is ignored with a warning at most
        once a second per kind: a broken controller at 500 Hz must not flood the log, whose every
        line costs ~1 ms of Python in this process. Commands from more than one publisher: damping."""
        if self._several_commanders(info):
            self._take(None, np.zeros(len(self.joint_names)))
            return
        key = tuple(msg.name)
        order = self._name_cache.get(key)
        if order is None:
            position = {n: i for i, n in enumerate(msg.name)}
            missing = [n for n in self.joint_names if n not in position]
            if missing:
                self.get_logger().warn(f"command ignored: no entry for joints {missing}", throttle_duration_sec=1.0)
                return
            order = self._name_cache[key] = np.array([position[n] for n in self.joint_names], dtype=np.intp)
        if len(msg.position) == 0:
            self._take(None, np.zeros(len(self.joint_names)))
            return
        if len(msg.position) != len(msg.name):
            self.get_logger().warn("command ignored: position and name lengths differ", throttle_duration_sec=1.0)
            return
        target = np.asarray(msg.position, dtype=np.float64)[order]
        if not np.isfinite(target).all():
            self.get_logger().warn("command ignored: non-finite position", throttle_duration_sec=1.0)
            return
        if (np.abs(target) > MAX_TARGET_RAD).any():  # (a motor saturates towards it, as it would towards 1e11)
            self.get_logger().warn(f"position target beyond ±{MAX_TARGET_RAD:g} rad: clipped",
                                   throttle_duration_sec=1.0)  # fmt: skip
            target = np.clip(target, -MAX_TARGET_RAD, MAX_TARGET_RAD)
        feed_forward = np.zeros(len(target))
        for what, values, gain in (("velocity", msg.velocity, self.kd), ("effort", msg.effort, 1.0)):
            if len(values) == 0:  # (optional, as in sensor_msgs/JointState)
                continue
            if len(values) != len(msg.name):
                self.get_logger().warn(f"command ignored: {what} and name lengths differ", throttle_duration_sec=1.0)
                return
            values = np.asarray(values, dtype=np.float64)[order]
            if not np.isfinite(values).all():
                self.get_logger().warn(f"command ignored: non-finite {what}", throttle_duration_sec=1.0)
                return
            feed_forward += gain * values
        self._take(target, feed_forward)

    def _several_commanders(self, info: dict | None) -> bool:
        """Whether the commands come from more than one publisher now (their sequence numbers
        interleave): logged once as it begins, naming the publishers the graph shows, and once as it
        ends. A publisher that sends nothing drives nothing (a dead one stays in the graph for the
        middleware's lease, ~20 s), so only the commands themselves count here."""
        tracker = self._commanders
        before = tracker.interleaved
        several = tracker.message((info or {}).get("publication_sequence_number"), time.monotonic())
        if several and not before:
            names = ", ".join(publisher_names(self, tracker.topic)) or "(the graph shows none yet)"
            self.get_logger().warn(f"joint commands from more than one publisher ({names}): refused, damping "
                                   "until one is left")  # fmt: skip
        elif before and not several:
            self.get_logger().info("joint commands from one publisher again: taking them")
        return several

    def _take(self, target: np.ndarray | None, feed_forward: np.ndarray) -> None:
        """The newest command for the physics loop: targets (robot order), or None for damping."""
        self._command = Command(target, feed_forward, time.monotonic(), self.data.time)

    def _feed_forward_now(self, feed_forward: np.ndarray) -> np.ndarray | float:
        """The joint force that, added to what the actuator applies this step, makes the motor's
        torque clip(kp (q* - q) - kd qd + kd qd* + tau_ff) as a driver's current limit does: the
        actuator clips its PD term on its own (its force range), so with that term saturated an
        opposing feed-forward must not pull the sum below the limit. The PD term is computed from
        the state as MuJoCo will."""
        if not feed_forward.any():
            return 0.0
        m, d, idx, limit = self.model, self.data, self.index, self._torque_limit
        ids = idx.actuator_ids
        pd = (m.actuator_gainprm[ids, 0] * d.ctrl[ids] + m.actuator_biasprm[ids, 1] * d.qpos[idx.qpos_adr]
              + m.actuator_biasprm[ids, 2] * d.qvel[idx.qvel_adr])  # fmt: skip
        return np.clip(pd + feed_forward, -limit, limit) - np.clip(pd, -limit, limit)

    def _stale(self, command: Command) -> bool:
        """Whether a position command has gone stale: older than ``command_timeout_s`` by the wall
        clock *and* in simulated time, so that neither a simulator that stalls (sim time stands
        still: its controller, waiting on /clock, rightly sends nothing) nor one that runs far
        faster than real time (a sim-time timeout would pass in a few wall milliseconds) damps a
        controller that is alive."""
        timeout = self.params.command_timeout_s
        if timeout <= 0 or command.target is None:
            return False
        sim_age = self.data.time - command.sim_s  # (< 0: received as a reset rewound the clock)
        return time.monotonic() - command.wall_s > timeout and not 0 <= sim_age <= timeout

    def _log_news(self) -> None:
        while not self._news.empty():
            if self._news.get():  # (rclpy: one severity per call site)
                timeout = self.params.command_timeout_s
                self.get_logger().warn(f"no joint command for {timeout} s: damping until the next one")
            else:
                self.get_logger().info("joint commands again: PD on their targets")

    def _apply_gains(self, mode: str) -> None:
        if mode == self._gains_mode:
            return
        kp = np.zeros_like(self.kp) if mode == "damping" else self.kp
        kd = np.full_like(self.kd, self.params.damping_kd) if mode == "damping" else self.kd
        set_joint_gains(self.model, self.index, kp, kd)
        self._gains_mode = mode

    # ------------------------------------------------------------------ services
    def reset(self) -> None:
        with self._lock:
            mujoco.mj_resetData(self.model, self.data)
            self.data.qpos[:] = home_qpos(self.model, self.index, self.robot)
            self.data.ctrl[self.index.actuator_ids] = self.data.qpos[self.index.qpos_adr]
            self._command, self._expired, self._silenced = NO_COMMAND, None, False  # no command yet: damping
            self._next_push = self.params.push_interval_s  # (sim time starts again at 0)
            mujoco.mj_forward(self.model, self.data)

    def _srv_reset(self, request, response):
        self.reset()
        response.success, response.message = True, "reset to the standing pose"
        return response

    def _srv_pause(self, request, response):
        self._paused = bool(request.data)
        response.success, response.message = True, "paused" if self._paused else "running"
        return response

    # ------------------------------------------------------------------ physics loop
    def _stamp(self) -> Time:
        if self.params.publish_clock:
            t = self.data.time
            return Time(sec=int(t), nanosec=int((t - int(t)) * 1e9))
        return self.get_clock().now().to_msg()

    def _loop(self) -> None:
        try:
            self._step_forever()
        except Exception:
            if self._running and self.context.ok():  # (not a shutdown under us: SIGINT/SIGTERM)
                fail(self, "the physics loop")

    def _step_forever(self) -> None:
        dt = self.robot.sim.timestep
        every = max(1, round(1.0 / (self.params.publish_rate * dt))) if self.params.publish_rate > 0 else 1
        rtf = self.params.real_time_factor
        deadline = time.perf_counter()
        step = 0
        while self._running:
            if not self._paused:
                stopped = None  # True: the commands stopped; False: they came back
                with self._lock:
                    command = self._command  # (one read: the callback may swap in the next one meanwhile)
                    if command is not self._expired and self._stale(command):
                        self._expired, stopped = command, True  # damping until the next command of any kind
                        self._silenced = True
                    elif self._silenced and command.target is not None and command is not self._expired:
                        self._silenced, stopped = False, False  # positions again (after damping ones, maybe)
                    damping = command.target is None or command is self._expired
                    self._apply_gains("damping" if damping else "pd")
                    if not damping:  # (the actuators: kp (q* - q) - kd qd; the rest as a joint force)
                        self.data.ctrl[self.index.actuator_ids] = command.target
                    dofs = self.index.dof_adr
                    self.data.qfrc_applied[dofs] = 0.0 if damping else self._feed_forward_now(command.feed_forward)
                    self._maybe_push()
                    mujoco.mj_step(self.model, self.data)
                    step += 1
                    if step % every == 0:
                        self._publish()
                if stopped is not None:
                    self._news.put(stopped)
                    self._news_ready.trigger()
            if rtf > 0:
                deadline += dt / rtf  # absolute deadlines: no drift
                delay = deadline - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -0.1:  # far behind (machine overloaded): do not try to catch up
                    deadline = time.perf_counter()

    def _maybe_push(self) -> None:
        p = self.params
        if p.push_interval_s > 0 and self.data.time >= self._next_push:
            angle = self.rng.uniform(0, 2 * np.pi)
            self.data.qvel[0:2] += p.push_velocity * np.array([np.cos(angle), np.sin(angle)])
            self._next_push += p.push_interval_s
            self.pushes += 1

    def _publish(self) -> None:
        d, idx, p = self.data, self.index, self.params
        stamp = self._stamp()
        order = self.publish_order
        pos = d.qpos[idx.qpos_adr] + (self.rng.normal(0, p.joint_noise, len(order)) if p.joint_noise else 0.0)
        effort = d.sensordata[idx.torque] + d.qfrc_applied[idx.dof_adr]  # (the motor's: PD and feed-forward)
        joint_state = self._write_joint_state(
            stamp.sec, stamp.nanosec, pos[order], d.qvel[idx.qvel_adr][order], effort[order]
        )
        quat = d.sensordata[idx.orientation]
        gyro = d.sensordata[idx.gyro] + (self.rng.normal(0, p.gyro_noise, 3) if p.gyro_noise else 0.0)
        imu = self._imu
        imu.header.stamp = stamp
        imu.orientation.w, imu.orientation.x, imu.orientation.y, imu.orientation.z = (float(v) for v in quat)
        imu.angular_velocity.x, imu.angular_velocity.y, imu.angular_velocity.z = (float(v) for v in gyro)
        a = d.sensordata[idx.accelerometer]
        imu.linear_acceleration.x, imu.linear_acceleration.y, imu.linear_acceleration.z = (float(v) for v in a)
        odom = self._odom
        odom.header.stamp = stamp
        odom.pose.pose.position.x, odom.pose.pose.position.y, odom.pose.pose.position.z = (float(v) for v in d.qpos[:3])
        q = odom.pose.pose.orientation
        q.w, q.x, q.y, q.z = (float(v) for v in d.qpos[3:7])
        lin = d.sensordata[idx.linvel]
        odom.twist.twist.linear.x, odom.twist.twist.linear.y, odom.twist.twist.linear.z = (float(v) for v in lin)
        w = d.sensordata[idx.gyro]
        odom.twist.twist.angular.x, odom.twist.twist.angular.y, odom.twist.twist.angular.z = (float(v) for v in w)
        if self.pub_clock is not None:
            self.pub_clock.publish(Clock(clock=stamp))
        self.pub_js.publish(joint_state)
        self.pub_imu.publish(imu)
        self.pub_odom.publish(odom)

    def destroy_node(self) -> None:
        self._running = False
        self._thread.join(timeout=2.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return spin_node(SimNode, args)


if __name__ == "__main__":
    sys.exit(main())
