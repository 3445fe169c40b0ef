"""Node parameters declared up front from a typed dataclass; unknown ones are an error."""

from __future__ import annotations

import dataclasses
import faulthandler
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import rclpy
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy._rclpy_pybind11 import RCLError
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.signals import SignalHandlerOptions

T = TypeVar("T")

_TYPES = {
    "bool": ParameterType.PARAMETER_BOOL,
    "int": ParameterType.PARAMETER_INTEGER,
    "float": ParameterType.PARAMETER_DOUBLE,
    "str": ParameterType.PARAMETER_STRING,
    "list[str]": ParameterType.PARAMETER_STRING_ARRAY,
    "list[float]": ParameterType.PARAMETER_DOUBLE_ARRAY,
}
BUILTIN = {"use_sim_time"}


def declare(node: Node, spec: type[T], *more: type) -> tuple[T, list[str]] | tuple[Any, ...]:
    """Declare every field of the dataclass(es) as a parameter with its default and type.

    Returns one instance per dataclass (overrides from ``--params-file`` / ``-p`` applied) and,
    last, the names of overrides that match no declared parameter (a typo in a parameter file).
    """
    instances, declared = [], set(BUILTIN)
    for cls in (spec, *more):
        values = _declare_one(node, cls)
        declared |= set(values)
        instances.append(cls(**values))
    unknown = sorted(set(node._parameter_overrides) - declared)  # overrides given for this node
    return (*instances, unknown)


def _declare_one(node: Node, spec: type) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(spec):
        key = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        key = str(f.type) if key == "list" else key
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        # read-only: every node reads its parameters once, at start-up, so a `ros2 param set` that
        # "succeeded" would change nothing; rclpy refuses it instead, naming the parameter
        descriptor = ParameterDescriptor(type=_TYPES[key], description=f.metadata.get("doc", ""), read_only=True)
        _whole_numbers_as_floats(node, f.name, key)
        if isinstance(default, list) and not default:  # an empty list would be typed BYTE_ARRAY
            default = Parameter.Type.STRING_ARRAY if key == "list[str]" else Parameter.Type.DOUBLE_ARRAY
        value = node.declare_parameter(f.name, default, descriptor).value
        if key == "list[float]":
            value = [float(v) for v in (value or [])]
        elif key == "list[str]":
            value = list(value or [])
        values[f.name] = value
    return values


def _whole_numbers_as_floats(node: Node, name: str, key: str) -> None:
    """``rate:=2`` or ``damping_kd: 2`` for a float parameter: rclpy types it INTEGER and refuses it
    with a traceback; the number is meant, and taken as 2.0 (a list too)."""
    override = node._parameter_overrides.get(name)
    if override is None:
        return
    if key == "float" and override.type_ is Parameter.Type.INTEGER:
        node._parameter_overrides[name] = Parameter(name, value=float(override.value))
    elif key == "list[float]" and override.type_ is Parameter.Type.INTEGER_ARRAY:
        node._parameter_overrides[name] = Parameter(name, value=[float(v) for v in override.value])


def doc(text: str) -> dict[str, str]:
    return {"doc": text}


def realtime_friendly_gil() -> None:
    """A thread woken for a deadline waits for the GIL at most this long (default 5 ms), so the
    control and physics loops keep their deadlines while the executor thread runs Python."""
    sys.setswitchinterval(2e-4)


def fail(node: Node, what: str) -> None:
    """Call from ``except``: a thread the node cannot work without (a control or physics loop) raised.
    Logged as an error with its traceback, and the node is marked failed, so that spin_node ends the
    process with status 1: a node that looks alive while doing nothing hides the fault from the
    operator and from launch's ``respawn``."""
    node.get_logger().error(f"{what} failed, the node stops:\n{traceback.format_exc().rstrip()}")
    node.failed = what  # type: ignore[attr-defined]


