"""Unitree's low-level messages (``unitree_go`` ``LowState_`` / ``LowCmd_``) to and from joint arrays,
by joint name: no ROS here, so that the bridge node and the simulated board share one mapping.

The message types and the CRC come from Unitree's SDK (``unitree_sdk2py``, the ``unitree`` extra).
A robot config's ``unitree.motors`` names the joint of each motor slot (:class:`trot.sim.robot.UnitreeConfig`);
a :class:`MotorMap` holds, for a list of joint names in any order (the policy's contract, the
simulated robot's), the motor slot of each one. Unused slots are sent in the stop mode the SDK's
low-level examples document: mode 0x01 with the "stop" position and velocity, no gains, no torque.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from unitree_sdk2py.idl.default import unitree_go_msg_dds__LowCmd_, unitree_go_msg_dds__LowState_
from unitree_sdk2py.idl.unitree_go.msg.dds_ import LowCmd_, LowState_
from unitree_sdk2py.utils.crc import CRC

from trot.sim.robot import RobotConfig

LOWSTATE_TOPIC = "rt/lowstate"
LOWCMD_TOPIC = "rt/lowcmd"
HEAD = (0xFE, 0xEF)
"""The two bytes every ``LowCmd_`` starts with."""
LOW_LEVEL = 0xFF
"""``level_flag`` of a low-level command."""
SERVO_MODE = 0x01
"""A motor slot's ``mode``: the motor driven (FOC); 0 would leave it off."""
POS_STOP = 2.146e9
"""A target position that switches a motor's position loop off (the SDK's ``PosStopF``)."""
VEL_STOP = 16000.0
"""A target velocity that switches a motor's velocity loop off (the SDK's ``VelStopF``)."""
POS_STOP_LIMIT, VEL_STOP_LIMIT = 1e9, 0.99 * VEL_STOP
"""Targets this large are the stop values (a float32 holds 2.146e9 only approximately)."""

_crc = CRC()


def crc(msg: LowCmd_ | LowState_) -> int:
    """The CRC32 a Go2 checks (and fills) in ``msg.crc``: the SDK's, over the packed message."""
    return _crc.Crc(msg)


def crc_ok(msg: LowCmd_ | LowState_) -> bool:
    return crc(msg) == msg.crc


def new_state() -> LowState_:
    return unitree_go_msg_dds__LowState_()


def stop_command() -> LowCmd_:
    """A command with every motor slot in the stop mode (no gains, no torque), CRC not yet filled."""
    cmd = unitree_go_msg_dds__LowCmd_()
    cmd.head = list(HEAD)
    cmd.level_flag = LOW_LEVEL
    cmd.gpio = 0
    for motor in cmd.motor_cmd:
        motor.mode, motor.q, motor.dq, motor.kp, motor.kd, motor.tau = SERVO_MODE, POS_STOP, VEL_STOP, 0.0, 0.0, 0.0
    return cmd


