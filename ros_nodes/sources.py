"""Who publishes an input: one source per input topic, or a fault.

A second publisher of joint states or IMU samples (a forgotten simulator, a bag played on the
live domain, a second driver) makes the controller act on a robot that is not there; a second
controller on one robot's ``joint_commands`` makes the robot obey two. Two kinds of evidence:

- per message, the publication sequence number the middleware reports with it (each publisher
  numbers its own messages 1, 2, 3, ...): a second publisher interleaving with the first shows as
  a second run of increasing numbers that goes on beside the first. The fast path: it is checked
  on every message, and catches a second source on its first messages, whether or not the graph
  shows it yet. A publisher that restarts (numbers from 1 again) starts a new run and the old one
  never goes on: one source, no fault.
- the graph: the topic's publishers with their node names (:func:`publisher_names`), polled (a
  count is a few microseconds; the names are read only when it changes) and read at once when the
  sequence numbers disagree, so the log can name the sources. A publisher that sends nothing yet
  is a second source all the same.

:class:`SourceTracker` is ROS-free; :func:`publisher_names` is the graph query (rclpy) and
:class:`InputSources` the policy node's use of both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (not imported: the robot node and the recorder need no ONNX Runtime)
    from trot.policies.controller import PolicyController

# rmw_dds_common's names for an endpoint whose node the graph does not know (yet)
_UNKNOWN = ("_NODE_NAME_UNKNOWN_", "_NODE_NAMESPACE_UNKNOWN_")


def publisher_names(node, topic: str) -> list[str]:
    """The fully qualified node names of ``topic``'s publishers in ``node``'s graph ("/ns/robot"),
    one entry per publisher (a node with two publishers is named twice), sorted; a publisher whose
    node the graph does not know (yet) is named by its endpoint gid ("gid:0f01..."). ``topic`` is
    resolved against ``node`` (namespace, remappings)."""
    names = []
    for info in node.get_publishers_info_by_topic(node.resolve_topic_name(topic)):
        if info.node_name in _UNKNOWN or not info.node_name:
            names.append("gid:" + bytes(info.endpoint_gid).hex())
        else:
            names.append(info.node_namespace.rstrip("/") + "/" + info.node_name)
    return sorted(names)


@dataclass
class _Run:
    """One run of increasing sequence numbers: presumably one publisher's."""

    last: int
    seen: float  # when its last message came
    runs_beside: bool = False  # it went on after a later run began: two publishers at once


@dataclass
class SourceTracker:
    """The sources of one input topic, from each message's publication sequence number
    (:meth:`message`) and the graph's publisher list (:meth:`graph`). ``accepted``: node names
    allowed to publish together (for /cmd_vel: several teleop sources, deliberately); empty = one
    source only. ``quiet_s``: a run of sequence numbers without a message for this long is a source
    gone."""

    topic: str
    accepted: frozenset[str] = frozenset()
    quiet_s: float = 0.5
    name_grace_s: float = 2.0
    """With ``accepted``: how long a publisher the graph names only by its gid (its node not
    discovered yet) is waited for before it counts as not accepted."""
    publishers: list[str] = field(default_factory=list)  # the graph's, at the last look
    _runs: list[_Run] = field(default_factory=list)  # oldest first
    _unnamed_since: dict[str, float] = field(default_factory=dict)  # gid name -> first seen (monotonic)

    def __post_init__(self) -> None:
        self.accepted = frozenset(self.accepted)

    def message(self, sequence: int | None, now: float) -> bool:
        """One message with its publication ``sequence`` number (None or 0: the middleware gives
        none, nothing is learnt) at ``now`` (seconds, any monotonic clock); True when the sequence
        numbers show more than one publisher now."""
        if not sequence:
            return self.interleaved
        self.expire(now)
        # it continues the run it follows most closely; none below it: a new publisher (or a restart)
        below = [run for run in self._runs if run.last < sequence]
        if below:
            run = max(below, key=lambda r: r.last)
            run.last, run.seen = sequence, now
            if run is not self._runs[-1]:  # an older run goes on after a later one began
                run.runs_beside = True
        else:
            self._runs.append(_Run(sequence, now))
        return self.interleaved

    @property
    def interleaved(self) -> bool:
        """The sequence numbers show two publishers at once (within ``quiet_s``)."""
        return len(self._runs) > 1 and any(run.runs_beside for run in self._runs[:-1])

    def expire(self, now: float) -> None:
        """Forget runs quiet for ``quiet_s`` (a second source that stopped is gone)."""
        self._runs = [run for run in self._runs if now - run.seen <= self.quiet_s]
        if self._runs:  # (the newest run has no later one to run beside: a restart later is no fault)
            self._runs[-1].runs_beside = False

    def graph(self, publishers: Iterable[str], now: float | None = None) -> None:
        """The topic's publishers as the graph lists them now (:func:`publisher_names`); ``now``:
        time.monotonic() unless given."""
        now = time.monotonic() if now is None else now
        self.publishers = sorted(publishers)
        unnamed = [name for name in self.publishers if name.startswith("gid:")]
        self._unnamed_since = {name: self._unnamed_since.get(name, now) for name in unnamed}

    def _pending(self, now: float) -> set[str]:
        """Publishers not judged yet: with ``accepted``, those the graph has named only by gid for
        less than ``name_grace_s`` (a new process's endpoints are discovered before its node name)."""
        if not self.accepted:
            return set()
        return {name for name, since in self._unnamed_since.items() if now - since < self.name_grace_s}

    def count(self) -> int:
        """How many publishers: the graph's, or more where the sequence numbers show more."""
        live = len(self._runs) if self.interleaved else min(len(self._runs), 1)
        return max(len(self.publishers), live)

    def problem(self, now: float | None = None) -> str | None:
        """Why this input has more than one source, naming them; None when it has one (or none), or
        when every publisher the graph shows is accepted (``accepted``: several allowed; one not named
        yet is waited for: :meth:`_pending`). ``now``: time.monotonic() unless given."""
        publishers = self.publishers
        pending = self._pending(time.monotonic() if now is None else now)
        if self.accepted and publishers and all(name in self.accepted or name in pending for name in publishers):
            return None  # (deliberately several: their sequence numbers interleave, rightly)
        if len(publishers) > 1:
            unaccepted = [name for name in publishers if name not in self.accepted]
            why = f" ({', '.join(unaccepted)} not in the accepted sources)" if self.accepted else ""
            return f"{self.topic} has {len(publishers)} publishers: {', '.join(publishers)}{why}"
        if self.interleaved:
            known = f"{publishers[0]} and " if publishers else ""
            return (f"{self.topic} has more than one publisher: {known}another the graph does not show "
                    "(interleaved sequence numbers)")  # fmt: skip
        return None


