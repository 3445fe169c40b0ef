"""The policy node's controller (mode machine + safety filters) with the shipped ONNX policy (each
safety limit probed at its edge: test_limits_edges.py)."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from trot.policies.controller import Mode, PolicyController
from trot.policies.inputs import Fault
from trot.policies.runtime import PolicyRuntime
from trot.policies.settings import SafetyConfig
from trot.testing.faults.log_lines import parse

SHIPPED = Path(__file__).resolve().parents[2] / "policies" / "go2_flat"
T = 0.02


@pytest.fixture
def ctrl() -> PolicyController:
    return PolicyController(PolicyRuntime(SHIPPED), SafetyConfig(standup_s=0.2))


def feed(c: PolicyController, now: float, pos=None, names=None, vel=None) -> None:
    names = list(c.names) if names is None else names
    pos = np.asarray(c.contract.default_joint_pos) if pos is None else pos
    vel = np.zeros(len(names)) if vel is None else vel
    assert c.set_joint_state(names, pos, vel, stamp=now, now=now)
    assert c.set_imu([1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0], stamp=now, now=now)


def run_to(c: PolicyController, mode: Mode, start: float = 0.0) -> float:
    now = start
    feed(c, now)
    assert c.start(now)[0]
    while c.mode is not mode:
        now += T
        feed(c, now)
        c.tick(now)
        assert now < 5.0
    return now


def test_passive_sends_nothing_and_start_needs_fresh_sensors(ctrl: PolicyController) -> None:
    assert ctrl.tick(0.0) is None
    ok, why = ctrl.start(0.0)
    assert not ok and "no fresh" in why and ctrl.mode is Mode.PASSIVE


def test_standup_interpolates_from_measured_pose_then_runs(ctrl: PolicyController) -> None:
    crouched = np.asarray(ctrl.contract.default_joint_pos) + np.tile([0.0, 0.3, -0.4], 4)
    feed(ctrl, 0.0, pos=crouched)
    assert ctrl.start(0.0)[0] and ctrl.mode is Mode.STANDUP
    first = ctrl.tick(0.0).position.copy()
    np.testing.assert_allclose(first, np.clip(crouched, ctrl.lower, ctrl.upper))
    now = 0.0
    while ctrl.mode is Mode.STANDUP:
        now += T
        feed(ctrl, now, pos=crouched)
        cmd = ctrl.tick(now)
        if abs(now - 0.1) < 1e-9:  # halfway through standup_s = 0.2 s: halfway along the line
            np.testing.assert_allclose(cmd.position, 0.5 * (np.clip(crouched, ctrl.lower, ctrl.upper) + ctrl.default))
        assert now <= 0.2 + T + 1e-9, "the stand-up takes standup_s"
    assert now >= 0.2 - 1e-9, "the stand-up takes standup_s"
    np.testing.assert_allclose(cmd.position, ctrl.default, atol=1e-9)
    assert ctrl.mode is Mode.RUNNING
    assert [t.target for t in ctrl.stats.transitions] == [Mode.STANDUP, Mode.RUNNING]
    assert ctrl.stats.transitions[-1].reason == "stand-up complete"


def test_running_targets_are_finite_within_limits_and_rate_limited(ctrl: PolicyController) -> None:
    now = run_to(ctrl, Mode.RUNNING)
    rng = np.random.default_rng(0)
    previous = None
    for _ in range(300):
        now += T
        pos = rng.uniform(ctrl.contract.joint_pos_lower, ctrl.contract.joint_pos_upper)
        feed(ctrl, now, pos=pos, vel=rng.normal(0, 5, 12))
        ctrl.set_command(*rng.uniform(-3, 3, 3), now=now)
        out = ctrl.tick(now)
        assert out.mode is Mode.RUNNING and np.isfinite(out.position).all()
        assert (out.position >= ctrl.lower - 1e-12).all() and (out.position <= ctrl.upper + 1e-12).all()
        if previous is not None:
            assert np.abs(out.position - previous).max() <= ctrl.safety.max_target_step + 1e-12
        previous = out.position.copy()


def test_permuted_joint_order_gives_the_same_command() -> None:
    outs = []
    for permute in (False, True):
        c = PolicyController(PolicyRuntime(SHIPPED), SafetyConfig(standup_s=0.0))
        now = run_to(c, Mode.RUNNING)
        names = list(c.names)
        pos = np.asarray(c.contract.default_joint_pos) + np.linspace(-0.1, 0.1, 12)
        perm = np.random.default_rng(1).permutation(12) if permute else np.arange(12)
        now += T
        feed(c, now, pos=pos[perm], names=[names[i] for i in perm], vel=np.linspace(-1, 1, 12)[perm])
        c.set_command(0.5, 0.0, 0.2, now=now)
        outs.append(c.tick(now).position.copy())
    np.testing.assert_array_equal(outs[0], outs[1])


def test_stale_sensors_damp_within_three_periods(ctrl: PolicyController) -> None:
    now = run_to(ctrl, Mode.RUNNING)
    last_sample = now
    for k in range(1, 4):
        out = ctrl.tick(last_sample + k * T)
    assert ctrl.mode is Mode.DAMPING and out.mode is Mode.DAMPING
    assert ctrl.stats.watchdog_trips == 1


@pytest.mark.parametrize(
    "bad",
    [
        lambda c, now: c.set_joint_state(list(c.names), [np.nan] * 12, [0.0] * 12, stamp=now, now=now),
        lambda c, now: c.set_joint_state(list(c.names), [0.0] * 11, [0.0] * 12, stamp=now, now=now),
        lambda c, now: c.set_joint_state(["wing"] * 12, [0.0] * 12, [0.0] * 12, stamp=now, now=now),
        lambda c, now: c.set_joint_state(list(c.names), list(c.default), [0.0] * 12, stamp=now + 5.0, now=now),
        lambda c, now: c.set_imu([np.inf, 0, 0, 0], [0, 0, 0], stamp=now, now=now),
        lambda c, now: c.set_imu([2.0, 0, 0, 0], [0, 0, 0], stamp=now, now=now),
        lambda c, now: c.set_command(np.nan, 0.0, 0.0, now=now),
        lambda c, now: c.set_joint_state(list(c.names[:11]) + [c.names[0]], list(c.default), [0.0] * 12, now, now),
        lambda c, now: c.set_joint_state(list(c.names), list(c.default[:11]) + [1e6], [0.0] * 12, now, now),
        lambda c, now: c.set_joint_state(list(c.names), list(c.default), [0.0] * 11 + [500.0], now, now),
        lambda c, now: c.set_imu([1.0, 0, 0, 0], [0, 0, 80.0], stamp=now, now=now),
        lambda c, now: c.set_imu([1.0, 0, 0, 0], [0, 0, 0], stamp=now, now=now, has_orientation=False),
        lambda c, now: c.clock_jumped(10.0, now),
    ],
    ids=["nan-joint", "short-array", "unknown-names", "future-stamp", "inf-imu", "non-unit-quat", "nan-cmd",
         "duplicate-name", "huge-position", "huge-velocity", "huge-gyro", "no-orientation", "clock-jump"],
)  # fmt: skip
def test_bad_input_damps_and_is_logged(bad) -> None:
    lines: list[str] = []
    c = PolicyController(PolicyRuntime(SHIPPED), SafetyConfig(standup_s=0.0), log=lines.append)
    now = run_to(c, Mode.RUNNING)
    assert not bad(c, now + T)
    out = c.tick(now + T)
    assert c.mode is Mode.DAMPING and out.mode is Mode.DAMPING and np.isfinite(out.position).all()
    assert any(line.startswith(("bad input:", "clock jumped")) for line in lines)
    assert c.stats.bad_inputs + c.stats.clock_jumps == 1
    assert np.array_equal(c.joint_pos, c.default), "a rejected sample must not reach the state"


def test_bad_input_log_lines_name_the_field_and_category_and_a_flood_of_them_is_bounded() -> None:
    warnings: list[str] = []
    c = PolicyController(PolicyRuntime(SHIPPED), SafetyConfig(standup_s=0.0), log=lambda m: None, warn=warnings.append)
    names, pos = list(c.names), list(c.default)
    c.set_joint_state(names, pos, [0.0] * 5 + [np.inf] + [0.0] * 6, stamp=0.0, now=0.0)
    c.set_imu([1.0, 0, 0, 0], [0, np.nan, 0], stamp=0.0, now=0.0)
    c.set_imu([0.5, 0, 0, 0], [0, 0, 0], stamp=0.4, now=0.4)  # (an input's lines are 1/3 s apart)
    c.set_command(0.1, 0.0, np.inf, now=0.0)
    assert warnings == [
        f"bad input: joint state {names[5]} velocity is inf (NaN or Inf; 1 of 12 joints) [joint state: NaN or Inf, "
        "first occurrence]",
        "bad input: IMU angular_velocity [0.0, nan, 0.0] is not finite (NaN or Inf) [IMU: angular velocity NaN or "
        "Inf, first occurrence]",
        "bad input: IMU orientation quaternion is not unit length (norm 0.5, accepted 0.9-1.1) [IMU: non-unit "
        "quaternion, first occurrence]",
        "bad input: /cmd_vel angular.z is inf (NaN or Inf) [/cmd_vel: NaN or Inf, first occurrence]",
    ]
    warnings.clear()
    for k in range(400):  # a broken driver: 200 bad samples a second for 2 s, each a little different
        now = 10.0 + k * 0.005
        c.set_joint_state(names, pos[:11] + [10.0 + k], [0.0] * 12, stamp=now, now=now)
        if k % 4 == 0:
            c.tick(now)  # (PASSIVE: no command; the held-back lines go out from here)
    for k in range(1, 100):
        c.tick(12.0 + k * 0.02)
    assert c.stats.bad_inputs == 404 and len(warnings) == 7, warnings  # 1/3 s apart for 2 s, then the rest
    parsed = [parse(line) for line in warnings]
    assert sum(p.fault is not None for p in parsed) + sum(sum(p.unlogged.values()) for p in parsed) == 400
    assert parsed[0].first and parsed[0].fault is Fault.JOINT_STATE_BEYOND_LIMITS
    assert parsed[-1].fault is None and parsed[-1].unlogged == {Fault.JOINT_STATE_BEYOND_LIMITS: 64}, warnings


@pytest.mark.parametrize("action", ["estop", "stop"])
def test_estop_and_stop_damp_and_a_restart_stands_up_again(ctrl: PolicyController, action: str) -> None:
    now = run_to(ctrl, Mode.RUNNING)
    getattr(ctrl, action)(now)
    assert ctrl.mode is Mode.DAMPING
    assert ctrl.stats.transitions[-1].reason == {"estop": "emergency stop", "stop": "stop requested"}[action]
    out = ctrl.tick(now + T)
    assert out.mode is Mode.DAMPING
    feed(ctrl, now + T)
    assert ctrl.start(now + T)[0] and ctrl.mode is Mode.STANDUP  # an explicit restart is allowed
    assert ctrl.tick(now + T).mode is Mode.STANDUP


def test_the_stand_up_starts_at_its_first_tick_from_the_pose_measured_then() -> None:
    """A start accepted long before the first tick (a node activated later) must not skip the
    stand-up: it begins at the first tick, from the pose measured then."""
    c = PolicyController(PolicyRuntime(SHIPPED), SafetyConfig(standup_s=0.2))
    lying = np.clip(np.asarray(c.contract.default_joint_pos) + np.tile([0.0, 0.6, 0.8], 4), c.lower, c.upper)
    feed(c, 0.0)  # standing when start is pressed...
    assert c.start(0.0)[0]
    now = 30.0
    feed(c, now, pos=lying)  # ...lying by the first tick, 30 s later
    first = c.tick(now)
    assert first.mode is Mode.STANDUP
    np.testing.assert_allclose(first.position, lying)
    while c.mode is Mode.STANDUP:
        now += T
        feed(c, now, pos=lying)
        c.tick(now)
    assert now >= 30.0 + 0.2 - 1e-9, f"the stand-up took {now - 30.0:.2f} s, not standup_s"


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"max_target_step": float("nan")}, "max_target_step is nan"),
        ({"max_target_step": 0.0}, "max_target_step is 0.0"),
        ({"joint_limit_margin": 2.0}, "joint_limit_margin is 2.0: must be below half the narrowest joint range"),
        ({"joint_limit_margin": -0.1}, "joint_limit_margin is -0.1"),
        ({"stale_periods": 0.5}, "stale_periods is 0.5"),
        ({"standup_s": float("inf")}, "standup_s is inf"),
        ({"cmd_decay_s": -1.0, "clock_jump_s": float("nan")}, "cmd_decay_s is -1.0: must be a finite number >= 0; "
                                                              "clock_jump_s is nan"),
        ({"max_joint_velocity": float("nan")}, "max_joint_velocity is nan"),
    ],
)  # fmt: skip
def test_unsound_safety_settings_are_refused_naming_each(settings: dict, named: str) -> None:
    """Unchecked, a NaN step limit made every target NaN and a wide margin put every target outside
    the joint limits."""
    with pytest.raises(ValueError, match=named.replace("(", r"\(")) as info:
        PolicyController(PolicyRuntime(SHIPPED), SafetyConfig(**settings))
    assert all(name in str(info.value) for name in settings)


def test_sound_safety_settings_pass_and_unchecked_speeds_may_be_infinite() -> None:
    assert SafetyConfig().problems() == []
    assert SafetyConfig(max_joint_velocity=float("inf"), max_cmd_rate_hz=float("inf")).problems() == []
    with pytest.raises(ValueError, match="control period is nan"):
        PolicyController(PolicyRuntime(SHIPPED), control_period=float("nan"))


def test_command_is_clipped_and_decays_when_not_refreshed(ctrl: PolicyController) -> None:
    ctrl.set_command(5.0, -5.0, 0.5, now=0.0)
    hi = ctrl.cmd_hi
    np.testing.assert_allclose(ctrl.command_now(0.1), [hi[0], ctrl.cmd_lo[1], 0.5])
    s = ctrl.safety
    half = ctrl.command_now(s.cmd_timeout_s + s.cmd_decay_s / 2)
    np.testing.assert_allclose(half, 0.5 * np.array([hi[0], ctrl.cmd_lo[1], 0.5]))
    np.testing.assert_array_equal(ctrl.command_now(s.cmd_timeout_s + s.cmd_decay_s + 0.01), 0.0)


def policy_with_output_bias(tmp_path: Path, bias: np.ndarray) -> PolicyRuntime:
    """The shipped policy with its output layer's bias replaced (the contract travels inside)."""
    model = onnx.load(SHIPPED / "policy.onnx")
    for init in model.graph.initializer:
        if init.dims and len(init.dims) == 1 and init.dims[0] == 12:  # an output bias
            init.CopyFrom(numpy_helper.from_array(bias.astype(np.float32), init.name))
    broken = tmp_path / "biased_policy"
    broken.mkdir()
    onnx.save(model, broken / "policy.onnx")
    return PolicyRuntime(broken)


