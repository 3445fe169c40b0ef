"""The bridge's write phase: deadlines that move toward the targets' arrivals, the rate kept."""

from __future__ import annotations

import numpy as np
import pytest

from trot.ros_nodes.write_phase import WritePhase

P = 0.002


def run(phase: WritePhase, arrivals: np.ndarray, periods: int, start: float = 100.0) -> tuple[np.ndarray, list[float]]:
    """The writer's deadlines over ``periods`` with targets arriving at ``arrivals`` (absolute times,
    sorted); each target's wait for the first write at or after it."""
    deadlines, waits, i, d = [], [], 0, start
    for _ in range(periods):
        d = phase.next_deadline(d)
        while i < len(arrivals) and arrivals[i] <= d:
            phase.arrived(arrivals[i])
            waits.append(d - arrivals[i])
            i += 1
        deadlines.append(d)
    return np.array(deadlines), waits


def test_no_arrivals_no_move() -> None:
    phase = WritePhase(P)
    assert phase.next_deadline(1.0) == 1.0 + P
    for t in (1.0001, 1.0201, 1.0401, 1.0601):  # fewer than min_arrivals
        phase.arrived(t)
    assert phase.target is None and phase.next_deadline(1.0) == 1.0 + P


@pytest.mark.parametrize("offset", [0.0003, 0.0011, 0.0019])
def test_writes_lock_just_after_a_50_hz_producer_and_the_rate_holds(offset: float) -> None:
    rng = np.random.default_rng(1)
    # a 50 Hz policy whose targets arrive at `offset` into the writer's nominal period, +-0.1 ms
    arrivals = 100.0 + offset + np.arange(1, 200) * 0.02 + rng.uniform(-1e-4, 1e-4, 199)
    deadlines, waits = run(WritePhase(P), arrivals, 1900)
    periods = np.diff(deadlines)
    assert np.abs(periods - P).max() <= 2e-5 + 1e-12  # every period within the slew
    assert (deadlines[-1] - deadlines[0]) / (len(deadlines) - 1) == pytest.approx(P, rel=2e-3)  # the rate
    late = np.array(waits[100:])  # after 2 s: locked
    assert late.max() <= 0.2e-3 + 1e-4 + 1e-9  # the spread (0.2 ms) + guard

    class Deaf(WritePhase):  # the control: nominal deadlines (nothing heard): a target waits P - offset
        def arrived(self, t: float) -> None:
            pass

    _, nominal = run(Deaf(P), arrivals, 1900)
    assert np.median(nominal) == pytest.approx(P - offset, abs=1.5e-4)


def test_a_target_just_after_a_write_moves_the_writes_later_not_a_period_earlier() -> None:
    phase = WritePhase(P)
    for k in range(10):
        phase.arrived(100.0 + 0.02 * k + 0.00005)  # just after the writer's nominal phase 0
    assert phase.target == pytest.approx(0.00015, abs=1e-9)
    assert phase.next_deadline(100.0) == pytest.approx(100.0 + P + 2e-5)  # later, by the slew


def test_arrivals_around_the_wrap_take_the_latest_across_it() -> None:
    phase = WritePhase(P)
    for k, late in enumerate([0.0019, 0.00195, 0.0, 0.00005, 0.0001]):  # spread across the period's end
        phase.arrived(100.0 + 0.02 * k + late)
    assert phase.target == pytest.approx(0.0002, abs=1e-9)  # after 0.0001, not after 0.00195


def test_bad_settings_refused() -> None:
    with pytest.raises(ValueError, match="period 0"):
        WritePhase(0.0)
    with pytest.raises(ValueError, match=r"guard_s 0\.003"):
        WritePhase(P, guard_s=0.003)
