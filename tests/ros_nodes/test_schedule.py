"""trot.ros_nodes.schedule, without ROS: the policy node's absolute deadlines (timer trigger), its
event ticks (joint_states trigger), and when it warms its caches and busy-waits."""

import time

import numpy as np
import pytest

from trot.ros_nodes.schedule import (
    DeadlineSchedule,
    SampleSchedule,
    Wait,
    busy_wait_in_effect,
    next_event_tick,
    prewarm_in_effect,
)

MS = 1_000_000  # ns
PERIOD = 20 * MS


def test_the_rclpy_free_schedule_imports_no_ros() -> None:
    import subprocess
    import sys

    code = "import sys, trot.ros_nodes.schedule; print(any(m.startswith('rclpy') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_deadlines_are_absolute_a_late_tick_does_not_move_the_next() -> None:
    s = DeadlineSchedule(period=PERIOD, jump=1000 * MS)
    s.start(5 * PERIOD)
    for k in range(1, 50):
        deadline = s.advance()
        assert deadline == (5 + k) * PERIOD
        late = (k % 7) * MS  # woken up to 6 ms late, ticking ends within the period
        assert s.arrived(deadline + late) is None
        assert s.skip_overrun(deadline + late + MS) == 0
    assert s.deadline == 54 * PERIOD


def test_ticks_an_overrun_missed_are_skipped_not_burst() -> None:
    s = DeadlineSchedule(period=PERIOD, jump=1000 * MS)
    s.start(0)
    s.arrived(s.advance())  # the tick due at 20 ms
    assert s.skip_overrun(20 * MS + 75 * MS) == 3  # it ran 75 ms: the ticks due at 40, 60 and 80 ms are skipped
    assert s.advance() == 100 * MS  # the next one is on the grid again, after the overrun's end
    assert s.wait(95 * MS) == (Wait.SLEEP, pytest.approx(0.005))
    # a tick that ends within a period of its deadline skips nothing: the next one is due at once, one tick
    s.arrived(100 * MS)
    assert s.skip_overrun(100 * MS + 18 * MS) == 0
    assert s.advance() == 120 * MS
    assert s.wait(121 * MS)[0] is Wait.DUE
    s.arrived(121 * MS)
    assert s.advance() == 140 * MS


def test_a_clock_jump_is_reported_and_the_deadlines_start_again_from_the_new_time() -> None:
    s = DeadlineSchedule(period=PERIOD, jump=1000 * MS)
    s.start(0)
    assert s.arrived(0) is None  # the first tick (with sim time: 0 until /clock arrives) is no jump
    s.advance()
    assert s.arrived(20 * MS) is None
    assert s.advance() == 40 * MS
    assert s.arrived(1020 * MS) is None  # a second since the last tick, not more than clock_jump_s: a stall
    assert s.skip_overrun(1020 * MS) == 49  # (its ticks skipped)
    assert s.advance() == 1040 * MS
    assert s.arrived(1040 * MS + 1001 * MS) == 1021 * MS  # beyond clock_jump_s since the last tick: a jump
    assert s.deadline == 2041 * MS and s.advance() == 2061 * MS
    # backwards by more than a period: the wait ends at once (the deadline would take for ever)
    assert s.wait(500 * MS)[0] is Wait.DUE
    assert s.arrived(500 * MS) == 500 * MS - 2041 * MS
    assert s.advance() == 520 * MS
    # backwards by less than a period is jitter of the clock, not a jump
    s.arrived(520 * MS)
    s.advance()
    assert s.wait(510 * MS) == (Wait.SLEEP, pytest.approx(0.03))
    assert s.arrived(540 * MS) is None


