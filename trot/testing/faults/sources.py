"""A second source: a second, well-formed joint-state publisher beside the robot's driver (before
~/start and while RUNNING), and two controllers on one robot (trot.ros_nodes.sources)."""

from __future__ import annotations

import math
import re
import threading
import time

import numpy as np

from trot.testing import POLICY
from trot.testing.faults.policy import PolicyUnderTest
from trot.testing.faults.table import Row
from trot.testing.graph import ThreadedGraph, threaded_graph
from trot.testing.processes import wait

SECOND = "/second_driver"  # the second source's node
TWO_CONTROLLERS = "joint commands from more than one publisher"  # the robot node's warning


class SecondDriver:
    """A second joint-state source in this process: a node of its own publishing the home pose of
    ``p``'s robot with fresh stamps at ``rate_hz`` from a thread, from :meth:`start` to :meth:`stop`
    (which destroys its node: it leaves the graph)."""

    def __init__(self, p: PolicyUnderTest, rate_hz: float = 250.0, topic: str = "joint_states") -> None:
        import rclpy
        from sensor_msgs.msg import JointState

        self._p = p
        self.node = rclpy.create_node(SECOND.strip("/"), context=p.rig.context, start_parameter_services=False,
                                      enable_rosout=False)  # fmt: skip
        self._pub = self.node.create_publisher(JointState, topic, 10)
        self._period = 1.0 / rate_hz
        self.first_sent: float | None = None  # time.time() of its first message
        self.sent = 0
        self._on = False
        self._thread: threading.Thread | None = None

    def matched(self, subscribers: int = 1) -> bool:
        return self._pub.get_subscription_count() >= subscribers

    def start(self) -> None:
        self._on = True
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        next_t = time.perf_counter()
        while self._on:
            t = time.time()
            self._pub.publish(self._p.joint_state(t + self._p.time_offset))
            if self.first_sent is None:
                self.first_sent = t
            self.sent += 1
            next_t += self._period
            time.sleep(max(0.0, next_t - time.perf_counter()))

    def stop(self) -> None:
        self._on = False
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.node.destroy_node()


def _named(text: str, *names: str) -> bool:
    return all(name in text for name in names)


def second_source_before_start(r: ThreadedGraph, p: PolicyUnderTest) -> Row:
    """PASSIVE, sensors streaming; a second joint-state source: ~/start refused naming both, and
    accepted once it is gone."""
    if not wait(lambda: p.mode == "passive", 30.0):
        raise RuntimeError(f"the policy node did not reach PASSIVE\n{p.log()[-2000:]}")
    second = SecondDriver(p)
    second.start()
    wait(second.matched, 10.0)
    time.sleep(0.1)
    refused = r.call_trigger("trot_policy/start")
    second.stop()
    time.sleep(0.7)  # (its sequence numbers are forgotten after quiet_s, 0.5 s)
    accepted = r.call_trigger("trot_policy/start")
    wait(lambda: p.mode == "running", 10.0)
    message = refused.message if refused else "no reply"
    robot = "/" + r.node.get_name()
    ok = (refused is not None and not refused.success and _named(message, SECOND, robot)
          and accepted is not None and accepted.success)  # fmt: skip
    return Row("policy node", "a second joint-state source (250 Hz, home pose, fresh stamps) before ~/start",
               f"refused: {message!r}; accepted once it was gone", "refused, both named", ok,
               {"refused": message, "accepted": accepted.message if accepted else None})  # fmt: skip


