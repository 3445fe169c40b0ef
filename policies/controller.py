"""The policy node's brain, without ROS: mode machine, watchdog and every safety filter.

The ROS node only converts messages to the calls below and the returned :class:`JointCommand`
back to a message, so everything that decides what reaches the motors is here and testable
without middleware. Safety rules, in the order ``tick`` applies them:

- no fresh joint state or IMU sample for ``stale_periods`` control periods (samples stamped too
  far in the past are dropped), any malformed, non-finite or physically implausible input, a
  stamp from the future, or a jump of the clock forces DAMPING (zero stiffness, damping only)
  until an explicit restart;
- ``/cmd_vel`` is clipped to the contract's command ranges and decays to zero when not refreshed;
  a flood of it (above ``max_cmd_rate_hz``) is a fault;
- targets are clipped to the joint limits and their change per step is limited (the limits win:
  a stand-up from a pose measured beyond them is pulled inside at once);
- a non-finite policy output forces DAMPING; a DAMPING command carries no position stiffness.

The settings of each rule: :class:`trot.policies.settings.SafetyConfig`.
"""

from __future__ import annotations

import contextlib
import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from trot.policies.inputs import BadInput, BadInputLog, Fault, JointStateCheck, check_imu, publication_rate
from trot.policies.runtime import PolicyRuntime
from trot.policies.settings import SafetyConfig


class Mode(enum.Enum):
    PASSIVE = "passive"  # no command is sent
    STANDUP = "standup"  # interpolate from the measured pose to the default pose
    RUNNING = "running"  # the policy drives the joints
    DAMPING = "damping"  # zero stiffness, damping only


@dataclass
class JointCommand:
    """What goes to the motors, in the contract's joint order."""

    names: tuple[str, ...]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray
    mode: Mode
    """DAMPING: the driver applies damping only (zero stiffness) and ``position`` is the measured
    pose within the limits, for position interfaces that cannot take zero stiffness; otherwise
    track ``position`` with the contract's Kp/Kd."""


@dataclass
class Transition:
    time: float
    source: Mode
    target: Mode
    reason: str


@dataclass
class _Sample:
    stamp: float = -math.inf
    ok: bool = False


@dataclass
class Stats:
    watchdog_trips: int = 0
    bad_inputs: int = 0
    stale_dropped: int = 0
    clock_jumps: int = 0
    transitions: list[Transition] = field(default_factory=list)


