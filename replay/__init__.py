"""Replay (rosbags + the simulation layer + the contract; no rclpy): episode bags (bag), an
episode's arrays (episode), re-simulation (resim), shadow runs of another policy (shadow), plots
and video (plots, video), and the `trot replay` commands with their report (report)."""
