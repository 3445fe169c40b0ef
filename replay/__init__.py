"""Replay (rosbags + the simulation layer + the contract; no rclpy): episode bags, video and plots,
re-simulation, shadow runs of another policy, reports."""
