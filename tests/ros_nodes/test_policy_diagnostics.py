"""trot.ros_nodes.policy_diagnostics without a node: the timing samples and their figures."""

import numpy as np
import pytest

from trot.ros_nodes.policy_diagnostics import TIMING_KEYS, TickTimes, timing_figures


def test_tick_periods_skip_the_first_tick_and_a_jump_back_and_keep_the_last_samples() -> None:
    times = TickTimes(keep=5)
    for at in (10.0, 10.02, 10.04, 5.0, 5.02):  # simulated time jumped back at 5.0
        times.ticked(at)
    assert list(times.periods) == pytest.approx([0.02, 0.02, 0.02])
    times.last_tick = None  # (the control loop after a clock jump)
    times.ticked(7.0)
    assert len(times.periods) == 3
    for k in range(10):
        times.ticked(7.0 + 0.01 * (k + 1))
    assert len(times.periods) == 5


def test_timing_figures_name_every_diagnostics_key_once_samples_exist() -> None:
    assert timing_figures(0.02, *(np.array([]),) * 4) == {}
    times = TickTimes()
    for k in range(101):
        times.ticked(0.02 * k + (0.001 if k == 50 else 0.0))
        times.infer_s.append(0.0005)
        times.delivery_s.append(0.0001)
        times.reaction_s.append(0.0002)
    figures = times.figures(0.02)
    assert set(figures) == set(TIMING_KEYS)
    assert figures["loop_rate_hz"] == pytest.approx(50.0)
    assert figures["period_max_ms"] == pytest.approx(21.0)
    assert figures["inference_ms_p99"] == pytest.approx(0.5)
    assert figures["reaction_ms_p50"] == pytest.approx(0.2)
    assert set(times.figures(0.02, last=10)) == set(TIMING_KEYS)
    times.delivery_s.clear()
    times.reaction_s.clear()
    assert "reaction_ms_p50" not in times.figures(0.02) and "joint_state_delivery_ms_p99" not in times.figures(0.02)
