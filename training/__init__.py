"""trot training side (torch lives here): environments, domain randomization, PPO."""

import os

# Headless offscreen rendering by default (evaluation videos on workstations and CI);
# an explicit MUJOCO_GL from the user wins. Must happen before mujoco is imported.
os.environ.setdefault("MUJOCO_GL", "egl")