def test_targets_far_outside_the_limits_saturate_at_them_one_step_at_a_time(tmp_path: Path) -> None:
    c = PolicyController(policy_with_output_bias(tmp_path, np.tile([100.0, -100.0], 6)), SafetyConfig(standup_s=0.0))
    now, previous = run_to(c, Mode.RUNNING), c.default.copy()
    for _ in range(200):  # a joint's whole range is a few rad: 200 steps of max_target_step cover it
        now += T
        feed(c, now)
        out = c.tick(now)
        assert np.abs(out.position - previous).max() <= c.safety.max_target_step + 1e-12
        assert (out.position >= c.lower).all() and (out.position <= c.upper).all()
        previous = out.position.copy()
    np.testing.assert_array_equal(out.position, np.where(np.arange(12) % 2 == 0, c.upper, c.lower))


def test_damping_targets_are_the_measured_pose_within_the_limits(ctrl: PolicyController) -> None:
    now = run_to(ctrl, Mode.RUNNING)
    ctrl.estop(now)
    beyond = np.asarray(ctrl.contract.joint_pos_upper) + 0.5 * ctrl.safety.joint_pos_tolerance  # plausible
    feed(ctrl, now + T, pos=beyond)
    out = ctrl.tick(now + T)
    assert out.mode is Mode.DAMPING
    np.testing.assert_array_equal(out.position, ctrl.upper)  # (a forward command's target)


