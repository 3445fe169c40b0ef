"""Episode bags: rosbag2 (MCAP, metadata version 8) written and read with the `rosbags` library.

No rclpy here: messages arrive already CDR-serialized (rclpy's raw subscriptions), and reading
deserializes with the rosbags type store, so replay and analysis work on any machine.

Why version 8: Humble reads up to 8 and Jazzy reads 8 and 9, so one bag plays on both.
Why time-based chunks: the rosbags MCAP writer closes a chunk every 1 MiB, which at a few hundred
small messages per second is minutes of data; a SIGKILL would lose all of it. We close the chunk
and flush the file every ``flush_period_s`` instead, so a killed recorder loses at most that much,
and :func:`recover` turns the killed bag back into a complete, indexed one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rosbags.interfaces import Nodetype
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import McapReader
from rosbags.typesys import Stores, TypesysError, get_types_from_msg, get_typestore

BAG_VERSION = 8
EPISODE_FILE = "episode.yaml"  # written when the bag opens: the episode metadata survives a SIGKILL
MCAP_MAGIC = b"\x89MCAP0\r\n"
_typestore = None
_jazzy_types: frozenset[str] = frozenset()  # the store's own types (typestore())
_register_lock = threading.Lock()


def typestore():
    """The ROS 2 Jazzy message definitions (a superset of what trot records), and any type
    :func:`register_type` has taught it since."""
    global _typestore, _jazzy_types
    if _typestore is None:
        _typestore = get_typestore(Stores.ROS2_JAZZY)
        _jazzy_types = frozenset(_typestore.fielddefs)
    return _typestore


def _share_dirs() -> list[Path]:
    """Where ROS packages install their message files: each AMENT_PREFIX_PATH entry (a sourced ROS
    install, a workspace), then this Python's prefix (the PyPI wheels)."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    return [Path(prefix) / "share" for prefix in prefixes]


def _used_types(description: tuple) -> Iterator[str]:
    """The message types a parsed field refers to (inside arrays and sequences too)."""
    kind, detail = description
    if kind is Nodetype.NAME:
        yield detail
    elif kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
        yield from _used_types(detail[0])


def register_type(type_name: str) -> str | None:
    """Teach the type store a message type it lacks (a robot vendor's, such as a Unitree LowState,
    or one newer than the store) from its installed ``share/<package>/msg/<Name>.msg``, with every
    type that one uses, as ``ros2 bag record`` does. Returns why it cannot, or None."""
    store, found, pending = typestore(), {}, [type_name]
    while pending:
        name = pending.pop()
        if name in store.fielddefs or name in found:
            continue
        package, kind, short = (name.split("/") + ["", "", ""])[:3]
        files = [share / package / kind / f"{short}.msg" for share in _share_dirs()]
        if not (file := next((f for f in files if f.is_file()), None)):
            return (f"no definition of {name} to store in the bag (looked for {package}/{kind}/{short}.msg under "
                    f"{', '.join(str(d) for d in _share_dirs())}; source the ROS setup that has it)")  # fmt: skip
        try:
            types = get_types_from_msg(file.read_text(), name)
        except (TypesysError, OSError, UnicodeDecodeError) as exc:
            return f"cannot read the definition of {name} in {file}: {exc}"
        found |= types
        pending += [used for _, fields in types.values() for _, description in fields
                    for used in _used_types(description)]  # fmt: skip
    with _register_lock:
        store.register(found)
    return None


