"""trot.testing.stalls: the rule that may excuse a late reaction, and the probe that measures stalls."""

import os
import signal
import time

import pytest

from trot.testing.stalls import StallProbe, judge, longest_gap


def test_an_event_beyond_the_bound_passes_only_when_a_measured_stall_covers_its_excess() -> None:
    delays = [10.0] * 19 + [75.0]
    assert judge(delays, [0.0] * 19 + [15.0], bound=60.0).ok  # excess 15, stall 15
    late = judge(delays, [0.0] * 19 + [14.9], bound=60.0)
    assert not late.ok and late.unexplained == [(75.0, 14.9)]
    # a stall elsewhere does not excuse it (stalls are per event)
    assert not judge(delays, [50.0] + [0.0] * 19, bound=60.0).ok
    # a missed event (inf) is never explained
    assert not judge([10.0, float("inf")], [0.0, 1e9], bound=60.0, share=0.0).ok


def test_at_least_the_share_within_the_bound_even_when_every_exceedance_is_explained() -> None:
    assert judge([10.0] * 19 + [70.0], [0.0] * 19 + [20.0], bound=60.0, share=0.95).ok  # 19/20
    two = judge([10.0] * 18 + [70.0] * 2, [0.0] * 18 + [20.0] * 2, bound=60.0, share=0.95)
    assert not two.ok and not two.unexplained  # 18/20 < 95 %
    assert judge([70.0], [20.0], bound=60.0, share=0.0).ok  # a single event: within or explained
    assert not judge([], [], bound=60.0).ok  # no events judged is no verdict


def test_the_longest_gap_is_the_stall_of_the_stream_that_ends_in_the_window() -> None:
    stamps = [0.00, 0.02, 0.04, 0.10, 0.12, 0.30]
    assert longest_gap(stamps, 0.0, 0.12, period=0.02) == pytest.approx(0.04)  # 0.04 -> 0.10
    assert longest_gap(stamps, 0.0, 0.31, period=0.02) == pytest.approx(0.16)  # 0.12 -> 0.30
    assert longest_gap(stamps, 0.11, 0.29, period=0.02) == pytest.approx(0.0)  # 0.10 -> 0.12 only
    assert longest_gap(stamps[:3], 0.0, 1.0, period=0.02) == pytest.approx(0.0)


def test_the_probe_measures_a_stall_of_its_process_and_nothing_where_there_was_none() -> None:
    probe = StallProbe(threshold_s=0.004)
    try:
        time.sleep(0.5)  # started
        os.kill(probe._proc.pid, signal.SIGSTOP)  # descheduled, as a stalled host would leave it
        t0 = time.time()
        time.sleep(0.15)
        os.kill(probe._proc.pid, signal.SIGCONT)
        t1 = time.time()
        time.sleep(0.3)
        assert 0.12 <= probe.longest(t0 - 0.01, t1 + 0.01) <= 0.5
        assert probe.longest(t1 + 0.1, t1 + 0.2) < 0.1  # (this 2-core machine may stall a few ms anywhere)
    finally:
        probe.close()