def test_non_finite_policy_output_damps(tmp_path: Path) -> None:
    c = PolicyController(policy_with_output_bias(tmp_path, np.full(12, np.nan)), SafetyConfig(standup_s=0.0))
    now = run_to(c, Mode.RUNNING)
    now += T
    feed(c, now)
    out = c.tick(now)
    assert c.mode is Mode.DAMPING and out.mode is Mode.DAMPING and np.isfinite(out.position).all()
    assert c.stats.transitions[-1].reason == "policy produced a non-finite target"


def test_samples_stamped_a_little_ahead_stay_fresh_no_longer_than_any_other(ctrl: PolicyController) -> None:
    """A driver whose clock runs 1.5 periods ahead: its samples are accepted, and when they stop the
    watchdog still damps within 3 periods of the last one (aged from when it came, not its stamp)."""
    now = run_to(ctrl, Mode.RUNNING)
    now += T
    ahead = now + 1.5 * T
    assert ctrl.set_joint_state(list(ctrl.names), list(ctrl.default), [0.0] * 12, stamp=ahead, now=now)
    assert ctrl.set_imu([1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0], stamp=ahead, now=now)
    assert ctrl.tick(now).mode is Mode.RUNNING
    for k in range(1, 4):
        out = ctrl.tick(now + k * T)
    assert out.mode is Mode.DAMPING and ctrl.stats.watchdog_trips == 1


