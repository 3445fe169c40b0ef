"""The controller killed without a last word: the robot driver's own command timeout damps."""

from __future__ import annotations

import math
import re
import time

import numpy as np

from trot.testing import POLICY
from trot.testing.faults.table import Row
from trot.testing.graph import threaded_graph
from trot.testing.processes import wait
from trot.testing.stalls import longest_gap

SILENCE = "no joint command for"


def _last_transition(log: str) -> str:
    """The policy node's newest mode change in its log ("running -> damping"), or ""."""
    found = re.findall(r"\]: (\w+ -> \w+)", log)
    return found[-1] if found else ""


def driver_faults(repeats: int = 3) -> list[Row]:
    """The controller dies without a last word (SIGKILL while RUNNING, no final damping command):
    the robot's driver (the MuJoCo robot node, like a real driver's watchdog) must damp by itself
    after its ``command_timeout_s`` (0.25 s). Timed from the kill to the stamp of the driver's own
    warning (both wall clock); the robot must then sink, not stand stiff on the last target."""
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import JointState

    from trot.ros_nodes.sim_node import SimNodeParams

    defaults = SimNodeParams()
    timeout_s, state_period = defaults.command_timeout_s, 1.0 / defaults.publish_rate
    delays, drops, stalls, restarts = [], [], [], 0
    with threaded_graph() as r:
        heights: list[float] = []
        states: list[float] = []  # the robot node's joint state stamps (wall clock): a gap is its own stall
        r.node.create_subscription(Odometry, "odom", lambda m: heights.append(m.pose.pose.position.z), 10)
        r.node.create_subscription(JointState, "joint_states", lambda m: states.append(
            m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec), 100)  # fmt: skip
        sim = r.start("trot.ros_nodes.sim_node", f"policy_path:={POLICY}")
        for _ in range(repeats):
            policy = r.start("trot.ros_nodes.policy_node", f"policy_path:={POLICY}", "start_mode:=auto",
                                  "standup_s:=1.0")  # fmt: skip
            for attempt in range(2):  # (a stall of this loaded machine may trip the watchdog: start again, once)
                wait(lambda p=policy: _last_transition(r.log(p)).endswith("-> running"), timeout=30.0)
                time.sleep(1.0)
                if _last_transition(r.log(policy)).endswith("-> running"):
                    break
                restarts += attempt == 0
                r.call_trigger("trot_policy/start")
            else:
                raise RuntimeError(f"the policy node did not stay RUNNING:\n{r.log(policy)[-2000:]}")
            if not wait(lambda: heights, timeout=30.0):
                raise RuntimeError("no odometry from the robot node")
            # (a stall of the host may have tripped the timeout before: count from here)
            before, standing, killed = r.log(sim).count(SILENCE), heights[-1], time.time()
            r.procs[policy].kill()
            r.procs[policy].wait()
            if r.wait_for_log(sim, SILENCE, timeout=5.0, count=before + 1):
                line = [x for x in r.log(sim).splitlines() if SILENCE in x][before]
                warned = float(re.search(r"\[(\d+\.\d+)\]", line).group(1))
                delays.append(warned - killed)
                stalls.append(max(r.stalls.longest(killed, warned),
                                  longest_gap(list(states), killed, warned, state_period)))  # fmt: skip
            else:
                delays.append(math.inf)
                stalls.append(0.0)
            time.sleep(2.0)
            drops.append(standing - heights[-1])
        log = r.log(sim)
    d, drop, s = np.array(delays) * 1e3, np.array(drops) * 1e3, np.array(stalls) * 1e3
    ok = d.min() > 0.0 and d.max() <= timeout_s * 1e3 + 50.0 and drop.min() > 50.0 and "Traceback" not in log
    return [Row("robot driver", f"controller SIGKILLed while RUNNING ({len(d)}x): the driver's command timeout "
                f"({timeout_s} s)", f"damping {np.median(d):.0f} ms p50, {d.max():.0f} ms max after the kill; the "
                f"base sank {drop.min():.0f}-{drop.max():.0f} mm in 2 s; longest stall measured {s.max():.0f} ms",
                f"<= {timeout_s * 1e3 + 50:.0f} ms; sinks", ok,
                {"delays_ms": d.tolist(), "stalls_ms": s.tolist(), "drops_mm": drop.tolist(), "log": log[-2000:],
                 "bound_ms": timeout_s * 1e3 + 50.0, "restarts": restarts})]  # fmt: skip
