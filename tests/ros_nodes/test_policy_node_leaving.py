"""The policy node leaving control (lifecycle deactivate from RUNNING, SIGINT), waiting for its
subscribers' acknowledgment of its last command, and standing still with a paused sim-time /clock:
real node processes over ROS 2 (rclpy, Fast DDS), the MuJoCo robot node as the robot."""

import itertools
import signal
import sys
import time

from trot.testing.requires import require

rclpy = require("rclpy")

from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402

from trot.testing.graph import Graph, start_robot_and_policy  # noqa: E402

NOT_ACKED = "/joint_commands: the last damping command was not acknowledged by every subscriber within 0.5 s"


def stamp_s(m) -> float:
    return m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec


def assert_one_damping_command_last(graph: Graph, n_before: int, what: str) -> None:
    """From command ``n_before`` on: the policy's targets, then damping commands only, the last
    received one included, and at most two of them: the one the node sends on its way out plus one
    tick of the control loop that had passed its last "still active?" check when the stop took the
    tick lock (it ticks the now DAMPING controller once, before the node's own last tick)."""
    after = [m for _, m in graph.commands[n_before:]]
    first = next((i for i, m in enumerate(after) if not len(m.position)), None)
    assert first is not None, f"{what}: no damping command among {len(after)} after the stop"
    damping = after[first:]
    assert all(not len(m.position) for m in damping), f"{what}: a target after the damping command"
    assert 1 <= len(damping) <= 2, f"{what}: {len(damping)} damping commands, not one (and one tick in flight)"
    assert all(len(m.position) == 12 for m in after[:first]), what


def test_deactivate_from_running_and_sigint_each_send_one_damping_command_last(graph: Graph) -> None:
    """Lifecycle deactivate of a RUNNING node, and SIGINT (Ctrl-C) of a RUNNING node: each sends one
    damping command last (a JointState with no positions), which reaches this probe (a reliable
    subscriber that keeps spinning). (stale_periods 10: a loaded machine's stall must not damp the
    node before the stop under test.) Every subscriber acknowledged it within the node's 0.5 s wait:
    no warning. (Fast DDS acknowledges when the writer's heartbeat asks: every 3 s by default, every
    50 ms with trot's profile, ros_nodes/fastdds_profile.xml.)"""
    start_robot_and_policy(graph, "stale_periods:=10.0")
    policy = 1

    def change(transition: int) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition))
        return graph.call(ChangeState, "trot_policy/change_state", request).success

    graph.spin(0.5, vx=0.0)
    graph.running_after_any_stall()
    n_before = len(graph.commands)
    assert change(Transition.TRANSITION_DEACTIVATE)  # (answered after the acknowledgment wait)
    graph.spin(0.3)
    quiet_from = time.time()
    graph.spin(0.5)
    assert not [t for t, _ in graph.commands if t > quiet_from], "an inactive node must command nothing"
    assert_one_damping_command_last(graph, n_before, "deactivate")
    assert "running -> damping: lifecycle deactivate requested" in graph.log(policy), graph.log(policy)[-2000:]
    assert "not acknowledged" not in graph.log(policy), graph.log(policy)[-2000:]

    assert change(Transition.TRANSITION_ACTIVATE)
    graph.press_start_until_it_runs(policy)
    graph.spin(0.5, vx=0.0)
    graph.running_after_any_stall()
    n_before = len(graph.commands)
    graph.procs[policy].send_signal(signal.SIGINT)
    assert graph.wait_until(lambda: graph.procs[policy].poll() is not None, timeout=15.0), graph.log(policy)[-2000:]
    graph.spin(0.5)
    log = graph.log(policy)
    assert graph.procs[policy].returncode == 0 and "Traceback" not in log, log[-2000:]
    assert_one_damping_command_last(graph, n_before, "SIGINT")
    assert "running -> damping: node shutdown requested" in log, log[-2000:]
    assert "not acknowledged" not in log, log[-2000:]


# A reliable subscriber of joint_commands in a process of its own (which the test can stop): says
# "first" when the policy's writer has reached it.
SUBSCRIBER = """
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import JointState
rclpy.init()
node = Node("stopped_driver")
got = []
def on_command(m):
    if not got:
        print("first", flush=True)
    got.append(m)
node.create_subscription(JointState, "joint_commands", on_command, 10)
try:
    rclpy.spin(node)
except BaseException:
    pass
"""