def test_samples_from_the_past_are_dropped_and_the_watchdog_damps(ctrl: PolicyController) -> None:
    now = run_to(ctrl, Mode.RUNNING)
    names, pos, zero = list(ctrl.names), list(ctrl.default), [0.0] * 12
    for k in range(1, 4):
        t = now + k * T
        assert not ctrl.set_joint_state(names, pos, zero, stamp=t - 1.0, now=t)  # 1 s old: dropped
        ctrl.set_imu([1.0, 0, 0, 0], [0, 0, 0], stamp=t - 1.0, now=t)
        ctrl.tick(t)
    assert ctrl.stats.stale_dropped == 6 and ctrl.stats.bad_inputs == 0
    assert ctrl.mode is Mode.DAMPING and ctrl.stats.watchdog_trips == 1


def test_a_cmd_vel_flood_damps_after_two_periods_and_teleop_rates_do_not() -> None:
    lines: list[str] = []
    c = PolicyController(PolicyRuntime(SHIPPED), SafetyConfig(standup_s=0.0, max_cmd_rate_hz=1000.0), log=lines.append)
    now = run_to(c, Mode.RUNNING)
    for _ in range(50):  # 300 Hz teleop at 50 Hz control: 6 per period
        now += T
        feed(c, now)
        c.commands_received([now - T + i / 300 for i in range(6)], now)
        c.tick(now)
    assert c.mode is Mode.RUNNING
    # a queue of 10 delivered at once after a network hiccup: published over 0.1 s, not a flood
    c.commands_received([now + i * 0.01 for i in range(10)], now + T)
    c.commands_received([now + i * 0.01 for i in range(10)], now + 2 * T)
    assert c.mode is Mode.RUNNING
    flood = [now + i * 2e-5 for i in range(10)]  # 50 kHz
    c.commands_received(flood, now + 3 * T)
    assert c.mode is Mode.RUNNING, "one period at a high rate is not yet a flood"
    c.commands_received(flood, now + 4 * T)
    assert c.mode is Mode.DAMPING and any("/cmd_vel flood: published at 50000 Hz" in line for line in lines)
    # the flood goes on: a restart is refused (it used to be taken, and the flood was never seen again)
    now += 5 * T
    feed(c, now)
    c.commands_received(flood, now)
    ok, why = c.start(now)
    assert not ok and "/cmd_vel is flooded" in why and c.mode is Mode.DAMPING
    for _ in range(3):  # it ends: a start is taken, and a flood that comes back damps again
        now += T
        feed(c, now)
        c.commands_received([now - T + i / 300 for i in range(6)], now)
    assert c.start(now)[0]
    for k in range(3):
        now += T
        feed(c, now)
        c.commands_received([now + i * 2e-5 for i in range(10)], now)
        c.tick(now)
        assert c.mode is (Mode.STANDUP if k == 0 else Mode.DAMPING), k


