"""trot recorder node: chosen topics into one rosbag2 bag (MCAP, version 8) per episode.

Subscribes raw (CDR bytes straight into the bag: no deserialize/serialize round trip), finds each
topic's type from the graph as soon as a publisher appears, stamps each message with the time the
middleware received it (the node clock with use_sim_time), like ``ros2 bag record``. ~/split
(std_srvs/Trigger) ends the episode's bag and starts the next. SIGINT/SIGTERM close the bag
cleanly; after a SIGKILL, ``trot bag recover BAG`` restores all but the last ``flush_period_s``.

Which publisher each message came from: rclpy gives no publisher identity per message, so the bag's
``/trot/sources`` topic holds each recorded topic's publishers (node names, from the graph) at every
episode start and whenever they change, and the topics whose publication sequence numbers show two
publishers at once (:mod:`trot.replay.sources`): a replay shows when a second source appeared.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import importlib
import itertools
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rclpy
from rclpy._rclpy_pybind11 import InvalidHandle
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import WriterError
from std_msgs.msg import String
from std_srvs.srv import Trigger

from trot.policies.settings import above, unsound
from trot.replay.bag import EpisodeBag, register_type
from trot.replay.sources import SOURCES_TOPIC, SOURCES_TYPE, encode
from trot.ros_nodes.params import declare, doc, fail, spin_node
from trot.ros_nodes.sources import SourceTracker, publisher_names

SOURCES_POLL_S = 0.05  # how often the graph's publishers of the recorded topics are looked at

# relative names follow the node's namespace (two robots side by side); /diagnostics is global by convention
DEFAULT_TOPICS = [
    "joint_states",
    "imu",
    "odom",
    "cmd_vel",
    "joint_commands",
    "trot_policy/state",
    "trot_policy/parameters",
    "/diagnostics",
]


@dataclass
class RecorderParams:
    topics: list[str] = field(default_factory=lambda: list(DEFAULT_TOPICS), metadata=doc("topics to record"))
    output_dir: str = field(default="bags", metadata=doc("one sub-folder (a bag) per episode goes here"))
    bag_prefix: str = field(default="episode", metadata=doc("bag folder name: [NAMESPACE_]PREFIX_YYYYmmdd-HHMMSS_NNN"))
    flush_period_s: float = field(default=0.5, metadata=doc("most data a SIGKILL can lose"))
    policy_path: str = field(default="", metadata=doc("artifact whose hash and contract go into the metadata"))
    robot: str = field(default="", metadata=doc("robot name for the metadata (default: the artifact's)"))
    metadata: list[str] = field(default_factory=list, metadata=doc("extra episode metadata, KEY=VALUE"))


def unrecordable(type_name: str) -> str | None:
    """Why a topic of this type cannot go into a bag, or None: the bag needs the type's definition
    (the standard ones are known; others are read from their installed .msg files) and rclpy its
    Python class."""
    if problem := register_type(type_name):
        return problem
    try:
        message_class(type_name)
    except (ImportError, AttributeError, ValueError) as exc:
        return f"its type {type_name} has no Python message class here ({exc})"
    return None


def message_class(type_name: str) -> type:
    """``sensor_msgs/msg/JointState`` -> the rclpy message class."""
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


class RecorderNode(Node):
    def __init__(self, metadata: dict[str, Any] | None = None, **kwargs) -> None:
        super().__init__("trot_recorder", **kwargs)
        self.params, unknown = declare(self, RecorderParams)
        if unknown:
            raise ValueError(f"unknown parameters {unknown} (check the parameter file)")
        if problems := unsound(self.params, {"flush_period_s": above(0)}):  # (NaN: rclpy's "cannot convert
            raise ValueError("; ".join(problems))  # float NaN to integer" from the flush timer)
        self.static_metadata = self._metadata(metadata or {})
        self.topics = [self.resolve_topic_name(t) for t in self.params.topics]
        self.types: dict[str, str] = {}
        self._unrecordable: set[str] = set()  # topics refused, named once in the log
        self.episode = 0
        self.received = 0  # messages taken (spin_node's drain watches it)
        self.bags: list[Path] = []
        self._lock = threading.Lock()
        self.bag: EpisodeBag | None = None
        self._latched: dict[str, bytes | None] = {}  # transient-local topics: their last message
        self._sim_time = bool(self.get_parameter("use_sim_time").value)
        self._last_stamp = 0  # ns: the newest log time written
        # the recorded topics' sources (written to SOURCES_TOPIC): the graph's publishers, polled
        # (a count per topic is microseconds; the names are read when it changes, and once a second
        # in case one publisher replaced another), and per message the sequence numbers (intake thread)
        self._topic_publishers: dict[str, list[str]] = {topic: [] for topic in self.topics}
        self._interleaved: set[str] = set()
        self._trackers: dict[str, SourceTracker] = {}  # the intake thread's
        self._source_polls = 0
        # The recorded topics' subscriptions live on a companion node that no executor waits on:
        # one thread waits on them all and takes every message that is in at each wake-up. rclpy's
        # executor rebuilds its wait set and runs its task machinery per message; at ~800 messages
        # a second that was half a core of Python, and in `trot deploy`'s shared process (one GIL
        # with the simulator and the policy) it starved the simulator's thread by up to 0.2 s.
        self._intake = rclpy.create_node(
            f"{self.get_name()}_intake", namespace=self.get_namespace(), context=self.context,
            use_global_arguments=False, start_parameter_services=False, enable_rosout=False,
        )  # fmt: skip
        self._intake_topics: dict[Any, str] = {}  # subscription -> its (resolved) topic
        self._intake_wake = self._intake.create_guard_condition(lambda: None)
        self._intake_serving = True
        self._open_bag()
        self._discover()
        self._discovery = self.create_timer(0.2, self._discover)
        self._sources_timer = self.create_timer(SOURCES_POLL_S, self._poll_sources)
        self._flush_timer = self.create_timer(self.params.flush_period_s, self._flush)
        self.create_service(Trigger, "~/split", self._srv_split)
        self._intake_thread = threading.Thread(target=self._serve_intake, name="trot_recorder_intake", daemon=True)
        self._intake_thread.start()

    def _metadata(self, extra: dict[str, Any]) -> dict[str, Any]:
        p = self.params
        meta: dict[str, Any] = {"recorder": "trot", "topics": ",".join(p.topics)}
        if p.policy_path:
            from trot.policies.artifact import read_artifact

            onnx_bytes, contract = read_artifact(p.policy_path)
            sha = hashlib.sha256(onnx_bytes).hexdigest()
            meta |= {"policy_path": str(p.policy_path), "policy_sha256": sha, "robot": contract.robot}
        if p.robot:
            meta["robot"] = p.robot
        for item in p.metadata:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"metadata entry {item!r} is not KEY=VALUE")
            meta[key] = value
        return meta | {k: v if isinstance(v, str) else str(v) for k, v in extra.items()}

    def _open_bag(self) -> None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        ns = self.get_namespace().strip("/").replace("/", "_")  # two robots recording side by side
        prefix = f"{ns}_{self.params.bag_prefix}" if ns else self.params.bag_prefix
        path = Path(self.params.output_dir) / f"{prefix}_{stamp}_{self.episode:03d}"
        for n in itertools.count(1):  # a recorder respawned within the second: a bag of its own
            if not path.exists():
                break
            path = path.with_name(f"{prefix}_{stamp}_{self.episode:03d}_{n}")
        meta = {**self.static_metadata, "episode": str(self.episode), "started": datetime.datetime.now().isoformat()}
        try:
            bag = EpisodeBag(path, meta, flush_period_s=self.params.flush_period_s, on_error=self._write_failed)
        except (OSError, WriterError) as exc:  # WriterError: another recorder took the name since (a race)
            self.bag = None
            self.get_logger().error(f"cannot open bag {path}: {exc}; not recording episode {self.episode}")
            return
        for topic, type_name in (*self.types.items(), (SOURCES_TOPIC, SOURCES_TYPE)):
            bag.add_topic(topic, type_name)
        now = self.get_clock().now().nanoseconds
        if not self._sim_time:  # (reception stamps that follow must not go back before it)
            now = self._last_stamp = max(now, self._last_stamp)
        for topic, raw in self._latched.items():  # a latched topic's last message opens every episode
            if raw is not None:
                bag.write(topic, now, raw)
        bag.write(SOURCES_TOPIC, now, self._sources_message())  # (and so do the sources)
        self.bag = bag
        self.bags.append(path)
        self.get_logger().info(f"recording episode {self.episode} to {path}")

    def _discover(self) -> None:
        """Subscribe each wanted topic once its type is known (a publisher exists)."""
        missing = [t for t in self.topics if t not in self.types]
        if not missing:
            return
        known = dict(self.get_topic_names_and_types())
        for topic in missing:
            if topic in known and topic not in self._unrecordable:
                type_name = known[topic][0]
                if problem := unrecordable(type_name):
                    self._unrecordable.add(topic)
                    self.get_logger().error(f"not recording {topic}: {problem}; the other topics are recorded")
                    continue
                self.types[topic] = type_name
                with self._lock:
                    if self.bag is not None:
                        self.bag.add_topic(topic, type_name)
                qos = self._qos_for(topic)
                if qos.durability == DurabilityPolicy.TRANSIENT_LOCAL:
                    self._latched[topic] = None
                sub = self._intake.create_subscription(message_class(type_name), topic, lambda raw: None, qos, raw=True)
                self._intake_topics[sub] = topic
                self._intake_wake.trigger()  # (the intake thread waits on the new one too)

    def _sources_message(self) -> bytes:
        return serialize_message(String(data=encode(self._topic_publishers, sorted(self._interleaved))))

    def _write_sources(self, stamp: int | None = None) -> None:
        """The sources now (with the lock held), at ``stamp`` (default: the node clock's now)."""
        now = self.get_clock().now().nanoseconds if stamp is None else stamp
        if not self._sim_time:
            now = self._last_stamp = max(now, self._last_stamp)
        if self.bag is not None:
            self.bag.write(SOURCES_TOPIC, now, self._sources_message())

    def _poll_sources(self) -> None:
        """Each recorded topic's publishers from the graph; written when they changed."""
        self._source_polls += 1
        every_second = self._source_polls % round(1.0 / SOURCES_POLL_S) == 0
        changed = {}
        for topic, known in self._topic_publishers.items():
            # (a publisher whose node the graph does not know yet is named by its gid: looked at again)
            looked = (
                every_second or self.count_publishers(topic) != len(known) or any(n.startswith("gid:") for n in known)
            )
            if looked and (names := publisher_names(self, topic)) != known:
                changed[topic] = names
        if changed:
            with self._lock:
                self._topic_publishers.update(changed)
                self._write_sources()
            for topic, names in changed.items():
                self.get_logger().info(f"{topic}: publishers now {', '.join(names) or 'none'}")

    def _serve_intake(self) -> None:
        try:
            self._take_forever()
        except Exception:  # (a bug) recording would stop in silence: end the process, bag closed
            if self._intake_serving and self.context.ok():  # (not a teardown under us)
                fail(self, "the recorder's intake")

    def _take_forever(self) -> None:
        """Wait on every recorded topic at once; at each wake-up take all that is in, in order per topic."""
        subscriptions: list = []
        wait_set = None
        with contextlib.ExitStack() as handles, contextlib.suppress(InvalidHandle):  # InvalidHandle: shutting down
            handles.enter_context(self._intake_wake.handle)
            while self._intake_serving and self.context.ok():
                if wait_set is None or len(self._intake_topics) != len(subscriptions):  # discovery added one
                    for sub in list(self._intake_topics)[len(subscriptions) :]:
                        handles.enter_context(sub.handle)
                        subscriptions.append(sub)
                    wait_set = _rclpy.WaitSet(len(subscriptions), 1, 0, 0, 0, 0, self.context.handle)
                wait_set.clear_entities()
                for sub in subscriptions:
                    wait_set.add_subscription(sub.handle)
                wait_set.add_guard_condition(self._intake_wake.handle)
                wait_set.wait(int(0.2e9))  # (0.2 s: also a bound on noticing a shutdown)
                batch = []
                for sub in subscriptions:
                    while self._intake_serving and (taken := sub.handle.take_message(sub.msg_type, True)):
                        batch.append((taken[1].get("received_timestamp", 0), len(batch), sub, taken))
                # in reception order across topics: one topic's backlog written before another's
                # would push the other's stamps forward (the stamps of a bag may not go back)
                for _, _, sub, (raw, info) in sorted(batch, key=lambda item: item[:2]):
                    self._on_message(self._intake_topics[sub], raw, info)

    def _stop_intake(self) -> None:
        if self._intake_serving:
            self._intake_serving = False
            self._intake_wake.trigger()
            self._intake_thread.join(timeout=2.0)

    def _qos_for(self, topic: str) -> QoSProfile:
        """Match the publishers, as `ros2 bag record` does: a reliable subscription gets nothing from a
        best-effort driver, and latched (transient-local) topics deliver their last message."""
        infos = self.get_publishers_info_by_topic(topic)
        qos = QoSProfile(depth=200)
        if infos and any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in infos):
            qos.reliability = ReliabilityPolicy.BEST_EFFORT
        if infos and all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos):
            qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
        return qos

    def _on_message(self, topic: str, raw: bytes, info: dict | None = None) -> None:
        """Stamped when the middleware received it (wall clock), not when this thread got to it: in
        `trot deploy`'s shared process the thread ran up to 0.1-0.3 s behind on a loaded machine,
        and a replay then applied the commands that much late. With use_sim_time: the node clock."""
        self.received += 1
        received = (info or {}).get("received_timestamp", 0) if not self._sim_time else 0
        now = received or self.get_clock().now().nanoseconds
        interleaved = self._interleaving(topic, info)
        with self._lock:
            if received:  # in order: two topics' receptions can cross by a hair, a bag's log times may not
                now = self._last_stamp = max(now, self._last_stamp)
            if topic in self._latched:
                self._latched[topic] = raw
            if self.bag is not None:
                self.bag.write(topic, now, raw)
            if interleaved is not None:
                (self._interleaved.add if interleaved else self._interleaved.discard)(topic)
                self._write_sources(now)

    def _interleaving(self, topic: str, info: dict | None) -> bool | None:
        """Whether ``topic``'s sequence numbers show two publishers at once now, if that changed
        with this message (else None). The middleware numbers each publisher's messages; 0 or
        missing: it does not (nothing is learnt)."""
        if not (sequence := (info or {}).get("publication_sequence_number")):
            return None
        tracker = self._trackers.get(topic)
        if tracker is None:
            tracker = self._trackers[topic] = SourceTracker(topic)
        before = tracker.interleaved
        now = tracker.message(sequence, time.monotonic())
        return now if now is not before else None

    def _write_failed(self, message: str) -> None:
        self.get_logger().error(message)

    def _flush(self) -> None:
        with self._lock:
            if self.bag is not None:
                self.bag.flush()

    def split(self) -> Path | None:
        """End this episode's bag, start the next; returns the finished bag (None: none was open,
        its opening failed, with an error logged then)."""
        with self._lock:
            finished = self.bags[-1] if self.bag is not None else None
            if self.bag is not None:
                self.bag.close()
            self.episode += 1
            self._open_bag()
        return finished

    def _srv_split(self, request, response):
        finished = self.split()
        response.success = finished is not None
        response.message = str(finished) if finished else "no bag was open (see the recorder's error)"
        return response

    def close(self) -> None:
        self._stop_intake()  # (nothing is written after the bag is closed)
        with self._lock:
            if self.bag is not None and not self.bag.closed:
                self.bag.close()
                line = f"closed {self.bags[-1]}: {self.bag.counts}"
                if self.bag.error is not None:
                    line = (f"closed {self.bags[-1]} after a write error ({self.bag.error}): "
                            f"{self.bag.durable_counts} on disk, {self.bag.dropped} messages refused; "
                            "it needs `trot bag recover`")  # fmt: skip
                if self.context.ok():
                    self.get_logger().info(line)
                else:  # after SIGINT/SIGTERM /rosout is gone
                    print(f"[trot_recorder] {line}", file=sys.stderr, flush=True)

    def destroy_node(self) -> None:
        self.close()
        self._intake.destroy_node()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    # on SIGINT/SIGTERM, keep taking what DDS already delivered for a moment: nothing published
    # before the signal is lost
    return spin_node(RecorderNode, args, drain_s=0.3)


if __name__ == "__main__":
    sys.exit(main())