def second_source_while_running(r: ThreadedGraph, p: PolicyUnderTest, repeats: int = 3) -> Row:
    """RUNNING; a second joint-state source starts (publishing at once, not waiting to be matched):
    DAMPING, timed from its first message to the first damping command's stamp (both this host's
    clock); the log names both; DAMPING holds after it is gone, until ~/start."""
    delays, stalls, held, named, refusals, caught_by = [], [], [], [], [], []
    robot = "/" + r.node.get_name()
    for _ in range(repeats):
        p.ensure_running(timeout=60.0)
        time.sleep(0.3)
        lines = p.log().count("more than one source")
        second = SecondDriver(p)
        second.start()
        wait(lambda s=second: s.first_sent is not None, 2.0)
        damped = p.first_damping_after(second.first_sent or time.time(), timeout=3.0)
        delays.append(damped - second.first_sent if damped is not None and second.first_sent else math.inf)
        stalls.append(p.stall(second.first_sent, damped) if damped is not None and second.first_sent else 0.0)
        time.sleep(0.3)
        refused = r.call_trigger("trot_policy/start")
        refusals.append(refused is not None and not refused.success and _named(refused.message, SECOND, robot))
        second.stop()
        time.sleep(1.0)  # gone: DAMPING must hold
        held.append(p.mode == "damping")
        wait(lambda n=lines: p.log().count("more than one source") > n, 2.0)
        named.append(_named("".join(p.log().split("more than one source")[lines + 1 :]), SECOND, robot))
        caught_by.append("sequence numbers" if "interleaved" in p.log().split("-> damping: more than one")[-1]
                         .splitlines()[0] else "graph")  # fmt: skip
    d, period_ms = np.array(delays) * 1e3, p.period * 1e3
    ok = bool(np.isfinite(d).all() and d.max() <= 3 * period_ms and all(held) and all(named) and all(refusals))
    return Row("policy node", f"a second joint-state source starts while RUNNING ({repeats}x)",
               f"damping {np.median(d):.0f} ms p50, {d.max():.0f} ms max after its first message; held; named",
               f"<= {3 * period_ms:.0f} ms (3 periods)", ok,
               {"delays_ms": d.tolist(), "stalls_ms": (np.array(stalls) * 1e3).tolist(), "period_ms": period_ms,
                "held": held, "named": named, "refused": refusals, "caught_by": caught_by})  # fmt: skip


def policy_node_sources(repeats: int = 3) -> list[Row]:
    """The policy node fed by this process (PolicyUnderTest) and a second source beside it."""
    with threaded_graph() as r:
        p = PolicyUnderTest(r, rate_hz=250.0)
        rows = [second_source_before_start(r, p), second_source_while_running(r, p, repeats)]
        if p.violations:
            rows.append(Row("policy node", "second source: commands outside limits or non-finite",
                            str(len(p.violations)), "0", False, {"violations": p.violations[:5]}))  # fmt: skip
    return rows


def two_controllers() -> Row:
    """The robot node and two policy nodes (the second renamed), both RUNNING: the robot node
    refuses their commands, damping (its base sinks), and names both, once."""
    from nav_msgs.msg import Odometry

    with threaded_graph() as r:
        heights: list[float] = []
        r.node.create_subscription(Odometry, "odom", lambda m: heights.append(m.pose.pose.position.z), 10)
        sim = r.start("trot.ros_nodes.sim_node", f"policy_path:={POLICY}")
        first = r.start("trot.ros_nodes.policy_node", f"policy_path:={POLICY}", "start_mode:=auto", "standup_s:=0.5")
        for tries in range(1, 4):  # (a stall of this loaded machine may trip the watchdog during the stand-up)
            if r.wait_for_log(first, "standup -> ", timeout=60.0, count=tries) and "standup -> running" in r.log(first):
                break
            r.call_trigger("trot_policy/start")
        if "standup -> running" not in r.log(first) or not wait(lambda: heights, 10.0):
            raise RuntimeError(f"the first policy node did not run\n{r.log(first)[-2000:]}")
        time.sleep(0.5)
        standing = heights[-1]
        second = r.start("trot.ros_nodes.policy_node", f"policy_path:={POLICY}", "start_mode:=auto",
                         "standup_s:=0.5", ros_args=("-r", "__node:=trot_policy_b"))  # fmt: skip
        refused = r.wait_for_log(sim, TWO_CONTROLLERS, timeout=60.0)
        time.sleep(2.0)
        sank = standing - heights[-1]
        log = r.log(sim)
        line = next((x for x in log.splitlines() if TWO_CONTROLLERS in x), "")
        both = bool(re.search(r"/trot_policy\b", line)) and "/trot_policy_b" in line
        ok = refused and both and sank > 0.05 and log.count(TWO_CONTROLLERS) == 1 and "Traceback" not in log
        r.log(second)
    return Row("robot driver", "two policy nodes RUNNING on one robot node",
               f"refused, damping: the base sank {sank * 1e3:.0f} mm in 2 s; {log.count(TWO_CONTROLLERS)} warning "
               f"({line.split(': ', 1)[-1][:90]})", "refused, named once; sinks", ok,
               {"line": line, "sank_mm": sank * 1e3, "log": log[-2000:]})  # fmt: skip


def sources_faults(repeats: int = 3) -> list[Row]:
    """Every row of this area."""
    return [*policy_node_sources(repeats), two_controllers()]
