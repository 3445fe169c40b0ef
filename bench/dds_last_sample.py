"""Does a reliable DDS writer destroyed right after a write lose that last sample?

Why the policy node waits for acknowledgments before its publishers go (its last damping command).
A child process publishes a burst of ``--burst`` messages (reliable, depth 10) to this process,
whose reader is slow (it takes messages every 30 ms), then destroys the publisher: at once, or after
``wait_for_all_acked``. Each variant runs ``--trials`` times; printed: how often the last message of
the burst never arrived. Real rclpy and Fast DDS across processes.

    python bench/dds_last_sample.py [--trials 30] [--burst 50]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

CHILD = r"""
import sys, time, rclpy
from rclpy.duration import Duration
from rclpy.node import Node
from std_msgs.msg import Int32
rclpy.init()
node = Node("burst")
pub = node.create_publisher(Int32, "burst", 10)
while pub.get_subscription_count() == 0:
    time.sleep(0.01)
time.sleep(0.5)
for i in range(int(sys.argv[1])):
    pub.publish(Int32(data=i))
if sys.argv[2] == "wait":
    pub.wait_for_all_acked(Duration(seconds=1.0))
node.destroy_publisher(pub)
node.destroy_node()
rclpy.shutdown()
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--burst", type=int, default=50)
    a = parser.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", "201")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from rclpy.node import Node
    from std_msgs.msg import Int32

    rclpy.init()
    node = Node("slow_reader")
    got: list[int] = []
    node.create_subscription(Int32, "burst", lambda m: got.append(m.data), 10)
    for variant in ("destroyed at once", "wait"):
        lost = 0
        for _ in range(a.trials):
            got.clear()
            child = subprocess.Popen([sys.executable, "-c", CHILD, str(a.burst), variant])
            while child.poll() is None:  # a slow reader
                rclpy.spin_once(node, timeout_sec=0.0)
                time.sleep(0.03)
            end = time.time() + 1.0  # whatever is still on its way
            while time.time() < end:
                rclpy.spin_once(node, timeout_sec=0.05)
            lost += a.burst - 1 not in got
        label = "after wait_for_all_acked" if variant == "wait" else variant
        print(f"writer {label}: the last message lost in {lost} of {a.trials} trials", flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
