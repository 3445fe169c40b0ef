"""trot: a sim-to-real control stack for legged robots.

Layers, lowest first (each imports only those below it; ``make test`` enforces it):
``trot.policies`` (the contract, observation and action math, the artifact and its runtime; numpy and
ONNX Runtime), ``trot.sim`` (robots, the world builder, gains, randomization, rendering; MuJoCo),
``trot.replay`` (bags, re-simulation, shadow, reports; rosbags), ``trot.ros_nodes`` (rclpy nodes) and
``trot.training`` (tasks, PPO, export, artifact evaluation; torch). ``trot.cli`` sits on top.
"""

__version__ = "0.1.0"
