"""One source per input over real ROS 2 (rclpy, Fast DDS): the graph's publisher names, a second
joint-state source before and while running, two controllers on one robot, a bag played on a live
robot's domain."""

import re
import sys
import time
from pathlib import Path

from trot.testing.requires import require

rclpy = require("rclpy")

from sensor_msgs.msg import JointState  # noqa: E402

from trot.ros_nodes.sources import publisher_names  # noqa: E402
from trot.testing.faults.sources import policy_node_sources, two_controllers  # noqa: E402
from trot.testing.processes import wait  # noqa: E402
from trot.testing.stalls import judge  # noqa: E402


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


def test_a_second_joint_state_source_refuses_start_and_damps_a_running_node_within_three_periods() -> None:
    """Before ~/start: refused, both sources named. While RUNNING: DAMPING within 3 control periods
    of its first message (every one of 3: >= 95 % within, trot.testing.stalls), both named in the
    log, held after it is gone until ~/start."""
    rows = policy_node_sources(repeats=3)
    for row in rows:
        print(row)
    before, running = rows[:2]
    assert len(rows) == 2, rows[2:]  # (a third row: commands outside the limits)
    assert before.ok, before
    assert all(running.data[key] for key in ("held", "named", "refused")) and all(running.data["held"]), running
    verdict = judge(running.data["delays_ms"], running.data["stalls_ms"], 3 * running.data["period_ms"])
    assert verdict.ok, f"{verdict}\n{running}"


def test_two_policy_nodes_on_one_robot_node_are_refused_named_and_the_robot_damps() -> None:
    row = two_controllers()
    print(row)
    assert row.ok, row


def test_a_bag_played_on_a_live_robots_domain_is_caught_as_a_second_source(tmp_path: Path) -> None:
    """`trot replay play` of a recorded episode (joint states and IMU, written by the recorder's bag
    writer) on the domain of a running robot: the policy node damps, naming the player and the
    robot, and ~/start is refused until the player is gone."""
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Imu

    from trot.policies.runtime import PolicyRuntime
    from trot.replay.bag import EpisodeBag
    from trot.testing import POLICY
    from trot.testing.graph import threaded_graph

    contract = PolicyRuntime(POLICY).contract
    bag = EpisodeBag(tmp_path / "episode", {"robot": contract.robot, "episode": "0"})
    bag.add_topic("/joint_states", "sensor_msgs/msg/JointState")
    bag.add_topic("/imu", "sensor_msgs/msg/Imu")
    t0 = time.time_ns() - 3_600_000_000_000  # recorded an hour ago
    for i in range(750):  # 3 s at 250 Hz
        t = t0 + i * 4_000_000
        js = JointState(name=list(contract.joint_names), position=list(contract.default_joint_pos),
                        velocity=[0.0] * 12)  # fmt: skip
        imu = Imu()
        imu.orientation.w = 1.0
        for msg in (js, imu):
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t, 1_000_000_000)
        bag.write("/joint_states", t, serialize_message(js))
        bag.write("/imu", t, serialize_message(imu))
    bag.close()
    with threaded_graph() as r:
        damping: list[float] = []
        r.node.create_subscription(JointState, "joint_commands",
                                   lambda m: None if len(m.position) else damping.append(time.time()), 50)  # fmt: skip
        r.start("trot.ros_nodes.sim_node", f"policy_path:={POLICY}")
        policy = r.start("trot.ros_nodes.policy_node", f"policy_path:={POLICY}", "start_mode:=auto", "standup_s:=0.5")
        assert r.wait_for_log(policy, "standup -> running", timeout=60.0), r.log(policy)
        before = len(r.log(policy))
        played = time.time()
        player = r.start_args([sys.executable, "-m", "trot.cli", "replay", "play", str(tmp_path / "episode")])

        def after() -> str:
            return r.log(policy)[before:]

        # (a new process's endpoint may come before its node's name: the log names it once known)
        named = lambda: [x for x in after().splitlines() if "more than one source" in x and "/trot_play" in x]  # noqa: E731
        assert wait(named, 20.0), r.log(policy)
        assert "/trot_sim" in named()[0], named()
        # RUNNING when the player came (not damped by a stall of this loaded machine): damped for it
        running = re.findall(r"\w+ -> (\w+):", r.log(policy)[:before])[-1] == "running"
        if running and "-> damping: watchdog" not in after().split("more than one source")[0]:
            assert "running -> damping: more than one source" in after(), after()
        assert wait(lambda: any(t > played for t in damping), 5.0), "damping commands"
        refused = r.call_trigger("trot_policy/start")
        assert refused is not None and not refused.success and "/trot_play" in refused.message, refused
        assert r.procs[player].wait(timeout=30) == 0, r.log(player)


def _teleop(p, name: str) -> tuple:
    """A /cmd_vel publisher on a node ``name`` of its own, sending 0.3 m/s at 50 Hz from a thread
    until the returned stop() is called (which destroys the node)."""
    import threading

    from geometry_msgs.msg import Twist

    node = rclpy.create_node(name, context=p.rig.context, start_parameter_services=False, enable_rosout=False)
    pub, on = node.create_publisher(Twist, "cmd_vel", 10), threading.Event()
    twist = Twist()
    twist.linear.x = 0.3

    def loop() -> None:
        while not on.wait(0.02):
            pub.publish(twist)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def stop() -> None:
        on.set()
        thread.join(timeout=2.0)
        node.destroy_node()

    return stop


def test_cmd_vel_from_a_second_teleop_damps_unless_cmd_vel_sources_lists_it() -> None:
    """The default: a second /cmd_vel publisher is a second source (DAMPING, named; /diagnostics
    counts each input's publishers). With cmd_vel_sources listing both teleops, they drive together
    and the node stays RUNNING; a third, unlisted, damps."""
    from geometry_msgs.msg import Twist

    from trot.testing.faults.policy import PolicyUnderTest
    from trot.testing.graph import threaded_graph

    for accepted in ((), ("/fault_probe", "/teleop_b")):
        with threaded_graph() as r:
            params = (f"cmd_vel_sources:={list(accepted)!r}",) if accepted else ()
            p = PolicyUnderTest(r, *params)
            p.ensure_running(timeout=60.0)
            stop_b = _teleop(p, "teleop_b")
            for _ in range(50):  # 1 s of the probe's own teleop beside it
                p.cmd_pub.publish(Twist())
                time.sleep(0.02)
            if not accepted:
                assert p.mode == "damping", p.log()[-2000:]
                assert "/cmd_vel has 2 publishers: /fault_probe, /teleop_b" in p.log(), p.log()[-2000:]
                diagnostics = p.diagnostics()
                assert diagnostics["cmd_vel_publishers"] == "2", diagnostics
                assert diagnostics["joint_states_publishers"] == diagnostics["imu_publishers"] == "1", diagnostics
                stop_b()
                continue
            assert "more than one source" not in p.log(), p.log()[-2000:]  # (a stall may trip the watchdog)
            p.ensure_running()
            stop_stray = _teleop(p, "stray")
            assert wait(lambda p=p: p.mode == "damping", 3.0), p.log()[-2000:]
            assert "/stray not in the accepted sources" in p.log(), p.log()[-2000:]
            stop_stray()
            stop_b()
