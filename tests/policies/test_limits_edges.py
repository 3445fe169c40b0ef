"""Every plausibility and safety limit of the policy controller probed at its edge, ROS-free, with the
shipped artifact: a value just inside a limit is accepted (the controller keeps RUNNING, the target
passes unchanged), one just outside is a fault (DAMPING, a warning naming the joint or field) or is
clipped to exactly the bound.

The edges are derived from the settings (:class:`SafetyConfig`) and the contract, not written down
here, so that a changed default still gets edge tests; ``test_the_defaults_are_the_documented_numbers``
pins today's defaults, so that a mistaken one (a speed limit of 400 rad/s) fails too. Where the
arithmetic allows it the edge itself is probed exactly (a limit is "above"/"beyond by more than":
exactly at it is accepted), which catches a ``>`` written as ``>=``.
"""

import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from trot.policies.controller import Mode, PolicyController
from trot.policies.inputs import JointStateCheck, check_imu, publication_rate
from trot.policies.runtime import PolicyRuntime
from trot.policies.settings import SafetyConfig

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "policies" / "go2_flat"
REL = 1e-6  # just inside / just outside: a limit times (1 -+ REL), far above rounding, far below any tolerance
INSIDE, OUTSIDE = 1.0 - REL, 1.0 + REL
UNIT_QUAT = np.array([0.9, 0.1, -0.3, 0.2]) / np.linalg.norm([0.9, 0.1, -0.3, 0.2])  # some tilt and yaw
CMD_AXES = ("lin_vel_x", "lin_vel_y", "ang_vel_yaw")
CMD_FIELDS = ("linear.x", "linear.y", "angular.z")


@pytest.fixture(scope="module")
def runtime() -> PolicyRuntime:
    """One runtime for every controller here: a start (and take_over) resets its memory."""
    return PolicyRuntime(SHIPPED)


def quat_norm_band() -> tuple[float, float]:
    """The band of quaternion norms check_imu accepts, as its fault message states it."""
    message = check_imu([2.0, 0.0, 0.0, 0.0], [0.0] * 3, True, 40.0)
    found = re.search(r"accepted ([0-9.]+)-([0-9.]+)\)", message)
    assert found, message
    return float(found[1]), float(found[2])


class Running:
    """A controller brought to RUNNING at t = -1 s (so that t = 0 is free for exact stamp edges), its
    warnings kept; ``feed`` gives it a joint state and IMU sample, stamped when received by default."""

    def __init__(self, runtime: PolicyRuntime, **safety: float) -> None:
        self.warnings: list[str] = []
        self.c = c = PolicyController(runtime, SafetyConfig(standup_s=0.0, **safety), warn=self.warnings.append)
        self.names = list(c.names)
        self.default = np.asarray(c.contract.default_joint_pos, dtype=np.float64)
        now = -1.0
        self.feed(now)
        assert c.start(now)[0]
        while c.mode is not Mode.RUNNING:
            now += c.period
            self.feed(now)
            c.tick(now)
            assert now < 0.0
        self.now = now
        assert not self.warnings and c.stats.bad_inputs == 0

    def feed(self, now: float, pos=None, vel=None, quat=UNIT_QUAT, gyro=(0.0, 0.0, 0.0), stamp=None) -> None:
        pos = self.default if pos is None else pos
        vel = np.zeros(len(self.names)) if vel is None else vel
        stamp = now if stamp is None else stamp
        assert self.c.set_joint_state(self.names, pos, vel, stamp=stamp, now=now)
        assert self.c.set_imu(quat, gyro, stamp=stamp, now=now)

    def still_running(self, now: float) -> None:
        out = self.c.tick(now)
        assert self.c.mode is Mode.RUNNING and out.mode is Mode.RUNNING, self.warnings
        assert not self.warnings and self.c.stats.bad_inputs == 0

    def damped_by(self, now: float, expected_warning: str) -> None:
        """The tick at ``now`` damps, and the only warnings are ``expected_warning`` (tagged with its
        category, a first occurrence) and the transition it caused."""
        out = self.c.tick(now)
        assert self.c.mode is Mode.DAMPING and out.mode is Mode.DAMPING
        assert re.fullmatch(re.escape(expected_warning) + r" \[[^\]]+, first occurrence\]", self.warnings[0]), (
            self.warnings
        )
        assert self.warnings[1:] == [f"running -> damping: {expected_warning}"], self.warnings