def test_the_node_waits_half_a_second_for_a_subscriber_that_does_not_acknowledge(graph: Graph) -> None:
    """SIGTERM while one reliable subscriber of the commands is stopped (SIGSTOP: it cannot
    acknowledge): the node waits 0.5 s for its acknowledgment of the last damping command before the
    publishers go, says which topic went unacknowledged, and exits (status 0) all the same; the
    subscribers that are alive (this probe) have the damping command last. A node that destroyed its
    publishers at once would not wait (nor warn); one that waited without a bound would not exit."""
    start_robot_and_policy(graph, "stale_periods:=10.0")
    policy = 1
    stopped = graph.start_args([sys.executable, "-c", SUBSCRIBER])
    assert graph.wait_for_log(stopped, "first", timeout=30.0, during=graph.idle), graph.log(stopped)
    graph.spin(0.3, vx=0.0)
    graph.running_after_any_stall()
    n_before = len(graph.commands)
    graph.procs[stopped].send_signal(signal.SIGSTOP)
    try:
        signalled = time.monotonic()
        graph.procs[policy].send_signal(signal.SIGTERM)
        assert graph.wait_until(lambda: graph.procs[policy].poll() is not None, timeout=15.0), graph.log(policy)
        took = time.monotonic() - signalled
    finally:
        graph.procs[stopped].send_signal(signal.SIGCONT)
    graph.spin(0.5)
    log = graph.log(policy)
    assert graph.procs[policy].returncode == 0 and "Traceback" not in log, log[-2000:]
    assert NOT_ACKED in log and "[WARN]" in log.split(NOT_ACKED)[0].splitlines()[-1], log[-2000:]
    # (a loaded machine only lengthens it; the teardown's own safety net ends a process after 5 s)
    assert took >= 0.5, f"exited {took:.2f} s after SIGTERM: it did not wait 0.5 s for the acknowledgment"
    assert_one_damping_command_last(graph, n_before, "SIGTERM")


def test_a_paused_sim_clock_stops_the_commands_and_they_resume_with_it(graph: Graph) -> None:
    """use_sim_time: the simulator pauses (no /clock, no samples) for 2 s: sim time stands still and
    the node sends nothing (no tick: none is due; no watchdog trip: no sim time has passed), then goes
    on RUNNING when /clock resumes. Allowance: commands published before the pause took effect may
    arrive after its reply (one tick in flight at the pause, or a stalled probe's backlog): each
    carries a sim stamp of its own, at most the last /clock, and none arrives after the first second.
    A node ticking on the wall clock would repeat the frozen stamp (or carry a later one); a
    wall-clock watchdog would damp. (stale_periods 25: only a stall of the policy process alone of
    0.5 s, the simulator running on, could trip the watchdog.)"""
    clock: list[tuple[float, float]] = []  # (arrival, sim time)
    graph.node.create_subscription(Clock, "/clock", lambda m: clock.append(
        (time.time(), m.clock.sec + 1e-9 * m.clock.nanosec)), 10)  # fmt: skip
    start_robot_and_policy(graph, "use_sim_time:=true", "stale_periods:=25.0", robot_params=("publish_clock:=true",))
    policy = 1
    graph.spin(0.5, vx=0.0)
    graph.running_after_any_stall()
    damped = graph.log(policy).count("-> damping")
    assert graph.call(SetBool, "trot_sim/pause", SetBool.Request(data=True)).success
    paused_at, n_paused = time.time(), len(graph.commands)
    graph.spin(2.0)
    frozen = max(s for _, s in clock)
    assert not [s for t, s in clock if t > paused_at + 1.0], "the paused simulator's /clock went on"
    late = [(t, stamp_s(m)) for t, m in graph.commands[n_paused:]]
    stamps = [s for _, s in late]
    assert all(s <= frozen + 1e-9 for s in stamps), f"stamped after the last /clock {frozen:.3f}: {stamps}"
    assert all(b > a for a, b in itertools.pairwise(stamps)), f"two ticks at one sim instant: {stamps}"
    assert not [t for t, _ in late if t > paused_at + 1.0], f"commands while sim time stood still: {late}"
    assert graph.call(SetBool, "trot_sim/pause", SetBool.Request(data=False)).success
    resumed_at = time.time()
    graph.spin(1.0, vx=0.0)
    again = [m for t, m in graph.commands if t > resumed_at]
    assert len(again) >= 10 and all(len(m.position) == 12 for m in again), f"{len(again)} commands after the resume"
    assert stamp_s(again[0]) > frozen, "the commands after the resume are stamped with sim time going on"
    assert graph.log(policy).count("-> damping") == damped, graph.log(policy)[-2000:]