@dataclass(frozen=True)
class MotorMap:
    """The motor slot of each of ``joint_names`` (in their order), from the robot config by name."""

    joint_names: tuple[str, ...]
    slots: tuple[int, ...]
    feet: tuple[str, ...]
    """The foot body of each ``foot_force`` entry (Unitree's order)."""

    @classmethod
    def of(cls, robot: RobotConfig, joint_names: Sequence[str] | None = None) -> MotorMap:
        """For ``joint_names`` (default: the robot's, in its order); each must have a motor slot."""
        if robot.unitree is None:
            raise ValueError(f"robot {robot.name!r} has no 'unitree' section (which joint drives each motor slot)")
        robot.unitree.check(robot)
        names = tuple(robot.joint_names if joint_names is None else joint_names)
        motors = robot.unitree.motors
        if missing := [n for n in names if n not in motors]:
            raise ValueError(f"robot.unitree.motors of {robot.name!r} gives no motor slot to joints {missing}")
        slots = tuple(motors.index(n) for n in names)
        size = len(unitree_go_msg_dds__LowCmd_().motor_cmd)
        if max(slots) >= size:
            raise ValueError(f"robot.unitree.motors: {max(slots) + 1} slots, but the messages carry {size}")
        return cls(names, slots, robot.unitree.feet)

    def slot_label(self, i: int) -> str:
        """``FR_thigh_joint (motor 1)``: the i-th joint and its slot, for messages."""
        return f"{self.joint_names[i]} (motor {self.slots[i]})"

    # ------------------------------------------------------------------ rt/lowstate
    def read(self, state: LowState_) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Joint positions, velocities and estimated torques, in this map's joint order."""
        motors = state.motor_state
        q = np.array([motors[s].q for s in self.slots])
        dq = np.array([motors[s].dq for s in self.slots])
        tau = np.array([motors[s].tau_est for s in self.slots])
        return q, dq, tau

    def write_state(self, state: LowState_, q: np.ndarray, dq: np.ndarray, tau: np.ndarray) -> None:
        """Fill the mapped slots' q, dq and tau_est (the simulated board's side)."""
        motors = state.motor_state
        for i, s in enumerate(self.slots):
            m = motors[s]
            m.mode, m.q, m.dq, m.tau_est = SERVO_MODE, float(q[i]), float(dq[i]), float(tau[i])

    # ------------------------------------------------------------------ rt/lowcmd
    def write_command(
        self, cmd: LowCmd_, q: np.ndarray | None, kp: np.ndarray, kd: np.ndarray, dq: np.ndarray, tau: np.ndarray
    ) -> None:
        """Fill the mapped slots (this map's joint order); ``q`` None: the position loop off (damping,
        with ``kp`` ignored)."""
        motors = cmd.motor_cmd
        for i, s in enumerate(self.slots):
            m = motors[s]
            m.mode = SERVO_MODE
            m.q, m.kp = (POS_STOP, 0.0) if q is None else (float(q[i]), float(kp[i]))
            m.dq, m.kd, m.tau = float(dq[i]), float(kd[i]), float(tau[i])

    def read_command(self, cmd: LowCmd_) -> np.ndarray:
        """[5, J] (q, dq, kp, kd, tau) of the mapped slots, with a stop value's loop switched off:
        a stop position zeroes that motor's kp (and its q), a stop velocity its kd (and its dq);
        a slot whose mode is not the servo mode is off altogether."""
        out = np.array([[m.q, m.dq, m.kp, m.kd, m.tau] for m in (cmd.motor_cmd[s] for s in self.slots)]).T
        off = np.array([cmd.motor_cmd[s].mode != SERVO_MODE for s in self.slots])
        q_off, dq_off = np.abs(out[0]) >= POS_STOP_LIMIT, np.abs(out[1]) >= VEL_STOP_LIMIT
        out[0, q_off] = out[2, q_off] = 0.0
        out[1, dq_off] = out[3, dq_off] = 0.0
        out[:, off] = 0.0
        return out


def rpy(quat_wxyz: Sequence[float]) -> tuple[float, float, float]:
    """Roll, pitch, yaw (rad, ZYX) of a unit quaternion, as a Go2 fills ``imu_state.rpy``."""
    w, x, y, z = quat_wxyz
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return roll, pitch, yaw


def out_of_range(q: np.ndarray, lower: np.ndarray, upper: np.ndarray, margin: float) -> np.ndarray:
    """Indices of positions beyond their joint's range by more than ``margin`` (or not finite): a motor
    read under another joint's name (a wrong ``unitree.motors``) shows as a thigh at a calf's angle."""
    bad = ~np.isfinite(q) | (q < lower - margin) | (q > upper + margin)
    return np.flatnonzero(bad)


class TickCheck:
    """``rt/lowstate``'s ``tick`` (the board's millisecond counter, wrapping at 2**32), state by state.

    A state is in order when its tick is ahead of the previous state's by 1 to ``max_step``. One that
    is not (the same tick again, one behind, one far ahead) means a second writer on rt/lowstate, a
    board that restarted, or a corrupted state; the states are then not to be trusted until
    ``settle`` in a row are in order again (50 ms of a Go2's). The first state of all is in order.
    """

    def __init__(self, max_step: int = 1000, settle: int = 25) -> None:
        self.max_step, self.settle = max_step, settle
        self.last: int | None = None
        self.run = settle  # states in order in a row
        self.out_of_order = 0

    def check(self, tick: int) -> str | None:
        """None when this state can be trusted; otherwise why not."""
        last, self.last = self.last, tick
        if last is None:
            return None
        step = (tick - last) & 0xFFFFFFFF
        if 0 < step <= self.max_step:
            self.run += 1
            if self.run >= self.settle:
                return None
            return f"{self.run} of {self.settle} states in order since a tick out of order"
        self.run = 0
        self.out_of_order += 1
        if step == 0:
            return f"tick {tick} twice"
        if step >= 1 << 31:
            return f"tick {tick} after {last}: behind"
        return f"tick {tick} after {last}: {step} ms ahead"