def test_the_defaults_are_the_documented_numbers(runtime: PolicyRuntime) -> None:
    """docs/ros/deploy.md and parameters.md state these; the edge tests below follow whatever the
    settings are, so a mistaken default (a speed limit of 400 rad/s) is caught only here. Also what
    the launch files give the node (nodes.yaml, then each robot's file, key by key)."""
    documented = {"max_joint_velocity": 60.0, "max_angular_velocity": 40.0, "joint_pos_tolerance": 0.5,
                  "max_target_step": 0.25, "joint_limit_margin": 0.02, "max_cmd_rate_hz": 1000.0,
                  "stale_periods": 2.0, "cmd_timeout_s": 0.5, "cmd_decay_s": 0.5}  # fmt: skip
    default = SafetyConfig()
    assert {name: getattr(default, name) for name in documented} == documented
    assert PolicyController(runtime).safety == default, "a controller without settings uses the defaults"
    shared = yaml.safe_load((ROOT / "launch" / "config" / "nodes.yaml").read_text())["/**/trot_policy"]
    for robot in ("go2", "go1"):
        robot_file = yaml.safe_load((ROOT / "launch" / "config" / f"{robot}.yaml").read_text())
        launched = shared["ros__parameters"] | robot_file.get("/**/trot_policy", {}).get("ros__parameters", {})
        assert {name: launched[name] for name in documented} == documented, robot
    assert quat_norm_band() == (0.9, 1.1)
    contract = runtime.contract  # Go2: +-1.0 m/s forward, +-0.5 m/s sideways, +-1.0 rad/s yaw (deploy.md)
    assert [tuple(contract.command_ranges[k]) for k in CMD_AXES] == [(-1.0, 1.0), (-0.5, 0.5), (-1.0, 1.0)]
    assert contract.control_dt == 0.02


# ------------------------------------------------------------------ joint positions and speeds
def test_joint_state_check_edges_of_every_joint_on_both_sides(runtime: PolicyRuntime) -> None:
    """Positions up to joint_pos_tolerance beyond the joint limits and speeds up to
    max_joint_velocity are plausible, exactly at the edge included; a hair beyond is not, named."""
    contract, safety = runtime.contract, SafetyConfig()
    check = JointStateCheck(contract, safety)
    tol, vmax = safety.joint_pos_tolerance, safety.max_joint_velocity
    lower, upper = np.asarray(contract.joint_pos_lower), np.asarray(contract.joint_pos_upper)
    default, zero = np.asarray(contract.default_joint_pos, dtype=np.float64), np.zeros(contract.num_joints)
    for i, name in enumerate(contract.joint_names):
        for side, limit in ((-1.0, lower[i]), (1.0, upper[i])):
            for beyond, plausible in ((tol * INSIDE, True), (tol, True), (tol * OUTSIDE, False)):
                pos = default.copy()
                pos[i] = limit + side * beyond
                assert check.plausible(pos, zero) is plausible, (name, side, beyond)
                problem = check.problem(pos, zero)
                if plausible:
                    assert problem is None, (name, side, beyond, problem)
                else:
                    assert problem == (f"joint state {name} = {pos[i]:.4g} rad is beyond its limits "
                                       f"[{lower[i]:.3f}, {upper[i]:.3f}] by more than "
                                       f"joint_pos_tolerance {tol}")  # fmt: skip
            for speed, plausible in ((vmax * INSIDE, True), (vmax, True), (vmax * OUTSIDE, False)):
                vel = zero.copy()
                vel[i] = side * speed
                assert check.plausible(default, vel) is plausible, (name, side, speed)
                problem = check.problem(default, vel)
                if plausible:
                    assert problem is None, (name, side, speed, problem)
                else:
                    assert problem == (f"joint state {name} velocity {vel[i]:.4g} rad/s exceeds "
                                       f"max_joint_velocity {vmax}")  # fmt: skip