class EpisodeBag:
    """One episode, one bag. Thread-safe ``write``; ``close`` is idempotent.

    A write error (disk full) does not raise into the caller, who is a message callback: the bag
    stops taking messages, ``error`` holds the exception, ``on_error`` is told once, and every chunk
    flushed before (``durable_counts``) stays readable (:func:`recover` on a copy with free space).
    """

    def __init__(
        self,
        path: str | Path,
        metadata: dict[str, Any],
        flush_period_s: float = 0.5,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        try:
            (self.path / EPISODE_FILE).write_text(yaml.safe_dump(metadata, sort_keys=False))
            for key, value in metadata.items():  # also inside metadata.yaml, where `ros2 bag info` shows it
                self._writer.set_custom_data(key, value if isinstance(value, str) else json.dumps(value))
        except BaseException:  # (a full disk: the caller is told, and no writer is left open)
            with contextlib.suppress(Exception):
                self._writer.close()
            raise
        self._connections: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._flush_period = flush_period_s
        self._last_flush = time.monotonic()
        self.counts: dict[str, int] = {}
        self.durable_counts: dict[str, int] = {}  # on disk in complete chunks (flushed to the OS)
        self.dropped = 0  # messages refused after a write error
        self.error: OSError | None = None
        self._on_error = on_error or (lambda message: None)
        self.closed = False

    def add_topic(self, topic: str, msgtype: str) -> None:
        """``msgtype`` as ROS names it, e.g. ``sensor_msgs/msg/JointState``."""
        with self._lock:
            if topic not in self._connections:
                self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=typestore())
                self.counts[topic] = self.durable_counts[topic] = 0

    def write(self, topic: str, timestamp_ns: int, cdr: bytes) -> None:
        with self._lock:
            if self.closed or self.error is not None:
                self.dropped += self.error is not None
                return
            try:
                self._writer.write(self._connections[topic], timestamp_ns, cdr)
                self.counts[topic] += 1
                if time.monotonic() - self._last_flush >= self._flush_period:
                    self._flush_locked()
            except OSError as exc:
                self._failed(exc)

    def flush(self) -> None:
        with self._lock:
            if not self.closed and self.error is None:
                try:
                    self._flush_locked()
                except OSError as exc:
                    self._failed(exc)

    def _flush_locked(self) -> None:
        storage = self._writer.storage  # the rosbags McapWriter: end the pending chunk, push it to the OS
        if storage.chunk.bio.tell():
            storage.close_chunk()
        storage.bio.flush()
        self._last_flush = time.monotonic()
        self.durable_counts = dict(self.counts)

    def _failed(self, exc: OSError) -> None:
        self.error = exc
        self._on_error(
            f"cannot write {self.path}: {exc}; recording stopped. {sum(self.durable_counts.values())} messages "
            f"written before are safe on disk ({self.durable_counts}); copy the bag where there is space and run "
            "`trot bag recover` on it"
        )

    def close(self) -> None:
        """Write the MCAP summary and metadata.yaml: the bag is complete and indexed (after a write
        error the summary cannot be written either: the bag needs :func:`recover`)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            try:
                self._writer.close()
            except OSError as exc:
                if self.error is None:
                    self._failed(exc)


@dataclass
class BagMessage:
    topic: str
    msgtype: str
    timestamp_ns: int
    msg: Any  # a rosbags dataclass with the ROS field names


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The episode metadata of a bag (from its episode.yaml)."""
    file = Path(path) / EPISODE_FILE
    return yaml.safe_load(file.read_text()) if file.exists() else {}


def _learn_types(connections: list, store) -> None:
    """Types ``store`` lacks, from the definitions a bag holds for its connections (one it cannot
    parse stays unknown: reading that topic then fails, naming its type, and no other)."""
    for conn in connections:
        if conn.msgtype not in store.fielddefs and conn.msgdef.data:
            try:
                types = get_types_from_msg(conn.msgdef.data, conn.msgtype)
            except TypesysError:
                continue
            with _register_lock:
                store.register({name: t for name, t in types.items() if name not in store.fielddefs})