def await_acknowledgment(node: Node, publishers: Iterable[Publisher | None], timeout_s: float = 0.5) -> None:
    """Until every reliable subscriber (a driver) has acknowledged what ``publishers`` sent (None
    entries skipped), the last command included, or ``timeout_s`` for all of them together; then a
    warning for each still waiting. A shutdown destroys the publishers next, and a reliable writer
    destroyed right after a write loses that sample if its first transmission was dropped (a busy
    reader's full queue; `bench/dds_last_sample.py`). Polled: rclpy's wait holds the GIL."""
    pending = [pub for pub in publishers if pub is not None]
    end = time.monotonic() + timeout_s
    while pending:
        pending = [pub for pub in pending if not pub.wait_for_all_acked(Duration(seconds=0))]
        if not pending or time.monotonic() > end:
            break
        time.sleep(0.001)
    for pub in pending:
        node.get_logger().warn(f"{pub.topic_name}: the last damping command was not acknowledged by "
                               f"every subscriber within {timeout_s} s")  # fmt: skip


def failed(node: Node) -> str | None:
    """What failed in ``node`` (see :func:`fail`), or None."""
    return getattr(node, "failed", None)


def spin_node(factory: Callable[[], Node], args: list[str] | None = None, drain_s: float = 0.0) -> int:
    """Run one node until SIGINT/SIGTERM (status 0) or until it is marked failed (:func:`fail`:
    status 1). Nodes keep their timing-critical loops in their own threads: rclpy's multi-threaded
    executor can starve them.

    The signals set an event that this loop checks between waits of at most 0.1 s, instead of
    rclpy's handlers shutting the context down under a waiting ``executor.spin()``, which can leave
    spin() waiting for ever after SIGTERM (the context shut down, the executor not woken).
    ``drain_s`` > 0: on the signal, go on handling what already arrived for that long before the
    node is destroyed (nothing DDS had received is dropped)."""
    if not _init(factory, args, signal_handler_options=SignalHandlerOptions.NO):
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if (node := _create(factory)) is None:
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set() and not failed(node):
            try:
                executor.spin_once(timeout_sec=0.1)
            except ExternalShutdownException:  # the node shut its context down (the player at its bag's end)
                break
        if drain_s > 0:
            _drain(executor, node, drain_s)
    finally:
        exit_if_teardown_hangs()
        node.destroy_node()
        rclpy.try_shutdown()  # (or the node did)
    return 1 if failed(node) else 0


def _drain(executor: SingleThreadedExecutor, node: Node, drain_s: float) -> None:
    """Handle what is waiting for ``drain_s``, then on until nothing is (a stalled machine must not
    cut the drain short), but never more than 2 s longer (a publisher faster than we write).
    ``node.received``, where the node has it, counts messages taken outside the executor too."""
    end, idle = time.monotonic() + drain_s, 0
    while (now := time.monotonic()) < end + 2.0:
        before = getattr(node, "received", None)
        executor.spin_once(timeout_sec=0.0)
        idle = idle + 1 if getattr(node, "received", None) == before else 0  # (a timer may have run)
        if idle >= 2 and now >= end:
            break
        if idle:
            time.sleep(0.002)


def exit_if_teardown_hangs(seconds: float = 5.0) -> None:
    """A node told to stop must stop: if tearing down (node, middleware, interpreter) takes longer
    than ``seconds``, print every thread's stack to stderr and exit with status 1."""
    faulthandler.dump_traceback_later(seconds, exit=True)


def _init(factory: Callable[[], Node], args: list[str] | None, **kwargs) -> bool:
    """rclpy.init, with a one-line error instead of a traceback for a bad command line or
    parameter file (rcl names the file and the YAML problem)."""
    try:
        rclpy.init(args=args if args is not None else sys.argv, **kwargs)
    except RCLError as exc:
        print(f"{getattr(factory, '__name__', 'node')}: cannot start: {exc}", file=sys.stderr)
        return False
    return True


def _create(factory: Callable[[], Node]) -> Node | None:
    """The node, or None after printing why not (a bad parameter, a bad config file)."""
    try:
        return factory()
    except ValueError as exc:
        print(f"{getattr(factory, '__name__', 'node')}: {exc}", file=sys.stderr)
        rclpy.shutdown()
        return None