def sources_problem(trackers: Sequence[SourceTracker]) -> str | None:
    """Every tracker's problem, joined; None when each input has one source."""
    problems = [p for tracker in trackers if (p := tracker.problem()) is not None]
    return "; ".join(problems) if problems else None


class InputSources:
    """The sources of a node's inputs, by label (the policy node's: joint_states, imu, cmd_vel):
    each message's sequence number comes from the thread that takes it (:meth:`message`), the graph
    is polled by one thread (:meth:`poll`), and :meth:`judge` acts on what they show. ``graph_node``:
    any node of the process's context (its graph is the process's); ``topics``: label -> resolved
    topic name; ``accepted``: label -> node names allowed to publish together."""

    def __init__(
        self, graph_node, topics: dict[str, str], accepted: dict[str, Iterable[str]] | None = None,
        poll_s: float = 0.01,
    ) -> None:  # fmt: skip
        self._node = graph_node
        accepted = accepted or {}
        self.trackers = {label: SourceTracker(topic, frozenset(accepted.get(label, ()))) for label, topic in
                         topics.items()}  # fmt: skip
        # the graph's counts cost microseconds a topic (count_publishers), the names some tens (read on a
        # change only): every poll_s, well within the 3 control periods a second source must be caught in
        self.poll_s = poll_s
        self._next_poll = 0.0
        self._lock = threading.Lock()  # the trackers' (the input and control threads feed them)
        self.judged: str | None = None  # the problem last acted on (judge)

    def message(self, label: str, info: dict, now: float) -> bool:
        """A message on input ``label`` with its take_message ``info``, at ``now`` (perf_counter);
        True when its sequence number changed what they show (then :meth:`refresh` and judge)."""
        tracker = self.trackers[label]
        with self._lock:
            before = tracker.interleaved
            return tracker.message(info.get("publication_sequence_number"), now) is not before

    def refresh(self, *labels: str) -> None:
        """Read the graph's publisher names for ``labels`` (default: every input) now."""
        for label in labels or tuple(self.trackers):
            tracker = self.trackers[label]
            names = publisher_names(self._node, tracker.topic)
            with self._lock:
                tracker.graph(names)

    def poll(self, now: float) -> float:
        """Once every poll_s (``now``: perf_counter): each topic's publisher count, the names read
        again where it changed, where a publisher's node is not known yet, or where the sequence
        numbers show a publisher the graph did not; runs of sequence numbers gone quiet forgotten.
        Returns when the next poll is due."""
        if now < self._next_poll:
            return self._next_poll
        self._next_poll = now + self.poll_s
        for label, tracker in self.trackers.items():
            with self._lock:
                tracker.expire(now)
                known, interleaved = len(tracker.publishers), tracker.interleaved
                unnamed = known > 1 and any(name.startswith("gid:") for name in tracker.publishers)
            count = self._node.count_publishers(tracker.topic)
            # (a new process's endpoints come before its node names: read until the graph has them, for
            # the log that names the sources)
            if count != known or unnamed or (interleaved and count < 2):
                self.refresh(label)
        return self._next_poll

    def problem(self) -> str | None:
        """:func:`sources_problem` over every input."""
        with self._lock:
            return sources_problem(list(self.trackers.values()))

    def counts(self) -> dict[str, int]:
        """Each input's publisher count (:meth:`SourceTracker.count`)."""
        with self._lock:
            return {label: tracker.count() for label, tracker in self.trackers.items()}

    def judge(self, controller: PolicyController, now: float) -> None:
        """With the controller's lock held: a problem new or changed since the last judgement is
        logged (a WARN naming the sources, a name the graph learnt since included); while STANDUP or
        RUNNING it damps. DAMPING then holds until ~/start, which is refused while it lasts."""
        if (problem := self.problem()) == self.judged:
            return
        self.judged = problem
        if problem is None:
            controller.log("each input has one source again")
        elif controller.mode.value in ("standup", "running"):
            controller.stop(now, reason=f"more than one source: {problem}")  # (a WARN: not "requested")
        else:
            controller.warn(f"more than one source: {problem}")