@pytest.mark.parametrize("side", ["lower", "upper"])
def test_a_joint_position_just_beyond_the_tolerance_damps_and_just_inside_runs(runtime: PolicyRuntime, side) -> None:
    for i in range(runtime.contract.num_joints):
        for fraction in (INSIDE, 1.0, OUTSIDE):
            r = Running(runtime)
            c, now = r.c, r.now + r.c.period
            tol = c.safety.joint_pos_tolerance
            limit = getattr(c.contract, f"joint_pos_{side}")[i]
            pos = r.default.copy()
            pos[i] = limit + (tol * fraction if side == "upper" else -tol * fraction)
            zero = np.zeros(12)
            accepted = c.set_joint_state(r.names, pos, zero, stamp=now, now=now)
            assert c.set_imu(UNIT_QUAT, [0.0] * 3, stamp=now, now=now)
            if fraction <= 1.0:
                assert accepted and np.array_equal(c.joint_pos, pos)
                r.still_running(now)
            else:
                assert not accepted and np.array_equal(c.joint_pos, r.default), "a rejected sample is not kept"
                lo, hi = c.contract.joint_pos_lower[i], c.contract.joint_pos_upper[i]
                r.damped_by(now, f"bad input: joint state {r.names[i]} = {pos[i]:.4g} rad is beyond its limits "
                                 f"[{lo:.3f}, {hi:.3f}] by more than joint_pos_tolerance {tol}")  # fmt: skip


@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_a_joint_speed_just_above_max_joint_velocity_damps_and_just_below_runs(runtime: PolicyRuntime, sign) -> None:
    for i in range(runtime.contract.num_joints):
        for fraction in (INSIDE, 1.0, OUTSIDE):
            r = Running(runtime)
            c, now = r.c, r.now + r.c.period
            vmax = c.safety.max_joint_velocity
            vel = np.zeros(12)
            vel[i] = sign * vmax * fraction
            accepted = c.set_joint_state(r.names, r.default, vel, stamp=now, now=now)
            assert c.set_imu(UNIT_QUAT, [0.0] * 3, stamp=now, now=now)
            if fraction <= 1.0:
                assert accepted and np.array_equal(c.joint_vel, vel)
                r.still_running(now)
            else:
                assert not accepted and not c.joint_vel.any(), "a rejected sample is not kept"
                r.damped_by(now, f"bad input: joint state {r.names[i]} velocity {vel[i]:.4g} rad/s exceeds "
                                 f"max_joint_velocity {vmax}")  # fmt: skip


# ------------------------------------------------------------------ IMU
GYRO_DIRECTIONS = [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1), (1, -2, 2), (-2, -1, 2)]


@pytest.mark.parametrize("direction", GYRO_DIRECTIONS, ids=lambda d: ",".join(map(str, d)))
def test_a_base_angular_speed_just_above_max_angular_velocity_damps_and_just_below_runs(
    runtime: PolicyRuntime, direction
) -> None:
    """The limit is on the speed (the vector's length), whatever the axis."""
    unit = np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)  # (1, -2, 2)/3: length 3
    wmax = SafetyConfig().max_angular_velocity
    axis_aligned = np.count_nonzero(unit) == 1  # exactly at the edge: its length is exactly wmax
    for fraction in (INSIDE, 1.0, OUTSIDE) if axis_aligned else (INSIDE, OUTSIDE):
        gyro = [float(w) for w in unit * wmax * fraction]
        sample = check_imu(UNIT_QUAT, gyro, True, wmax)
        r = Running(runtime)
        c, now = r.c, r.now + r.c.period
        assert c.set_joint_state(r.names, r.default, np.zeros(12), stamp=now, now=now)
        accepted = c.set_imu(UNIT_QUAT, gyro, stamp=now, now=now)
        if fraction <= 1.0:
            assert not isinstance(sample, str) and sample.gyro == tuple(gyro)
            assert accepted and np.array_equal(c.gyro, gyro)
            r.still_running(now)
        else:
            speed = math.sqrt(sum(w * w for w in gyro))
            assert speed > wmax
            why = f"IMU angular speed {speed:.4g} rad/s exceeds max_angular_velocity {wmax}"
            assert sample == why
            assert not accepted and not c.gyro.any(), "a rejected sample is not kept"
            r.damped_by(now, f"bad input: {why}")


