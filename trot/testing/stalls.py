"""Host stalls, measured while a timing test runs: what may excuse a reaction slower than its bound.

A timing promise ("DAMPING within 3 control periods") is checked at its number. On a loaded 2-core
machine a process can be descheduled, or the whole VM paused, for longer than that; a test then
accepts an exceedance only when it measured a stall that covers it:

- :class:`StallProbe`: a process of its own that sleeps a millisecond at a time and records every
  wake-up later than a threshold (a host or VM stall, seen from outside the processes under test);
- :func:`longest_gap`: the longest gap in a stream of stamps the process under test published
  (its own control loop stalled), less the stream's period.

:func:`judge` applies the rule: at least ``share`` of the events within the bound, and every event
beyond it explained by a stall at least as long as its excess.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_PROBE = """
import sys, time
threshold = float(sys.argv[1])
while True:
    expected = time.time() + 0.001
    time.sleep(0.001)
    late = time.time() - expected
    if late > threshold:
        print(f"{expected:.6f} {late:.6f}", flush=True)
"""


class StallProbe:
    """Records host stalls (a 1 ms sleep that wakes more than ``threshold_s`` late) from its start
    until :meth:`close`, in a process of its own."""

    def __init__(self, threshold_s: float = 0.004) -> None:
        self._stalls: list[tuple[float, float]] = []  # (from, to), wall clock
        self._lock = threading.Lock()
        self._proc = subprocess.Popen([sys.executable, "-c", _PROBE, str(threshold_s)], stdout=subprocess.PIPE,
                                      stdin=subprocess.DEVNULL, text=True)  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            start, late = (float(x) for x in line.split())
            with self._lock:
                self._stalls.append((start, start + late))

    def longest(self, t0: float, t1: float) -> float:
        """The longest stall overlapping the wall-clock interval [t0, t1], seconds (its part inside)."""
        with self._lock:
            return max((min(b, t1) - max(a, t0) for a, b in self._stalls if a < t1 and b > t0), default=0.0)

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait()
        self._reader.join(timeout=1.0)


def longest_gap(stamps: Iterable[float], t0: float, t1: float, period: float) -> float:
    """The longest gap between consecutive ``stamps`` that ends in [t0, t1], less ``period``
    (0 when the stream kept its period): how long the process publishing them stalled there."""
    s = sorted(stamps)
    gaps = [b - a for a, b in itertools.pairwise(s) if t0 < b <= t1]
    return max(0.0, max(gaps, default=0.0) - period)


@dataclass
class Verdict:
    """Events against a bound: within it, beyond it but explained by a measured stall, unexplained."""

    bound: float
    within: int
    explained: list[tuple[float, float]]  # (delay, stall) of each explained exceedance
    unexplained: list[tuple[float, float]]
    share: float

    @property
    def ok(self) -> bool:
        n = self.within + len(self.explained) + len(self.unexplained)
        return not self.unexplained and n > 0 and self.within >= self.share * n

    def __str__(self) -> str:
        n = self.within + len(self.explained) + len(self.unexplained)
        fmt = lambda pairs: ", ".join(f"{d:.4g} (stall {s:.4g})" for d, s in pairs)  # noqa: E731
        return (f"{self.within}/{n} within {self.bound:.4g} (>= {self.share:.0%} needed); explained by a "
                f"measured stall: [{fmt(self.explained)}]; unexplained: [{fmt(self.unexplained)}]")  # fmt: skip


def judge(delays: Sequence[float], stalls: Sequence[float], bound: float, share: float = 0.95) -> Verdict:
    """Each delay against ``bound``: beyond it, the event is explained only by a stall measured
    during it that is at least as long as the excess."""
    within, explained, unexplained = 0, [], []
    for delay, stall in zip(delays, stalls, strict=True):
        if delay <= bound:
            within += 1
        elif delay - bound <= stall:
            explained.append((delay, stall))
        else:
            unexplained.append((delay, stall))
    return Verdict(bound, within, explained, unexplained, share)
