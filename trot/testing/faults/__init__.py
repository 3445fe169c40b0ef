"""The fault and bad-input scenarios: what the stack survives, and what it never does.

Every scenario runs the real thing: the policy node and the recorder as separate processes over
real ROS 2 (rclpy, Fast DDS), real rosbag2 files, real training runs killed with SIGKILL. The
test process is the robot side: it streams valid sensor data, injects the faults, and checks every
command the node publishes. Each scenario returns rows of the reliability table
(:class:`~trot.testing.faults.table.Row`); ``bench/faults.py`` prints them, and the tests run the
same functions with smaller counts. One module per area: fuzz, garbage, dropouts, driver, recorder,
training, artifacts; :mod:`~trot.testing.faults.suite` runs a chosen set of them.
"""