@pytest.mark.parametrize("edge", ["low", "high"])
def test_a_quaternion_norm_just_outside_the_accepted_band_damps_and_just_inside_runs(runtime, edge) -> None:
    """An orientation within the band is normalized and used; outside it is a fault."""
    low, high = quat_norm_band()
    bound = low if edge == "low" else high
    inside, outside = (OUTSIDE, INSIDE) if edge == "low" else (INSIDE, OUTSIDE)
    for fraction in (inside, outside):
        quat = [float(q) for q in UNIT_QUAT * bound * fraction]
        norm = math.sqrt(sum(q * q for q in quat))
        r = Running(runtime)
        c, now = r.c, r.now + r.c.period
        assert c.set_joint_state(r.names, r.default, np.zeros(12), stamp=now, now=now)
        before = c.quat.copy()
        accepted = c.set_imu(quat, [0.0] * 3, stamp=now, now=now)
        if fraction == inside:
            assert low < norm < high
            assert accepted
            np.testing.assert_allclose(c.quat, UNIT_QUAT, rtol=0, atol=1e-12)
            assert abs(np.linalg.norm(c.quat) - 1.0) < 1e-12
            r.still_running(now)
        else:
            assert not low < norm < high
            assert not accepted and np.array_equal(c.quat, before), "a rejected sample is not kept"
            r.damped_by(now, f"bad input: IMU orientation quaternion is not unit length (norm {norm:.4g}, "
                             f"accepted {low:g}-{high:g})")  # fmt: skip


# ------------------------------------------------------------------ stamps and the watchdog
@pytest.mark.parametrize("sensor", ["joint state", "IMU"])
def test_a_stamp_just_beyond_stale_periods_in_the_future_damps_and_just_within_runs(runtime, sensor) -> None:
    """Exactly stale_periods control periods ahead is accepted; one ulp more is a broken clock."""
    limit = SafetyConfig().stale_periods * runtime.contract.control_dt
    cases = [(0.5, limit * INSIDE, True), (0.0, limit, True),  # (now, stamp - now: at now = 0 exactly so)
             (0.0, np.nextafter(limit, math.inf), False), (0.5, limit * OUTSIDE, False)]  # fmt: skip
    for now, ahead, accepted in cases:
        r = Running(runtime)
        c = r.c
        assert c.period * c.safety.stale_periods == limit
        joint_stamp, imu_stamp = (now + ahead, now) if sensor == "joint state" else (now, now + ahead)
        ok_joint = c.set_joint_state(r.names, r.default, np.zeros(12), stamp=joint_stamp, now=now)
        ok_imu = c.set_imu(UNIT_QUAT, [0.0] * 3, stamp=imu_stamp, now=now)
        assert (ok_joint and ok_imu) is accepted, (now, ahead)
        if accepted:
            r.still_running(now)
        else:
            r.damped_by(now, f"bad input: {sensor} stamped {ahead:.3f} s in the future")


@pytest.mark.parametrize("sensor", ["joint state", "IMU"])
def test_a_sample_just_older_than_stale_periods_is_dropped_and_just_younger_is_taken(runtime, sensor) -> None:
    """A sample exactly stale_periods old is taken; one ulp older is dropped (counted, not a fault)."""
    limit = SafetyConfig().stale_periods * runtime.contract.control_dt
    past_edge = np.nextafter(limit, math.inf)
    cases = [(0.5, limit * INSIDE, True), (limit, limit, True),  # (now, now - stamp: at stamp 0 exactly so)
             (past_edge, past_edge, False), (0.5, limit * OUTSIDE, False)]  # fmt: skip
    for now, age, taken in cases:
        r = Running(runtime)
        c = r.c
        r.feed(now - 0.5 * c.period)  # a fresh sample of each, so that a drop alone does not damp
        pos = r.default + 0.01
        quat = [1.0, 0.0, 0.0, 0.0]
        if sensor == "joint state":
            assert c.set_joint_state(r.names, pos, np.zeros(12), stamp=now - age, now=now) is taken
            assert np.array_equal(c.joint_pos, pos) is taken
        else:
            assert c.set_imu(quat, [0.0] * 3, stamp=now - age, now=now) is taken
            assert np.array_equal(c.quat, quat) is taken
        assert c.stats.stale_dropped == (0 if taken else 1) and c.stats.bad_inputs == 0
        r.still_running(now)


