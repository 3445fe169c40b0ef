"""What the policy node reports about itself: its timing samples, the figures made of them
(PolicyNode.timing) and its /diagnostics status."""

from __future__ import annotations

from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from trot.policies.controller import Mode, PolicyController
from trot.ros_nodes.realtime import GcPauses

# the timing figures /diagnostics shows, in this order ("n/a" until the samples exist)
TIMING_KEYS = (
    "loop_rate_hz", "period_jitter_p50_ms", "period_jitter_p99_ms", "period_max_ms", "inference_ms_p99",
    "joint_state_delivery_ms_p50", "joint_state_delivery_ms_p99", "reaction_ms_p50", "reaction_ms_p99",
)  # fmt: skip


def timing_figures(
    period: float, periods: np.ndarray, infer_s: np.ndarray, delivery_s: np.ndarray, reaction_s: np.ndarray
) -> dict[str, float]:
    """PolicyNode.timing's figures from its samples (seconds each); {} before the first ticks."""
    if not periods.size:
        return {}
    jitter = np.abs(periods - period)
    figures = {
        "loop_rate_hz": float(1 / periods.mean()),
        "period_jitter_p50_ms": float(np.percentile(jitter, 50) * 1e3),
        "period_jitter_p99_ms": float(np.percentile(jitter, 99) * 1e3),
        "period_max_ms": float(periods.max() * 1e3),  # a one-off stall, which p99 can hide
        "inference_ms_p99": float(np.percentile(infer_s, 99) * 1e3) if infer_s.size else float("nan"),
    }
    for name, samples in (("joint_state_delivery", delivery_s), ("reaction", reaction_s)):
        if samples.size:
            figures[f"{name}_ms_p50"], figures[f"{name}_ms_p99"] = np.percentile(samples * 1e3, [50, 99]).tolist()
    return figures


class TickTimes:
    """The last 1000 of each timing sample, seconds: tick periods (on the robot's clock: simulated
    with use_sim_time, else the monotonic wall clock), inference, and where a joint state's latency
    goes: DDS delivery (the driver's publication to this process's reception: DDS timestamps,
    meaningful with synchronised clocks) and, in joint_states mode, this node's reaction
    (reception to the command's publication)."""

    def __init__(self, keep: int = 1000) -> None:
        self.periods: deque[float] = deque(maxlen=keep)
        self.infer_s: deque[float] = deque(maxlen=keep)
        self.delivery_s: deque[float] = deque(maxlen=keep)
        self.reaction_s: deque[float] = deque(maxlen=keep)
        self.js_received_ns = 0  # the last joint state's reception (DDS timestamp; 0: the RMW has none)
        self.last_tick: float | None = None  # None: the next tick starts no period (the first, or after a jump)

    def ticked(self, at: float) -> None:
        """A tick at ``at``: the period since the last one (none across a jump back in simulated time)."""
        if self.last_tick is not None and at > self.last_tick:
            self.periods.append(at - self.last_tick)
        self.last_tick = at

    def figures(self, period: float, last: int = 1000) -> dict[str, float]:
        """:func:`timing_figures` over the ``last`` samples of each."""
        return timing_figures(period, *(np.array(samples)[-last:] for samples in (
            self.periods, self.infer_s, self.delivery_s, self.reaction_s)))  # fmt: skip


def diagnostic_status(
    name: str, c: PolicyController, timing: dict[str, float], now: float, overruns: int, warm_ups: int, gc: GcPauses,
    publishers: dict[str, int] | None = None,
) -> DiagnosticArray:  # fmt: skip
    """The node's /diagnostics message (unstamped): mode (WARN in DAMPING), timing, sample ages, the
    fault counters and each input's publisher count (``publishers``: input -> count; one is right)."""
    status = DiagnosticStatus(name=name, hardware_id=c.contract.robot)
    status.level = DiagnosticStatus.OK if c.mode is not Mode.DAMPING else DiagnosticStatus.WARN
    status.message = c.mode.value
    values = {
        "state": c.mode.value,
        **{key: f"{timing[key]:.3f}" if key in timing else "n/a" for key in TIMING_KEYS},
        "joint_state_age_ms": f"{(now - c._joints.stamp) * 1e3:.1f}",
        "imu_age_ms": f"{(now - c._imu.stamp) * 1e3:.1f}",
        "watchdog_trips": str(c.stats.watchdog_trips),
        "overruns": str(overruns),
        "cache_warm_ups": str(warm_ups),
        "bad_inputs": str(c.stats.bad_inputs),
        "stale_samples_dropped": str(c.stats.stale_dropped),
        "clock_jumps": str(c.stats.clock_jumps),
        "gc_collections": str(gc.count),
        "gc_pause_max_ms": f"{gc.longest_s * 1e3:.2f}",
        **{f"{label}_publishers": str(count) for label, count in (publishers or {}).items()},
    }
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    return DiagnosticArray(status=[status])