def test_after_the_clock_jumps_back_a_start_waits_for_a_sample_taken_since() -> None:
    """Samples stamped before a backward jump lie in the clock's future: they must not count as
    fresh (a start was taken, and the watchdog stayed blind for as long as the jump)."""
    c = PolicyController(PolicyRuntime(SHIPPED), SafetyConfig(standup_s=0.0))
    now = run_to(c, Mode.RUNNING)
    c.set_command(0.5, 0.0, 0.3, now)
    now -= 20.0
    c.clock_jumped(-20.0, now)
    assert c.mode is Mode.DAMPING
    ok, why = c.start(now + T)
    assert not ok and "no fresh joint state and IMU" in why
    out = c.tick(now + 2 * T)
    assert out.mode is Mode.DAMPING and np.isfinite(out.position).all()
    assert c.has_joint_state, "the pose was measured: a position interface still gets it when damping"
    feed(c, now + 3 * T)
    assert c.start(now + 3 * T)[0]
    assert not c.command_now(now + 3 * T).any(), "the command from before the jump is not held"
    assert c.tick(now + 4 * T).mode is Mode.STANDUP
    for k in range(5, 8):  # and with the sensors silent again the watchdog acts as usual
        out = c.tick(now + k * T)
    assert out.mode is Mode.DAMPING and c.stats.watchdog_trips == 1