@pytest.mark.parametrize("stale", ["joint state", "IMU", "both"])
def test_the_watchdog_trips_just_after_stale_periods_and_not_before(runtime, stale) -> None:
    """A tick exactly stale_periods control periods after the last sample of either sensor still runs;
    one ulp later it damps, naming the stale sensor's age."""
    limit = SafetyConfig().stale_periods * runtime.contract.control_dt
    for last, tick_at, trips in [(0.0, limit * INSIDE, False), (0.0, limit, False),
                                 (0.0, np.nextafter(limit, math.inf), True), (0.0, limit * OUTSIDE, True)]:  # fmt: skip
        r = Running(runtime)
        c = r.c
        r.feed(last)
        if stale != "both":  # the other sensor keeps sending
            fresh = tick_at - 0.25 * c.period
            if stale == "IMU":
                assert c.set_joint_state(r.names, r.default, np.zeros(12), stamp=fresh, now=fresh)
            else:
                assert c.set_imu(UNIT_QUAT, [0.0] * 3, stamp=fresh, now=fresh)
        if not trips:
            r.still_running(tick_at)
            assert c.stats.watchdog_trips == 0
            continue
        out = c.tick(tick_at)
        assert c.mode is Mode.DAMPING and out.mode is Mode.DAMPING and c.stats.watchdog_trips == 1
        reason = c.stats.transitions[-1].reason
        assert reason.startswith("watchdog: stale joint state or IMU"), reason
        for sensor in ("joint state", "IMU"):
            age = tick_at - last if stale in (sensor, "both") else 0.25 * c.period
            assert f"{sensor} {age:.3f} s old" in reason, reason


# ------------------------------------------------------------------ /cmd_vel
@pytest.mark.parametrize("axis", range(3), ids=CMD_AXES)
def test_cmd_vel_just_inside_a_range_is_unchanged_and_just_outside_is_clipped_to_the_bound(runtime, axis) -> None:
    """Per axis, against the contract's command_ranges; clipping is no fault and leaves the other
    axes alone."""
    lo, hi = runtime.contract.command_ranges[CMD_AXES[axis]]
    eps = REL * (hi - lo)
    r = Running(runtime)
    c = r.c
    other = np.array([0.5 * (a + b) + 0.1 * (b - a) for a, b in (runtime.contract.command_ranges[k] for k in CMD_AXES)])
    for value, expected in [(hi - eps, hi - eps), (hi, hi), (hi + eps, hi), (hi * 10.0, hi),
                            (lo + eps, lo + eps), (lo, lo), (lo - eps, lo), (lo * 10.0, lo)]:  # fmt: skip
        r.now += c.period
        command = other.copy()
        command[axis] = value
        assert c.set_command(*command, now=r.now)
        wanted = other.copy()
        wanted[axis] = expected
        assert np.array_equal(c.command_now(r.now), wanted), (CMD_FIELDS[axis], value, c.command_now(r.now))
        r.feed(r.now)
        r.still_running(r.now)


def test_cmd_vel_outside_on_every_axis_at_once_is_clipped_to_every_bound(runtime: PolicyRuntime) -> None:
    ranges = [runtime.contract.command_ranges[k] for k in CMD_AXES]
    r = Running(runtime)
    for corner in ("lo", "hi"):
        bound = np.array([lo if corner == "lo" else hi for lo, hi in ranges])
        widths = np.array([hi - lo for lo, hi in ranges])
        beyond = bound + (REL * widths if corner == "hi" else -REL * widths)
        assert r.c.set_command(*beyond, now=r.now)
        assert np.array_equal(r.c.command_now(r.now), bound)


def test_cmd_vel_is_held_for_cmd_timeout_s_then_decays_linearly_to_zero_over_cmd_decay_s(runtime) -> None:
    """Up to exactly cmd_timeout_s after the last /cmd_vel the command is held as sent; just after, it
    has begun to shrink; it reaches zero exactly cmd_decay_s later and stays there."""
    safety = SafetyConfig()
    timeout, decay = safety.cmd_timeout_s, safety.cmd_decay_s
    c = PolicyController(runtime, safety)
    sent = np.array([0.8 * runtime.contract.command_ranges[k][i] for k, i in zip(CMD_AXES, (1, 0, 1), strict=True)])
    assert c.set_command(*sent, now=0.0)
    assert np.array_equal(c.command_now(timeout * INSIDE), sent)
    assert np.array_equal(c.command_now(timeout), sent)
    just_after = c.command_now(timeout * OUTSIDE)
    assert (np.abs(just_after) < np.abs(sent)).all()
    np.testing.assert_allclose(just_after, sent * (1.0 - timeout * REL / decay), rtol=1e-9)
    np.testing.assert_allclose(c.command_now(timeout + 0.5 * decay), 0.5 * sent, rtol=1e-9)
    almost = c.command_now(timeout + decay * INSIDE)
    assert (np.sign(almost) == np.sign(sent)).all()
    np.testing.assert_allclose(almost, sent * REL, rtol=1e-6)
    for later in (timeout + decay, (timeout + decay) * OUTSIDE, 100.0):
        assert not c.command_now(later).any(), later