def test_the_wait_warms_up_once_at_its_lead_then_busy_waits_the_last_stretch() -> None:
    s = DeadlineSchedule(period=PERIOD, jump=1000 * MS, lead=2 * MS, spin=MS // 2, max_nap_s=0.1)
    s.start(0)
    s.advance()
    assert s.wait(5 * MS) == (Wait.SLEEP, pytest.approx(0.013))  # until the warm-up lead
    assert s.wait(18 * MS) == (Wait.WARM_UP, 0.0)
    assert s.wait(18 * MS + 100_000) == (Wait.SLEEP, pytest.approx(0.0014))  # until the busy-wait: once warm
    assert s.wait(19 * MS + 600_000) == (Wait.SPIN, 0.0)
    assert s.wait(20 * MS) == (Wait.DUE, 0.0)
    s.arrived(20 * MS)
    s.advance()  # each deadline has its warm-up
    assert s.wait(38 * MS) == (Wait.WARM_UP, 0.0)
    # without a lead or a busy-wait: one sleep to the deadline, in slices of max_nap_s
    plain = DeadlineSchedule(period=PERIOD, jump=1000 * MS, max_nap_s=0.001)
    plain.start(0)
    plain.advance()
    assert plain.wait(0) == (Wait.SLEEP, 0.001)
    assert plain.wait(19 * MS + 999_000) == (Wait.SLEEP, pytest.approx(1e-6))


def test_a_real_clock_ticks_never_early_on_the_grid_and_skips_after_an_overrun() -> None:
    period = 5 * MS
    s = DeadlineSchedule(period=period, jump=1000 * MS, spin=MS // 5)
    start = time.monotonic_ns()
    s.start(start)
    ticks, skipped = [], 0
    for k in range(30):
        deadline = s.advance()
        s.wait_for_deadline(time.monotonic_ns, lambda: True, lambda: None)
        now = time.monotonic_ns()
        assert s.arrived(now) is None
        assert now >= deadline and (deadline - start) % period == 0
        ticks.append(now)
        if k == 10:
            time.sleep(3.5 * period * 1e-9)  # a tick that overruns
        skipped += s.skip_overrun(time.monotonic_ns())
    assert skipped >= 3
    assert s.deadline >= start + (30 + skipped) * period


def test_warm_up_and_busy_wait_apply_only_where_they_help() -> None:
    assert prewarm_in_effect(0.002, 0.02, sim_time=False) == 0.002
    assert prewarm_in_effect(0.002, 0.004, sim_time=False) == 0.0  # not below half a period: the ticks keep it warm
    assert prewarm_in_effect(0.002, 0.02, sim_time=True) == 0.0
    assert busy_wait_in_effect(0.0003, 0.02, sim_time=False) == 0.0003
    assert busy_wait_in_effect(0.003, 0.002, sim_time=False) == pytest.approx(0.0005)  # a quarter period at most
    assert busy_wait_in_effect(0.0003, 0.02, sim_time=True) == 0.0


def test_samples_are_expected_a_period_after_the_earliest_projection_of_the_last_ticks() -> None:
    s = SampleSchedule(period=0.02, lead=0.002, spin=0.0003)
    assert s.expected() is None  # no tick yet
    for start in (1.000, 1.020, 1.045):  # the third delivery came 5 ms late
        s.sample_arrived(start)  # the IMU first
        s.sample_arrived(start + 0.0002)  # then the joint state, which ticks
        assert s.ticks(start + 0.0002)
    assert s.cycle_start is None and list(s.cycle_starts) == [1.000, 1.020, 1.045]
    assert s.expected() == pytest.approx(1.060)  # not 1.065: one late delivery must not make the warm-up late
    assert s.warm_up_at(s.expected()) == pytest.approx(1.058)
    s.warmed()
    assert s.warm_up_at(s.expected()) is None  # once per tick
    assert s.busy_wait_window(s.expected()) == pytest.approx((1.0597, 1.0603))
    s.sample_arrived(1.0615)  # the first of the next samples, later than expected: the window stays open past it
    assert s.busy_wait_window(s.expected())[1] == pytest.approx(1.0618)
    assert s.ticks(1.0617)
    assert s.warm_up_at(s.expected()) is not None  # the next tick's warm-up
    assert SampleSchedule(period=0.02).warm_up_at(1.0) is None  # off
    assert SampleSchedule(period=0.02).busy_wait_window(1.0) == (None, 0.0)


def test_a_late_sample_forgets_the_cycle_history() -> None:
    s = SampleSchedule(period=0.02)
    for start in (1.000, 1.020, 1.040):
        s.sample_arrived(start)
        assert s.ticks(start)
    s.sample_arrived(1.100)  # a stall of 2 periods
    assert s.ticks(1.100)
    assert list(s.cycle_starts) == [1.100] and s.expected() == pytest.approx(1.120)
    s.sample_arrived(1.105)
    assert not s.ticks(1.105)  # a faster driver's sample between ticks
    assert s.cycle_start == 1.105  # (still the first of the next tick's samples)


def event_ticks(arrivals: list[float], period: float = 0.02) -> list[float]:
    """The arrivals that tick (control_trigger:=joint_states), in order."""
    due, ticked = 0.0, []
    for arrival in arrivals:
        if (tick := next_event_tick(due, arrival, period)) is not None:
            due = tick.due
            ticked.append(arrival)
    return ticked


def test_a_driver_at_the_control_rate_ticks_every_sample_despite_jitter_and_stalls() -> None:
    rng = np.random.default_rng(0)
    grid = 100.0 + 0.02 * np.arange(500)
    arrivals = list(grid + rng.uniform(0.0, 0.004, grid.size))
    assert event_ticks(arrivals) == arrivals
    # seen in the benchmark: the driver stalls 27 ms, skips a slot, then catches up on its own grid
    # (the sample after the late one comes 14.5 ms later): both must tick, not wait for the watchdog
    stalled = [0.8854, 0.9325, 0.9470, 0.9654, 0.9853]
    assert event_ticks(stalled) == stalled
    # stalls of 1-3 periods at every phase: every sample still ticks
    for late in np.linspace(0.021, 0.075, 28):
        samples = [1.0, 1.02, 1.04 + late, *(1.06 + 0.02 * k + 0.001 for k in range(int(late / 0.02) + 1, 8))]
        assert event_ticks(samples) == samples, late


def test_a_faster_driver_is_decimated_to_the_control_rate() -> None:
    for rate in (125.0, 200.0, 500.0):
        arrivals = list(10.0 + np.arange(int(10 * rate)) / rate)
        ticks = np.array(event_ticks(arrivals))
        assert 49.0 <= (len(ticks) - 1) / (ticks[-1] - ticks[0]) <= 51.0, rate
        assert np.diff(ticks).min() >= 0.75 * 0.02 - 1e-9, rate


def test_the_tick_grid_starts_anew_at_the_first_sample_and_after_a_long_gap() -> None:
    assert next_event_tick(0.0, 5.0, 0.02) == pytest.approx((5.02, True))  # first sample
    assert next_event_tick(5.02, 5.5, 0.02) == pytest.approx((5.52, True))  # 24 periods late: a restarted driver
    assert next_event_tick(5.02, 5.0, 0.02) is None  # a faster driver's sample between ticks
    assert next_event_tick(5.02, 5.025, 0.02) == pytest.approx((5.04, False))  # on time
    assert next_event_tick(5.02, 5.045, 0.02) == pytest.approx((5.06, True))  # a stall: the grid keeps its phase
    # a driver that changed its phase by half a period: at most one sample waits, then all tick
    arrivals = [1.0 + 0.02 * k for k in range(5)] + [1.11 + 0.02 * k for k in range(20)]
    assert len(event_ticks(arrivals)) >= len(arrivals) - 1
