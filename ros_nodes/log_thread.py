"""Log lines written by a thread of their own, in order, so that the thread that queues them does
not pay for the logging call.

An rclpy log call costs about a millisecond of Python (it finds its caller's file through inspect
and realpath): made in the control thread, it would delay the very command a mode transition
makes (the first damping one). The controller's lines go through here instead.
"""

from __future__ import annotations

import queue
import threading
import traceback

from trot.ros_nodes import realtime


class LogThread:
    """Writes queued lines to ``logger`` (an rclpy logger) from a daemon thread named ``name``."""

    def __init__(self, logger, name: str) -> None:
        self._logger = logger
        self._name = name
        self._lines: queue.SimpleQueue[tuple[str, str] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name=name, daemon=True)
        self._thread.start()

    def info(self, text: str) -> None:
        self._lines.put(("info", text))

    def warn(self, text: str) -> None:
        self._lines.put(("warn", text))

    def close(self, timeout: float = 1.0) -> None:
        """After every line queued before: the thread ends (within ``timeout``)."""
        self._lines.put(None)
        self._thread.join(timeout=timeout)

    def _write(self) -> None:
        realtime.name_this_thread(self._name)
        while (line := self._lines.get()) is not None:
            level, text = line
            try:  # (one call site per severity: rclpy refuses a site whose severity changes)
                if level == "warn":
                    self._logger.warn(text)
                else:
                    self._logger.info(text)
            except Exception:  # a line lost, not every later one
                traceback.print_exc()
