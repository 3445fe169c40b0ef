"""One source per input over real ROS 2 (rclpy, Fast DDS): the graph's publisher names, a second
joint-state source before and while running, two controllers on one robot, a bag played on a live
robot's domain."""

import time

from trot.testing.requires import require

rclpy = require("rclpy")

from sensor_msgs.msg import JointState  # noqa: E402

from trot.ros_nodes.sources import publisher_names  # noqa: E402


def test_publisher_names_are_fully_qualified_one_per_publisher() -> None:
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        robot = rclpy.create_node("robot", namespace="/ns", context=context)
        other = rclpy.create_node("other", context=context)
        for node, count in ((robot, 1), (other, 2)):
            for _ in range(count):
                node.create_publisher(JointState, "/joint_states", 10)
        end = time.time() + 5.0
        while robot.count_publishers("/joint_states") < 3 and time.time() < end:
            time.sleep(0.01)
        assert publisher_names(robot, "/joint_states") == ["/ns/robot", "/other", "/other"]
        assert publisher_names(robot, "joint_states") == []  # resolved against the node: /ns/joint_states
    finally:
        rclpy.shutdown(context=context)