def read_messages(
    path: str | Path, topics: list[str] | None = None, msgtypes: set[str] | None = None
) -> Iterator[BagMessage]:
    """Every message of a bag (of these topics, of these types) in time order, deserialized. A robot's
    bag may hold its vendor's messages, which the Jazzy store cannot read: ask only for what you read."""
    store = typestore()
    with Reader(Path(path)) as reader:
        connections = [c for c in reader.connections if (topics is None or c.topic in topics)
                       and (msgtypes is None or c.msgtype in msgtypes)]  # fmt: skip
        if not connections:  # (rosbags reads every connection when given none)
            return
        if any(c.msgtype not in _jazzy_types for c in connections):  # this bag's own definitions, not
            store = get_typestore(Stores.ROS2_JAZZY)  # another's of the same name (an SDK update)
            _learn_types(connections, store)
        for conn, timestamp, raw in reader.messages(connections=connections):
            yield BagMessage(conn.topic, conn.msgtype, timestamp, store.deserialize_cdr(raw, conn.msgtype))


def topic_counts(path: str | Path) -> dict[str, int]:
    """Message count per topic as recorded in metadata.yaml."""
    with Reader(Path(path)) as reader:
        return {c.topic: c.msgcount for c in reader.connections}


def _complete_records_end(data: bytes) -> int:
    """Offset just after the last complete MCAP record (a killed writer leaves a partial one)."""
    offset = len(MCAP_MAGIC)
    while offset + 9 <= len(data):
        (length,) = struct.unpack_from("<Q", data, offset + 1)
        end = offset + 9 + length
        if end > len(data):
            break
        offset = end
    return offset


def _rebuild(source: Path, out: Path, metadata: dict[str, Any]) -> None:
    """Copy every message of a closed MCAP file into a new, complete bag; raises if any is lost
    (a full disk: EpisodeBag keeps the error rather than raising it)."""
    storage = McapReader(source)
    storage.open()
    bag = None
    try:
        bag = EpisodeBag(out, metadata, flush_period_s=1e9)
        connections = list(storage.connections)
        _learn_types(connections, typestore())
        for conn in connections:
            bag.add_topic(conn.topic, conn.msgtype)
        for conn, timestamp, raw in storage.messages(connections=connections):
            bag.write(conn.topic, timestamp, bytes(raw))
    finally:
        if bag is not None:
            bag.close()
        storage.close()
    if bag.error is not None:
        raise OSError(f"cannot write the rebuilt bag {out}: {bag.error}") from bag.error


def recover(path: str | Path) -> dict[str, int]:
    """Make a bag whose recorder was killed readable again: keep every complete chunk, rewrite the
    bag with an index and metadata.yaml (like ``ros2 bag reindex``). Returns the per-topic counts."""
    path = Path(path)
    if (path / "metadata.yaml").exists():
        try:
            return topic_counts(path)
        except Exception:  # (the rebuilt bag replaces the whole folder, metadata.yaml included)
            pass
    mcaps = sorted(path.glob("*.mcap"))
    if len(mcaps) != 1:
        raise FileNotFoundError(f"{path}: expected one .mcap file to recover, found {len(mcaps)}")
    data = mcaps[0].read_bytes()
    if not data.startswith(MCAP_MAGIC):
        raise ValueError(f"{mcaps[0]}: not an MCAP file")
    end = _complete_records_end(data)
    # close the record stream: DataEnd(crc 0), Footer(summary_start 0 -> readers scan the records)
    footer = b"\x0f" + struct.pack("<QI", 4, 0) + b"\x02" + struct.pack("<QQQI", 20, 0, 0, 0) + MCAP_MAGIC
    scratch = path.parent / f".{path.name}.recovering"
    shutil.rmtree(scratch, ignore_errors=True)
    try:  # the killed bag stays as it was until its rebuilt copy is complete; a failure leaves no scratch
        scratch.mkdir()
        (scratch / "closed.mcap").write_bytes(data[:end] + footer)
        fixed = scratch / path.name  # same folder name: the new .mcap is named after it
        _rebuild(scratch / "closed.mcap", fixed, {**read_metadata(path), "recovered": "true"})
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    path.rename(scratch / f"{path.name}.killed")
    fixed.rename(path)
    shutil.rmtree(scratch)
    return topic_counts(path)