class PolicyController:
    def __init__(
        self,
        runtime: PolicyRuntime,
        safety: SafetyConfig | None = None,
        control_period: float | None = None,
        log: Callable[[str], None] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        """``log`` takes routine lines (transitions an operator asked for), ``warn`` faults: bad
        input and every fall into DAMPING (default: ``log``). Raises ValueError naming each unsound
        safety setting or control period."""
        self.runtime = runtime
        self.contract = c = runtime.contract
        self.safety = safety or SafetyConfig()
        self.period = control_period or c.control_dt
        problems = self.safety.problems()
        if not 0.0 < self.period < math.inf:
            problems.append(f"control period is {self.period!r} s: must be a finite number > 0")
        narrowest = float(np.min(np.subtract(c.joint_pos_upper, c.joint_pos_lower)))
        if self.safety.joint_limit_margin >= 0.5 * narrowest:  # (NaN was named above)
            problems.append(f"joint_limit_margin is {self.safety.joint_limit_margin!r}: must be below half the "
                            f"narrowest joint range ({0.5 * narrowest:.3f} rad) or no target fits")  # fmt: skip
        if problems:
            raise ValueError("; ".join(problems))
        self.log = log or (lambda message: None)
        self.warn = warn or self.log
        self._bad_input_log = BadInputLog()
        n = c.num_joints
        self.names = c.joint_names
        self.default = np.asarray(c.default_joint_pos, dtype=np.float64)
        margin = self.safety.joint_limit_margin
        self.lower = np.asarray(c.joint_pos_lower) + margin
        self.upper = np.asarray(c.joint_pos_upper) - margin
        self._joint_check = JointStateCheck(c, self.safety)
        keys = ("lin_vel_x", "lin_vel_y", "ang_vel_yaw")
        self.cmd_lo = np.array([c.command_ranges[k][0] for k in keys])
        self.cmd_hi = np.array([c.command_ranges[k][1] for k in keys])
        self.mode = Mode.PASSIVE
        self.stats = Stats()
        self.joint_pos = np.zeros(n)
        self.joint_vel = np.zeros(n)
        self.quat = np.array([1.0, 0.0, 0.0, 0.0])
        self.gyro = np.zeros(3)
        self.cmd = np.zeros(3)
        self._joints, self._imu, self._cmd = _Sample(), _Sample(), _Sample()
        self._pose_measured = False
        self._last_drop_log = -math.inf
        self._flooded_ticks = 0
        self._standup_from = self.default.copy()
        self._standup_start: float | None = None  # the first stand-up tick's time (None: not yet ticked)
        self._last_target = self.default.copy()
        self._out = JointCommand(self.names, np.zeros(n), np.zeros(n), np.zeros(n), Mode.PASSIVE)

    @property
    def has_joint_state(self) -> bool:
        """A joint state was accepted: ``joint_pos`` is measured, not the zeros it starts as (also after
        a clock jump, which makes samples stale, not unmeasured)."""
        return self._pose_measured

    # ------------------------------------------------------------------ inputs
    def set_joint_state(
        self, names: Sequence[str], position: Sequence[float], velocity: Sequence[float], stamp: float, now: float
    ) -> bool:
        """A joint state message (header ``stamp``, received at ``now``); joints matched by name, any order."""
        if len(position) != len(names) or len(velocity) != len(names):
            fault = Fault.JOINT_STATE_POSITIONS if len(position) != len(names) else Fault.JOINT_STATE_VELOCITIES
            return self._bad_input(BadInput(fault, f"joint state has {len(names)} names, {len(position)} "
                                            f"positions, {len(velocity)} velocities"), now)  # fmt: skip
        try:  # (checked once per name order: the runtime caches it)
            order = self.runtime.joint_order(names)
        except KeyError as exc:
            return self._bad_input(BadInput(Fault.JOINT_STATE_MISSING, f"joint state: {exc.args[0]}"), now)
        except ValueError as exc:
            return self._bad_input(BadInput(Fault.JOINT_STATE_REPEATED, f"joint state: {exc.args[0]}"), now)
        pos, vel = np.asarray(position, dtype=np.float64)[order], np.asarray(velocity, dtype=np.float64)[order]
        if not self._joint_check.plausible(pos, vel) and (problem := self._joint_check.problem(pos, vel)):
            return self._bad_input(problem, now)
        return self._accept_joint_state(pos, vel, stamp, now)

    def _accept_joint_state(self, pos: np.ndarray, vel: np.ndarray, stamp: float, now: float) -> bool:
        if not self._stamp_ok("joint state", Fault.JOINT_STATE_FUTURE, stamp, now):
            return False
        self.joint_pos[:], self.joint_vel[:] = pos, vel
        self._joints = _Sample(min(stamp, now), True)  # (see _stamp_ok)
        self._pose_measured = True
        return True

    def set_imu(
        self, quat_wxyz: Sequence[float], gyro: Sequence[float], stamp: float, now: float, has_orientation: bool = True
    ) -> bool:
        """An IMU sample; ``has_orientation`` False when the driver says it has none (REP 145:
        orientation covariance[0] = -1): the observation needs it."""
        sample = check_imu(quat_wxyz, gyro, has_orientation, self.safety.max_angular_velocity)
        if isinstance(sample, BadInput):
            return self._bad_input(sample, now)
        if not self._stamp_ok("IMU", Fault.IMU_FUTURE, stamp, now):
            return False
        self.quat[:], self.gyro[:] = sample
        self._imu = _Sample(min(stamp, now), True)  # (see _stamp_ok)
        return True

    def set_command(self, vx: float, vy: float, yaw_rate: float, now: float) -> bool:
        """A velocity command (Twist messages carry no stamp: ``now`` is its receive time)."""
        c = np.array([vx, vy, yaw_rate], dtype=np.float64)
        if not np.isfinite(c).all():
            i = int(np.argmax(~np.isfinite(c)))
            field_name = ("linear.x", "linear.y", "angular.z")[i]
            return self._bad_input(BadInput(Fault.CMD_NON_FINITE, f"/cmd_vel {field_name} is {c[i]} (NaN or Inf)"), now)
        self.cmd[:] = np.clip(c, self.cmd_lo, self.cmd_hi)
        self._cmd = _Sample(now, True)
        return True

    def commands_received(self, publish_times: Sequence[float], now: float) -> None:
        """The publication instants of the /cmd_vel messages taken this control period (the newest
        few: the middleware keeps a short queue): their rate detects a flood."""
        rate = publication_rate(publish_times)
        self._flooded_ticks = self._flooded_ticks + 1 if rate > self.safety.max_cmd_rate_hz else 0
        if self._flooded_ticks >= 2:  # (every period it lasts: a restart during it damps again; the log is bounded)
            self._bad_input(BadInput(Fault.CMD_FLOOD, f"/cmd_vel flood: published at {rate:.0f} Hz, above "
                                     f"max_cmd_rate_hz {self.safety.max_cmd_rate_hz:g}"), now)  # fmt: skip

    def _stamp_ok(self, what: str, future: Fault, stamp: float, now: float) -> bool:
        """Future stamps are a broken clock (-> DAMPING); too-old samples are dropped, and if no
        fresh one follows, the watchdog damps. A stamp a little ahead (a driver's clock, within
        stale_periods) counts as received now: it must not keep the sample fresh for longer."""
        limit = self.safety.stale_periods * self.period
        if stamp > now + limit:
            return self._bad_input(BadInput(future, f"{what} stamped {stamp - now:.3f} s in the future"), now)
        if stamp < now - limit:
            self.stats.stale_dropped += 1
            if now - self._last_drop_log >= 1.0:  # at most one line a second: logging must not add lag
                self.log(f"dropping {what} samples stamped in the past ({now - stamp:.3f} s old; "
                         f"{self.stats.stale_dropped} so far)")  # fmt: skip
                self._last_drop_log = now
            return False
        return True

    def clock_jumped(self, delta_s: float, now: float) -> None:
        """The control loop saw its clock jump by ``delta_s``: sample ages are meaningless now."""
        self.stats.clock_jumps += 1
        self.log(f"clock jumped by {delta_s:+.3f} s")
        # samples stamped before the jump are no evidence of a live sensor after it (backwards, they
        # would even look fresh for as long as the jump): a start waits for new ones; the velocity
        # command is dropped too (it would be held, undecayed, for as long)
        self._joints, self._imu, self._cmd = _Sample(), _Sample(), _Sample()
        self.cmd[:] = 0.0
        if self.mode in (Mode.STANDUP, Mode.RUNNING):
            self._transition(Mode.DAMPING, f"clock jumped by {delta_s:+.3f} s", now)

    def reject(self, fault: Fault, reason: str, now: float) -> bool:
        """Input the node could not even decode (malformed bytes), of category ``fault``: a fault
        like any other bad input."""
        return self._bad_input(BadInput(fault, reason), now)

    def _bad_input(self, bad: BadInput, now: float) -> bool:
        """Count it, damp, and log it (a few lines a second per input, every fault counted: BadInputLog)."""
        self.stats.bad_inputs += 1
        if (line := self._bad_input_log.line(bad, now)) is not None:
            self.warn(line)
        if self.mode in (Mode.STANDUP, Mode.RUNNING):
            self._transition(Mode.DAMPING, f"bad input: {bad}", now)
        return False

    # ------------------------------------------------------------------ transitions
    def _transition(self, target: Mode, reason: str, now: float) -> None:
        if target is self.mode:
            return
        self.stats.transitions.append(Transition(now, self.mode, target, reason))
        routine = target is not Mode.DAMPING or reason.endswith("requested")  # (asked for by the operator)
        (self.log if routine else self.warn)(f"{self.mode.value} -> {target.value}: {reason}")
        self.mode = target

    def start(self, now: float) -> tuple[bool, str]:
        """PASSIVE or DAMPING -> STANDUP (then RUNNING by itself); needs fresh sensors."""
        if self.mode in (Mode.STANDUP, Mode.RUNNING):
            return False, f"already {self.mode.value}"
        if not self.fresh(now):
            return False, "no fresh joint state and IMU: refusing to start"
        if self._flooded_ticks >= 2:
            return False, "/cmd_vel is flooded: refusing to start (see the log)"
        self._standup_start = None  # the first stand-up tick takes the pose and the time (see tick)
        self.runtime.reset()
        self._transition(Mode.STANDUP, "start requested", now)
        return True, "standing up"

    def stop(self, now: float, reason: str = "stop requested") -> tuple[bool, str]:
        """Controlled stop: DAMPING (the robot sinks slowly; no stiffness that could fight a fall)."""
        self._transition(Mode.DAMPING, reason, now)
        return True, "damping"

    def estop(self, now: float) -> tuple[bool, str]:
        self._transition(Mode.DAMPING, "emergency stop", now)
        return True, "damping (emergency stop)"

    def take_over(self, last_target: np.ndarray, now: float) -> None:
        """Replay (shadow): RUNNING from here on, where a logged controller ran, with its last target
        (contract order) as the rate limit's start and the policy's memory reset, as at a start."""
        self.runtime.reset()
        self._last_target[:] = last_target
        self._transition(Mode.RUNNING, "replay: taking over from the logged controller", now)

    # ------------------------------------------------------------------ control step
    def fresh(self, now: float) -> bool:
        """Both a joint state and an IMU sample newer than stale_periods control periods."""
        limit = self.safety.stale_periods * self.period
        return self._joints.ok and self._imu.ok and now - self._joints.stamp <= limit and now - self._imu.stamp <= limit

    def command_now(self, now: float) -> np.ndarray:
        """The velocity command after timeout decay."""
        age = now - self._cmd.stamp
        s = self.safety
        if age <= s.cmd_timeout_s:
            return self.cmd
        scale = max(0.0, 1.0 - (age - s.cmd_timeout_s) / s.cmd_decay_s) if s.cmd_decay_s > 0 else 0.0
        return self.cmd * scale

    def warm_up(self, now: float, joint_state: tuple[Sequence[str], Sequence[float], Sequence[float]] = ()) -> bool:
        """In RUNNING, the policy step and the target filters on the current inputs with every result
        thrown away (:meth:`PolicyRuntime.warm_up`): brings them into the CPU caches just before a
        tick is due. With ``joint_state`` (names, positions, velocities: the last one received), the
        joint-state checks too, nothing stored. Changes nothing a tick reads; False (nothing run) in
        any other mode."""
        if self.mode is not Mode.RUNNING or not self.fresh(now):
            return False
        if joint_state:
            names, position, velocity = joint_state
            # a malformed one (lengths, names) is set_joint_state's to judge: it may not have yet (the
            # input thread keeps the message before it takes the lock)
            with contextlib.suppress(KeyError, ValueError):
                order = self.runtime.joint_order(names)
                pos, vel = np.asarray(position, dtype=np.float64), np.asarray(velocity, dtype=np.float64)
                if len(pos) == len(vel) == len(names):
                    self._joint_check.plausible(pos[order], vel[order])
        target = self.runtime.warm_up(self.names, self.joint_pos, self.joint_vel, self.quat, self.gyro,
                                      self.command_now(now))  # fmt: skip
        np.isfinite(target).all()
        step = self.safety.max_target_step
        np.clip(target, self._last_target - step, self._last_target + step, out=target)
        np.clip(target, self.lower, self.upper, out=target)
        return True

    def tick(self, now: float) -> JointCommand | None:
        """One control period: the command to send, or None in PASSIVE."""
        if self._bad_input_log.pending:  # bad-input lines held back by the log's rate (BadInputLog.flush)
            for line in self._bad_input_log.flush(now):
                self.warn(line)
        if self.mode in (Mode.STANDUP, Mode.RUNNING) and not self.fresh(now):
            self.stats.watchdog_trips += 1
            ages = ", ".join(f"{what} {now - sample.stamp:.3f} s old" if sample.ok else f"no {what}"
                             for what, sample in (("joint state", self._joints), ("IMU", self._imu)))  # fmt: skip
            self._transition(Mode.DAMPING, f"watchdog: stale joint state or IMU ({ages})", now)
        out = self._out
        if self.mode is Mode.PASSIVE:
            return None
        if self.mode is Mode.DAMPING:
            out.position[:] = np.clip(self.joint_pos, self.lower, self.upper)  # (a forward command's)
            out.velocity[:] = 0.0
            out.effort[:] = 0.0
            out.mode = Mode.DAMPING
            return out
        if self.mode is Mode.STANDUP:
            if self._standup_start is None:  # from the pose measured now, not at start(): ticks may
                self._standup_start = now  # begin later (a node activated after ~/start)
                self._standup_from = self.joint_pos.copy()
                self._last_target = self.joint_pos.copy()
            alpha = min(1.0, (now - self._standup_start) / max(self.safety.standup_s, 1e-9))
            target = (1.0 - alpha) * self._standup_from + alpha * self.default
            if alpha >= 1.0:
                self._transition(Mode.RUNNING, "stand-up complete", now)
        else:
            target = self.runtime.step(
                self.names, self.joint_pos, self.joint_vel, self.quat, self.gyro, self.command_now(now)
            )
            if not np.isfinite(target).all():
                self._transition(Mode.DAMPING, "policy produced a non-finite target", now)
                return self.tick(now)
        step = self.safety.max_target_step
        target = np.clip(target, self._last_target - step, self._last_target + step)
        target = np.clip(target, self.lower, self.upper)
        if not np.isfinite(target).all():  # (the last word: whatever got past the filters stops here)
            self._transition(Mode.DAMPING, "the filters produced a non-finite target", now)
            return self.tick(now)
        self._last_target[:] = target
        out.position[:] = target
        out.velocity[:] = 0.0
        out.effort[:] = 0.0
        out.mode = self.mode
        return out