def test_an_infinite_joint_speed_is_refused_even_with_the_speed_check_off() -> None:
    """max_joint_velocity inf means "no speed check", not "Inf is a speed"."""
    warnings: list[str] = []
    c = PolicyController(PolicyRuntime(SHIPPED), SafetyConfig(standup_s=0.0, max_joint_velocity=np.inf),
                         warn=warnings.append)  # fmt: skip
    now = run_to(c, Mode.RUNNING) + T
    velocity = np.zeros(12)
    velocity[3] = -np.inf
    assert not c.set_joint_state(list(c.names), list(c.default), velocity, stamp=now, now=now)
    assert c.tick(now).mode is Mode.DAMPING and not np.isinf(c.joint_vel).any()
    assert warnings[0] == (
        f"bad input: joint state {c.names[3]} velocity is -inf (NaN or Inf; 1 of 12 joints) "
        "[joint state: NaN or Inf, first occurrence]"
    )


def test_thousands_of_joint_names_with_duplicates_are_refused_in_one_bounded_line() -> None:
    """A message may carry 4,096 names: finding the duplicates must be linear (it was quadratic, 0.4 s
    under the controller's lock) and the log line must not list them all."""
    c = PolicyController(PolicyRuntime(SHIPPED), SafetyConfig(standup_s=0.0))
    now = run_to(c, Mode.RUNNING) + T
    names = list(c.names) + [f"extra_{i}" for i in range(2042)] * 2
    zeros = np.zeros(len(names))
    assert not c.set_joint_state(names, zeros, zeros, stamp=now, now=now)
    assert c.mode is Mode.DAMPING
    with pytest.raises(ValueError, match=r"joint names \['extra_0', 'extra_1', .*\] and 2034 more more than once"):
        c.runtime.joint_order(names)


def test_warm_up_takes_a_joint_state_whose_arrays_disagree_with_its_names() -> None:
    """The input thread keeps the last message before the controller has judged it; a cache warm-up
    on a malformed one ran into an IndexError that ended the control thread."""
    c = PolicyController(PolicyRuntime(SHIPPED), SafetyConfig(standup_s=0.0))
    now = run_to(c, Mode.RUNNING)
    names = list(c.names)
    assert c.warm_up(now + 0.5 * T, (names, list(c.default[:6]), [0.0] * 6))
    assert c.warm_up(now + 0.5 * T, (names, list(c.default), [0.0] * 3))
    assert c.mode is Mode.RUNNING and c.stats.bad_inputs == 0


def test_warm_up_between_ticks_leaves_every_command_unchanged() -> None:
    """prewarm_lead_s runs warm_up shortly before each tick: the commands must be bit-identical."""
    plain, warmed = (PolicyController(PolicyRuntime(SHIPPED), SafetyConfig(standup_s=0.2)) for _ in range(2))
    rng = np.random.default_rng(5)
    assert not warmed.warm_up(0.0), "PASSIVE: nothing to warm"
    for c in (plain, warmed):
        run_to(c, Mode.RUNNING)
    start = now = max(plain._joints.stamp, warmed._joints.stamp)
    for step in range(40):
        now = start + (step + 1) * T
        pos = np.asarray(plain.contract.default_joint_pos) + rng.normal(0, 0.05, 12)
        vel = rng.normal(0, 0.5, 12)
        for c in (plain, warmed):
            c.set_command(0.5, 0.0, 0.2, now)
            feed(c, now, pos=pos, vel=vel)
        # with another joint state to check (permuted; NaN, unknown names): nothing of it is kept
        names = [plain.names[i] for i in rng.permutation(12)]
        if step % 3 == 1:
            names[0] = "no_such_joint"
        position = rng.normal(0, 1, 12) if step % 3 else np.full(12, np.nan)
        assert warmed.warm_up(now + 0.5 * T, (names, position, rng.normal(0, 1, 12)))
        a, b = plain.tick(now), warmed.tick(now)
        np.testing.assert_array_equal(a.position, b.position)
        assert a.mode is b.mode is Mode.RUNNING
    assert warmed.stats.bad_inputs == plain.stats.bad_inputs == 0
