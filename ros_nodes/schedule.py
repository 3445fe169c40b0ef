"""When the policy node ticks, warms its caches and busy-waits: the schedule, without ROS.

Two triggers (``PolicyNodeParams.control_trigger``):

- ``timer``: :class:`DeadlineSchedule` ticks on absolute deadlines a control period apart on the
  control clock (integer nanoseconds: ROS time, which follows /clock with use_sim_time). A late
  tick does not move the ones after it; ticks an overrun missed are skipped, not burst; a clock
  that jumps (forward by more than ``clock_jump_s``, backward by more than a period) re-anchors
  the deadlines at its new time.
- ``joint_states``: :class:`SampleSchedule` ticks on a fresh joint state that arrives from a
  quarter period before its tick is due (:func:`next_event_tick`), and projects when the next
  samples are expected, to warm the caches and busy-wait for them.

Warming up (``prewarm_lead_s``) runs the policy once on the current inputs shortly before a tick,
result thrown away, so that its weights and code are back in the CPU caches when the tick comes.
Busy-waiting (``busy_wait_s``) keeps the CPU awake instead of sleeping through the last stretch
before a tick: a CPU that went idle takes time to wake.
"""

from __future__ import annotations

import enum
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple


def prewarm_in_effect(prewarm_lead_s: float, period: float, sim_time: bool) -> float:
    """``prewarm_lead_s``, or 0 when it is not below half a control period (at such rates the ticks
    themselves keep the caches warm, and a warm-up would double the work per period) or with
    use_sim_time (a simulation or replay, often faster than real time: CPU matters more there than
    a fraction of a millisecond of latency)."""
    if prewarm_lead_s >= 0.5 * period or sim_time:
        return 0.0
    return prewarm_lead_s


def busy_wait_in_effect(busy_wait_s: float, period: float, sim_time: bool) -> float:
    """``busy_wait_s``, at most a quarter of a control period; 0 with use_sim_time."""
    return 0.0 if sim_time else min(busy_wait_s, 0.25 * period)


class Wait(enum.Enum):
    """What the control thread does next while it waits for a deadline (:meth:`DeadlineSchedule.wait`)."""

    DUE = "due"  # the deadline came (or the clock went backwards, and waiting could take for ever): tick
    WARM_UP = "warm_up"  # the warm-up lead is reached: warm the caches (once per deadline), then ask again
    SPIN = "spin"  # within busy_wait of the deadline: yield the CPU without sleeping, then ask again
    SLEEP = "sleep"  # sleep the seconds given, then ask again


@dataclass
class DeadlineSchedule:
    """``control_trigger:=timer``: absolute deadlines on a clock of integer nanoseconds."""

    period: int
    """The control period, ns."""
    jump: int
    """A forward step of the clock above this between two ticks is a jump, ns (``clock_jump_s``)."""
    lead: int = 0
    """Warm up this long before each deadline, ns (``prewarm_lead_s`` in effect); 0 = off."""
    spin: int = 0
    """Busy-wait this long before each deadline, ns (``busy_wait_s`` in effect); 0 = off."""
    max_nap_s: float = 0.1
    """The longest single sleep: on the wall clock a bound on noticing a deactivation; with sim
    time (/clock may run at any rate) the clock is polled, every millisecond."""
    deadline: int = 0
    last: int = 0
    """The clock at the last tick; 0 before the first (with sim time also until /clock arrives)."""
    _warm: bool = False

    def start(self, now: int) -> None:
        """The schedule begins at ``now``: the first deadline is a period later."""
        self.deadline = self.last = now

    def advance(self, not_before: int | None = None) -> int:
        """The next deadline: a period after the last one (absolute, whenever the last tick ran), and
        not before ``not_before``."""
        self.deadline += self.period
        if not_before is not None:
            self.deadline = max(self.deadline, not_before)
        self._warm = self.lead > 0
        return self.deadline

    def wait(self, now: int) -> tuple[Wait, float]:
        """What to do at ``now`` before the deadline, and (SLEEP) for how many seconds."""
        remaining = self.deadline - now
        if remaining <= 0 or now < self.last - self.period:
            return Wait.DUE, 0.0
        if self._warm and remaining <= self.lead:
            self._warm = False
            return Wait.WARM_UP, 0.0
        if remaining <= self.spin:
            return Wait.SPIN, 0.0
        nap = remaining - max(self.lead if self._warm else 0, self.spin)
        return Wait.SLEEP, min(nap * 1e-9, self.max_nap_s)

    def wait_for_deadline(
        self, clock: Callable[[], int], active: Callable[[], bool], warm_up: Callable[[], None]
    ) -> None:
        """Until the deadline (or until ``active()`` is False): sleeps, warms up and busy-waits as
        :meth:`wait` says, on ``clock`` (ns)."""
        while active():
            step, nap = self.wait(clock())
            if step is Wait.DUE:
                return
            if step is Wait.WARM_UP:
                warm_up()
            elif step is Wait.SPIN:
                os.sched_yield()  # (the CPU stays awake; other threads may take the GIL)
            else:
                time.sleep(nap)

    def arrived(self, now: int) -> int | None:
        """The wait ended at ``now``: how far the clock jumped since the last tick (ns) when it did,
        else None (also at the first tick). After a jump, or at the first tick, the deadlines start
        again from ``now``."""
        jumped = None
        if not self.last or now < self.last - self.period or now > self.last + self.jump:
            if self.last:
                jumped = now - self.last
            self.deadline = now
        self.last = now
        return jumped

    def skip_overrun(self, now: int) -> int:
        """After a tick that ended at ``now``: the deadlines it overran by more than a period, skipped
        (the schedule moves on instead of bursting ticks to catch up); their number."""
        behind = now - self.deadline
        if behind <= self.period:
            return 0
        skipped = behind // self.period
        self.deadline += skipped * self.period
        return skipped


