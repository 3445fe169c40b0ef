"""Where in its period a fixed-rate writer writes: just after the newest targets usually arrive.

A driver that writes at a fixed rate and holds the newest target (the Unitree bridge's rt/lowcmd at
500 Hz) makes each new target wait for its next write: between 0 and a whole period, half a period
on average. :class:`WritePhase` moves the writer's deadlines, a little per period, so that the writes
come ``guard_s`` after the latest of the recent targets' arrival phases. A target then waits about
``guard_s`` plus how much earlier than the latest it came, and the rate stays the same: every period
is the nominal one within ``slew_s``.

Phases are taken on the circle of one period (arrival time modulo the period), so that a writer
and a producer at any multiple of its period (a 50 Hz policy beside a 500 Hz writer) lock, and a
target that arrives just after a write counts as late, not as a whole period early. With no
arrival yet, or too few to tell, the deadlines are the nominal ones.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np


class WritePhase:
    """The deadlines of a writer with period ``period`` (seconds, any monotonic clock).

    Thread use: :meth:`arrived` from the thread that receives targets, :meth:`next_deadline` from
    the writer's; the one value they share (:attr:`target`) is replaced whole.
    """

    def __init__(self, period: float, window: int = 50, guard_s: float = 1e-4, slew_s: float = 2e-5,
                 min_arrivals: int = 5) -> None:  # fmt: skip
        """``window``: how many recent arrivals set the phase (50: one second of a 50 Hz policy);
        ``guard_s``: how long after the latest of them to write; ``slew_s``: the most a deadline moves
        from the nominal period (the writer's period jitter this adds); ``min_arrivals``: fewer, and
        the deadlines stay nominal."""
        if not (period > 0 and 0 <= guard_s < period and 0 <= slew_s < period and window >= min_arrivals >= 1):
            raise ValueError(f"WritePhase: period {period}, window {window}, guard_s {guard_s}, slew_s {slew_s}, "
                             f"min_arrivals {min_arrivals}")  # fmt: skip
        self.period, self.guard_s, self.slew_s, self.min_arrivals = period, guard_s, slew_s, min_arrivals
        self._angles: deque[float] = deque(maxlen=window)
        self.target: float | None = None
        """The phase in [0, period) the writes aim at; None: nominal deadlines."""

    def phase(self, t: float) -> float:
        """``t`` on the circle of one period, in [0, period)."""
        return t % self.period

    def arrived(self, t: float) -> None:
        """A target arrived at ``t`` (the writer's clock)."""
        self._angles.append(2.0 * math.pi * self.phase(t) / self.period)
        if len(self._angles) < self.min_arrivals:
            return
        angles = np.fromiter(self._angles, dtype=np.float64)
        mean = math.atan2(np.sin(angles).mean(), np.cos(angles).mean())
        latest = mean + np.angle(np.exp(1j * (angles - mean))).max()  # each within half a period of the mean
        self.target = (latest * self.period / (2.0 * math.pi) + self.guard_s) % self.period

    def next_deadline(self, deadline: float) -> float:
        """The deadline after ``deadline``: one period later, moved by at most ``slew_s`` toward the
        target phase (the shorter way round)."""
        nominal = deadline + self.period
        target = self.target
        if target is None:
            return nominal
        error = (target - self.phase(nominal) + 0.5 * self.period) % self.period - 0.5 * self.period
        return nominal + min(max(error, -self.slew_s), self.slew_s)
