"""trot play node: re-publish a bag's topics over ROS 2 at their recorded pace, like `ros2 bag play`.

Messages go out as the recorded CDR bytes (no deserialization) on their recorded topic names (or
remapped), paced by the bag's receive timestamps scaled by ``rate``, from ``start_offset_s``,
optionally looping. Recorded names are absolute: a bag recorded in namespace robot1 plays on
/robot1/..., so the nodes it feeds run there. With ``clock:=true`` /clock follows the bag's time,
so nodes with use_sim_time see the recorded stamps as fresh: the policy node can then run on
logged sensor data (replay.launch.xml: policy in shadow mode, its commands on a topic nothing
drives).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field

from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rosbags.rosbag2 import Reader
from rosgraph_msgs.msg import Clock

from trot.replay.sources import SOURCES_TOPIC
from trot.ros_nodes.params import declare, doc, spin_node
from trot.ros_nodes.recorder_node import message_class


@dataclass
class PlayParams:
    bag: str = field(default="", metadata=doc("bag folder"))
    rate: float = field(default=1.0, metadata=doc("playback speed factor; 0 = as fast as possible"))
    loop: bool = field(default=False, metadata=doc("start over at the end"))
    topics: list[str] = field(
        default_factory=list, metadata=doc("topics to play; [] = all (relative names: in this node's namespace)")
    )
    exclude: list[str] = field(
        default_factory=list,
        metadata=doc("topics not to play (e.g. joint_commands: relative names in this node's namespace)"),
    )
    start_offset_s: float = field(default=0.0, metadata=doc("skip this much of the bag"))
    clock: bool = field(default=True, metadata=doc("publish /clock with the bag's time"))
    shutdown_at_end: bool = field(default=True, metadata=doc("exit when done (unless loop)"))


class PlayNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("trot_play", **kwargs)
        self.params, unknown = declare(self, PlayParams)
        if unknown:
            raise ValueError(f"unknown parameters {unknown} (check the parameter file)")
        p = self.params
        if not p.bag:
            raise ValueError("bag: no bag given (-p bag:=PATH)")
        from pathlib import Path

        try:
            self.reader = Reader(Path(p.bag))
            self.reader.open()
        except Exception as exc:
            raise ValueError(f"bag: {p.bag}: cannot read it ({exc}); a killed recording: trot bag recover") from exc
        # a bag holds absolute names (/robot1/joint_states: recorded in a namespace); a relative name
        # here means the topic in this node's namespace, so one exclude list serves every namespace
        topics, exclude = ({self.resolve_topic_name(t, only_expand=True) for t in names}  # (not remapped: the
                           for names in (p.topics, p.exclude))  # bag's names are as recorded)  # fmt: skip
        exclude.add(SOURCES_TOPIC)  # the recorder's notes on who published, not a topic to publish
        self.connections = [c for c in self.reader.connections
                            if (not topics or c.topic in topics) and c.topic not in exclude]  # fmt: skip
        self.publishers_ = {c.topic: self.create_publisher(message_class(c.msgtype), c.topic, QoSProfile(depth=100))
                            for c in self.connections}  # fmt: skip
        self.clock_pub = self.create_publisher(Clock, "/clock", 10) if p.clock else None
        self.published = 0
        self.done = threading.Event()
        self._running = True
        self._thread = threading.Thread(target=self._play, name="trot_play", daemon=True)
        self._thread.start()

    def _play(self) -> None:
        p = self.params
        start = self.reader.start_time + int(p.start_offset_s * 1e9)
        while self._running:
            wall0, last_clock = time.perf_counter(), 0
            for conn, stamp, raw in self.reader.messages(connections=self.connections, start=start):
                if not self._running:
                    break
                if p.rate > 0:
                    delay = (stamp - start) * 1e-9 / p.rate - (time.perf_counter() - wall0)
                    if delay > 0:
                        time.sleep(delay)
                if self.clock_pub is not None and stamp - last_clock >= 1_000_000:  # /clock at <= 1 kHz
                    self.clock_pub.publish(Clock(clock=Time(sec=stamp // 10**9, nanosec=stamp % 10**9)))
                    last_clock = stamp
                self.publishers_[conn.topic].publish(bytes(raw))
                self.published += 1
            if not p.loop:
                break
        self.get_logger().info(f"played {self.published} messages from {p.bag}")
        self.done.set()
        if p.shutdown_at_end and not p.loop:
            self.context.try_shutdown()

    def destroy_node(self) -> None:
        self._running = False
        self._thread.join(timeout=2.0)
        self.reader.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return spin_node(PlayNode, args)


if __name__ == "__main__":
    sys.exit(main())
