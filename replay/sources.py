"""Who published each recorded topic, as the recorder saw it: the ``/trot/sources`` messages of a
bag, and the timeline they make.

ROS 2 gives no publisher identity per message, so the recorder writes each recorded topic's
publisher set (fully qualified node names, from the graph) whenever it changes and at the start of
every episode, and the topics whose publication sequence numbers show two publishers at once
(a second source interleaving with the first). A std_msgs/String holding JSON::

    {"publishers": {"/joint_states": ["/trot_sim"], "/imu": ["/trot_sim"], ...},
     "interleaved": []}

A replay then shows when a second source appeared on a topic, and which node it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rosbags.rosbag2 import Reader

from trot.replay.bag import read_messages

SOURCES_TOPIC = "/trot/sources"
SOURCES_TYPE = "std_msgs/msg/String"


@dataclass
class Sources:
    """The recorded topics' publishers at one instant of a bag."""

    timestamp_ns: int
    publishers: dict[str, list[str]]  # topic -> fully qualified node names (one per publisher)
    interleaved: list[str]  # topics whose sequence numbers showed two publishers at once


def encode(publishers: dict[str, list[str]], interleaved: list[str]) -> str:
    """The JSON of one ``/trot/sources`` message."""
    return json.dumps({"publishers": {topic: sorted(names) for topic, names in sorted(publishers.items())},
                       "interleaved": sorted(interleaved)})  # fmt: skip


def read_sources(path: str | Path) -> list[Sources]:
    """Every ``/trot/sources`` message of a bag, in time order (none in a bag recorded before the
    recorder wrote them, or by another recorder)."""
    out = []
    for m in read_messages(path, topics=[SOURCES_TOPIC]):
        data = json.loads(m.msg.data)
        out.append(Sources(m.timestamp_ns, data.get("publishers", {}), data.get("interleaved", [])))
    return out


def _describe(topic: str, sources: Sources) -> str:
    names = sources.publishers.get(topic, [])
    notes = [f"{len(names)} publishers"] if len(names) > 1 else []
    if topic in sources.interleaved:
        notes.append("messages of two publishers interleaved")
    return f"{topic}: {', '.join(names) or 'no publisher'}" + (f" ({'; '.join(notes)})" if notes else "")


def timeline(changes: list[Sources], t0_ns: int) -> list[str]:
    """One line per change, ``t`` seconds after ``t0_ns``: every topic at the first, then the topics
    that changed (an episode start that changed nothing says so)."""
    lines, before = [], None
    for sources in changes:
        t = (sources.timestamp_ns - t0_ns) * 1e-9
        topics = sorted(set(sources.publishers) | set(sources.interleaved))
        if before is not None:
            topics = [topic for topic in topics if _describe(topic, sources) != _describe(topic, before)]
        several = any(len(sources.publishers.get(topic, [])) > 1 or topic in sources.interleaved for topic in topics)
        mark = "!" if several else " "
        lines.append(
            f"{mark} {t:9.3f} s  " + ("; ".join(_describe(topic, sources) for topic in topics) or "(unchanged)")
        )
        before = sources
    return lines


def several(changes: list[Sources]) -> list[str]:
    """The topics that had more than one publisher at some time (by the graph or the sequence
    numbers): a second source, or a topic with many by design (/diagnostics)."""
    return sorted({topic for sources in changes for topic, names in sources.publishers.items() if len(names) > 1}
                  | {topic for sources in changes for topic in sources.interleaved})  # fmt: skip


def sources_timeline(path: str | Path) -> tuple[list[str], list[str]]:
    """:func:`timeline` of a bag from its start and :func:`several` (([], []) when it holds no
    ``/trot/sources``)."""
    if not (changes := read_sources(path)):
        return [], []
    with Reader(Path(path)) as reader:
        start = reader.start_time
    return timeline(changes, min(start, changes[0].timestamp_ns)), several(changes)