# ------------------------------------------------------------------ targets
def test_a_target_step_just_below_max_target_step_passes_and_just_above_is_limited_to_it(runtime) -> None:
    """From a previous target (take_over sets it), a policy target less than max_target_step away
    passes bit-identical; one further is moved exactly max_target_step towards it. The raw policy
    target comes from a twin whose step limit is out of reach (the runtime is reset at take_over,
    so both see the same policy output)."""
    twin = Running(runtime, max_target_step=100.0)
    now = twin.now + twin.c.period
    twin.feed(now)
    twin.c.take_over(twin.default, now)
    raw = twin.c.tick(now).position.copy()
    assert (raw > twin.c.lower).all() and (raw < twin.c.upper).all(), "the raw target is not limit-clipped"
    r = Running(runtime)
    c = r.c
    step = c.safety.max_target_step
    for shift in range(4):  # every joint sees each case: below / above the step, from below / above
        cases = (np.arange(12) + shift) % 4
        sign = np.where(cases % 2 == 0, 1.0, -1.0)
        distance = np.where(cases < 2, step * INSIDE, step * OUTSIDE)
        previous = raw - sign * distance
        r.feed(now)
        c.take_over(previous, now)
        out = c.tick(now).position
        expected = np.where(cases < 2, raw, previous + sign * step)
        assert np.array_equal(out, expected), (shift, out - expected)
        moved = np.abs(out - previous)
        np.testing.assert_allclose(moved[cases >= 2], step, rtol=0, atol=1e-12)
        assert c.mode is Mode.RUNNING and not r.warnings


def test_targets_are_clipped_exactly_joint_limit_margin_inside_the_joint_limits(runtime: PolicyRuntime) -> None:
    """The first stand-up tick commands the measured pose: a pose just within joint_limit_margin of
    a limit is clipped to exactly that margin inside it, one just further inside passes unchanged."""
    safety = SafetyConfig(standup_s=0.2)
    margin = safety.joint_limit_margin
    lower = np.asarray(runtime.contract.joint_pos_lower)
    upper = np.asarray(runtime.contract.joint_pos_upper)
    for shift in range(4):  # every joint sees each case
        cases = (np.arange(12) + shift) % 4
        pose = np.select([cases == 0, cases == 1, cases == 2],
                         [upper - margin * OUTSIDE, upper - margin * INSIDE, lower + margin * OUTSIDE],
                         lower + margin * INSIDE)  # fmt: skip
        c = PolicyController(runtime, safety)
        names = list(c.names)
        assert c.set_joint_state(names, pose, np.zeros(12), stamp=0.0, now=0.0)
        assert c.set_imu(UNIT_QUAT, [0.0] * 3, stamp=0.0, now=0.0)
        assert c.start(0.0)[0]
        out = c.tick(0.0)
        assert out.mode is Mode.STANDUP
        expected = np.select([cases == 1, cases == 3], [upper - margin, lower + margin], pose)
        assert np.array_equal(out.position, expected), (shift, out.position - expected)


# ------------------------------------------------------------------ /cmd_vel flood
def published_at(rate: float, end: float, n: int = 10) -> list[float]:
    """``n`` publication instants at ``rate`` Hz, the last at ``end``."""
    return [end - (n - 1 - i) / rate for i in range(n)]


def test_a_cmd_vel_rate_just_above_max_cmd_rate_hz_for_two_periods_damps_and_just_below_does_not(runtime) -> None:
    limit = SafetyConfig().max_cmd_rate_hz
    below, above = published_at(limit * INSIDE, 0.0), published_at(limit * OUTSIDE, 0.0)
    assert publication_rate(below) < limit < publication_rate(above)
    exactly = next(times for n in range(3, 20) if publication_rate(times := [i / limit for i in range(n)]) == limit)
    for rates in ([below] * 10, [exactly] * 10, [above, below] * 5, [below, above, exactly, above, below]):
        r = Running(runtime)
        for times in rates:  # (published in the period before each tick)
            r.now += r.c.period
            r.feed(r.now)
            r.c.commands_received(times, r.now)  # (only the span between them counts)
            r.still_running(r.now)
    r = Running(runtime)
    for k in range(2):
        r.now += r.c.period
        r.feed(r.now)
        r.c.commands_received(above, r.now)
        if k == 0:
            r.still_running(r.now)  # one period above the limit is not yet a flood
    rate = publication_rate(above)
    r.damped_by(r.now, f"bad input: /cmd_vel flood: published at {rate:.0f} Hz, above max_cmd_rate_hz {limit:g}")