class EventTick(NamedTuple):
    """A joint state that ticks (``next_event_tick``): when the next tick is due, and whether the
    sample came a period or more late (the first one, a driver's stall or restart), so that the
    arrival times of the ticks before no longer project when the next samples come."""

    due: float
    late: bool


def next_event_tick(due: float, arrival: float, period: float) -> EventTick | None:
    """``control_trigger:=joint_states``: does a fresh joint state arriving at ``arrival`` tick,
    with the next tick due at ``due`` (0: none yet)? None if not.

    A sample ticks from a quarter period before its due time: a driver at the control rate ticks
    every sample despite its jitter, a faster one is decimated to the control rate (ticks due a
    period apart). A sample a period or more late means the driver stalled and keeps its phase:
    the due time moves on along its grid (past this sample), so the sample that catches up,
    sooner than a period after, ticks as well (re-anchored at the late sample instead, it would
    come early and wait most of a period for the watchdog's tick). The first sample, or one after
    a gap of 4 periods or more (a driver restarted, at any phase), starts the grid anew.
    """
    behind = arrival - due
    if behind < -0.25 * period:
        return None
    if behind < period:
        return EventTick(due + period, late=False)
    if due > 0 and behind < 4 * period:
        return EventTick(due + (math.floor(behind / period) + 1) * period, late=True)
    return EventTick(arrival + period, late=True)


@dataclass
class SampleSchedule:
    """``control_trigger:=joint_states``: which samples tick, and when the next ones are expected.
    Times are ``time.perf_counter()`` seconds; the settings are those of the configured node."""

    period: float = 0.0
    """The control period, s."""
    lead: float = 0.0
    """``prewarm_lead_s`` in effect, s; 0 = off."""
    spin: float = 0.0
    """``busy_wait_s`` in effect, s; 0 = off."""
    due: float = 0.0
    """When the next tick is due; 0 before the first."""
    last_tick: float = 0.0
    """The arrival of the joint state that ticked last."""
    cycle_start: float | None = None
    """The first sample's (IMU or joint state) arrival since the last tick; None before one."""
    cycle_starts: deque[float] = field(default_factory=lambda: deque(maxlen=4))
    """... and those of the last ticks (what projects the next samples)."""
    warmed_after: float = 0.0
    """The cycle start the last warm-up followed."""

    def sample_arrived(self, arrival: float) -> None:
        """A joint state or IMU sample arrived."""
        if self.cycle_start is None:
            self.cycle_start = arrival

    def ticks(self, arrival: float) -> bool:
        """Does a fresh joint state arriving at ``arrival`` tick (:func:`next_event_tick`)? When it
        does, the schedule moves on to the next tick."""
        if (tick := next_event_tick(self.due, arrival, self.period)) is None:
            return False
        if tick.late:  # the first tick, a stall or a restart: the cycle history projects no more
            self.cycle_starts.clear()
        self.due = tick.due
        self.last_tick = arrival
        self.cycle_starts.append(self.cycle_start)
        self.cycle_start = None
        return True

    def expected(self) -> float | None:
        """When the next tick's samples are expected, or None (no tick yet): a driver at the control
        rate sends them a period after the first sample of the last tick (the earliest such
        projection of the last four ticks: one late delivery must not make the warm-up late too,
        running into the next sample); a faster driver as soon as a tick may fire."""
        starts, period = self.cycle_starts, self.period
        if not starts:
            return None
        expected = min(start + (len(starts) - i) * period for i, start in enumerate(starts))
        return max(expected, self.due - 0.25 * period)

    def warm_up_at(self, expected: float | None) -> float | None:
        """When to warm the caches for the next tick (once per tick, ``lead`` before its samples are
        ``expected``), or None."""
        if self.lead <= 0 or expected is None or self.warmed_after == self.cycle_starts[-1]:
            return None
        return expected - self.lead

    def warmed(self) -> None:
        """The warm-up for the next tick ran."""
        self.warmed_after = self.cycle_starts[-1]

    def busy_wait_window(self, expected: float | None) -> tuple[float | None, float]:
        """(from, until): ``spin`` either side of when the next tick's samples are ``expected``, and on
        until ``spin`` after the first of them arrived (a driver sends IMU and joint state one after
        the other); (None, 0) when off. Once the tick ran, the next window is a period later."""
        if self.spin <= 0 or expected is None:
            return None, 0.0
        first = self.cycle_start  # (None until a sample arrived since the last tick)
        return expected - self.spin, max(expected, first or expected) + self.spin
