"""The ROS 2 package as installed: ament index, executables, parameter files and launch files.

trot is installed into a fresh prefix (like `colcon build` / `pip install` on a robot); the
launch files are read from that prefix's share directory and the nodes they describe are started
from its lib/trot/ by trot.testing.launch (`ros2 launch` itself cannot be installed here).
"""

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from trot.testing.requires import require

rclpy = require("rclpy")

from geometry_msgs.msg import Twist  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402

from trot.testing.graph import Graph  # noqa: E402
from trot.testing.launch import NodeSpec, UnsupportedLaunchConstruct, resolve  # noqa: E402
from trot.testing.processes import fifo_allowed  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NODES = ("trot_policy_node", "trot_sim_node", "trot_recorder_node", "trot_play_node", "trot_unitree_bridge",
         "trot_unitree_board")  # fmt: skip


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    """trot installed (no dependencies: those are this venv's) into a fresh prefix, from a copy of
    the source tree so the build leaves nothing in the checkout."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "out", "runs", "build", "bags",
                                                             "*.egg-info", "__pycache__", ".*_cache"))  # fmt: skip
    out = tmp / "prefix"
    # --ignore-installed: without it pip would uninstall this venv's own (editable) trot first
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--ignore-installed",
           "--prefix", str(out), str(src)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def ament_env(prefix: Path, monkeypatch) -> dict[str, str]:
    """This process and its children see the installed package (as after sourcing its setup)."""
    site = next(prefix.glob("lib/python*/site-packages"))
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # python3
    return dict(os.environ)


def test_the_ament_index_finds_the_package_its_files_and_executables(prefix: Path, ament_env) -> None:
    script = (
        "from ament_index_python.packages import get_package_share_directory, get_package_prefix\n"
        "from ament_index_python import get_resource\n"
        "print(get_package_share_directory('trot')); print(get_package_prefix('trot'))\n"
        "get_resource('packages', 'trot')"
    )
    out = subprocess.run([sys.executable, "-c", script], env=ament_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    share, found_prefix = (Path(line) for line in out.stdout.split())
    assert share == prefix / "share" / "trot" and found_prefix == prefix
    for rel in ("package.xml", "launch/sim.launch.xml", "launch/real.launch.xml", "launch/go2_real.launch.xml",
                "launch/go2_unitree_sim.launch.xml", "config/nodes.yaml", "config/go2.yaml",
                "config/go1.yaml"):  # fmt: skip
        assert (share / rel).is_file(), rel
    for exe in NODES:
        path = prefix / "lib" / "trot" / exe
        assert path.is_file() and os.access(path, os.X_OK), exe
    package = (share / "package.xml").read_text()
    assert "<name>trot</name>" in package and "<build_type>ament_python</build_type>" in package


@pytest.mark.parametrize("exe", NODES)
def test_installed_executables_start_and_reject_an_unknown_parameter(prefix: Path, ament_env, exe: str) -> None:
    cmd = [str(prefix / "lib" / "trot" / exe), "--ros-args", "-p", "policy_path:=go2_flat", "-p", "speling:=1.0"]
    proc = subprocess.Popen(cmd, env={**ament_env, "ROS_DOMAIN_ID": "180"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    end = time.time() + 30.0
    while proc.poll() is None and "'speling'" not in "".join(lines) and time.time() < end:
        time.sleep(0.1)
    if proc.poll() is None:  # the lifecycle policy node stays up (unconfigured), having said why
        proc.terminate()
    proc.wait(timeout=10)
    reader.join(timeout=5)
    out = "".join(lines)
    assert "unknown parameters [" in out and "'speling'" in out, out


def _declared(node: str) -> set[str]:
    from trot.policies.settings import SafetyConfig
    from trot.ros_nodes.policy_params import PolicyNodeParams
    from trot.ros_nodes.recorder_node import RecorderParams
    from trot.ros_nodes.sim_node import SimNodeParams

    classes = {"trot_sim": [SimNodeParams], "trot_policy": [PolicyNodeParams, SafetyConfig],
               "trot_recorder": [RecorderParams]}[node]  # fmt: skip
    return {f.name for cls in classes for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("robot", ["go2", "go1"])
def test_parameter_files_hold_every_parameter_and_the_real_nodes_accept_them(
    prefix: Path, ament_env, robot: str, tmp_path: Path
) -> None:
    shared = prefix / "share" / "trot" / "config" / "nodes.yaml"
    file = prefix / "share" / "trot" / "config" / f"{robot}.yaml"
    sections, own = yaml.safe_load(shared.read_text()), yaml.safe_load(file.read_text())
    assert set(sections) == {"/**/trot_sim", "/**/trot_policy", "/**/trot_recorder"} and set(own) <= set(sections)
    for key, body in sections.items():  # each parameter once: in the shared file or in the robot's
        robot_keys = set(own.get(key, {}).get("ros__parameters", {}))
        assert not set(body["ros__parameters"]) & robot_keys, key
        assert set(body["ros__parameters"]) | robot_keys == _declared(key.split("/")[-1]), key
    misspelled = tmp_path / "typo.yaml"
    misspelled.write_text(shared.read_text().replace("stale_periods:", "stale_period:"))
    both = ["--params-file", str(shared), "--params-file", str(file)]  # as the launch files load them
    graph = Graph()
    try:
        exe = prefix / "lib" / "trot"
        sim = graph.start_args([str(exe / "trot_sim_node"), "--ros-args", *both])
        recorder = graph.start_args([str(exe / "trot_recorder_node"), "--ros-args", *both,
                                     "-p", f"output_dir:={tmp_path}"])  # fmt: skip
        policy = graph.start_args([str(exe / "trot_policy_node"), "--ros-args", *both,
                                   "-p", "policy_path:=go2_flat"])  # fmt: skip
        typo = graph.start_args([str(exe / "trot_policy_node"), "--ros-args", "--params-file", str(misspelled),
                                 "-r", "__ns:=/typo"])  # fmt: skip
        assert graph.wait_for_log(recorder, "recording episode 0"), graph.log(recorder)
        assert graph.wait_for_log(typo, "unknown parameters ['stale_period']")
        assert graph.wait_for_log(policy, "configured: go2_flat"), graph.log(policy)  # passive: configured, waiting
        graph.spin(0.5)
        assert not graph.commands, "start_mode passive commands nothing before ~/start"
        for index in (sim, recorder, policy):
            assert graph.procs[index].poll() is None, graph.log(index)
        assert "unknown parameters" not in graph.log(policy) + graph.log(sim) + graph.log(recorder)
        assert f"robot: {robot}" in (next(tmp_path.glob("episode_*")) / "episode.yaml").read_text()
    finally:
        graph.close()


def tolerant_params(prefix: Path, tmp_path: Path) -> str:
    """The installed go2.yaml plus a 0.5 s sensor watchdog (25 periods) over nodes.yaml's 2, passed as
    the launch files' params_file argument: this 2-core CI machine has stalled whole processes for
    ~0.35 s, which trips the 2-period watchdog into DAMPING, as it should on a robot, and would end a
    walking test."""
    config = prefix / "share" / "trot" / "config"
    shared = yaml.safe_load((config / "nodes.yaml").read_text())
    assert shared["/**/trot_policy"]["ros__parameters"]["stale_periods"] == 2.0
    params = yaml.safe_load((config / "go2.yaml").read_text())
    params["/**/trot_policy"]["ros__parameters"]["stale_periods"] = 25.0
    file = tmp_path / "go2_ci.yaml"
    file.write_text(yaml.safe_dump(params))
    return str(file)


class LaunchedGraph(Graph):
    """A Graph whose processes are the nodes of a resolved launch file."""

    def launch(self, nodes: list[NodeSpec], workdir: Path) -> dict[str, int]:
        return {node.fqn: self.start_args(node.command(workdir)) for node in nodes}


def _walk(graph: Graph, namespaces: dict[str, float], timeout: float = 25.0) -> dict[str, float]:
    """Publish each namespace's forward command; per namespace, the mean vx over the 3 s that follow
    1 s of settling once its robot responds (a new publisher can take seconds to be discovered by a
    busy reader here, so a fixed window would measure discovery, not tracking)."""
    pubs = {ns: graph.node.create_publisher(Twist, f"{ns}/cmd_vel", 10) for ns in namespaces}
    odom: dict[str, list] = {ns: [] for ns in namespaces}
    for ns in namespaces:

        def on_odom(m: Odometry, ns: str = ns) -> None:
            odom[ns].append((time.time(), m.twist.twist.linear.x))

        graph.node.create_subscription(Odometry, f"{ns}/odom", on_odom, 50)
    responded: dict[str, float] = {}
    end, last_cmd = time.time() + timeout, 0.0
    while time.time() < end and not (len(responded) == len(namespaces) and time.time() > max(responded.values()) + 4):
        teleop = time.time() - last_cmd >= 0.02  # a 50 Hz teleop: faster than 1 kHz is a flood to the node
        last_cmd = time.time() if teleop else last_cmd
        for ns, vx in namespaces.items():
            if teleop:
                t = Twist()
                t.linear.x = vx
                pubs[ns].publish(t)
            if ns not in responded and odom[ns] and odom[ns][-1][1] * vx > 0.5 * vx * vx:
                responded[ns] = time.time()
        rclpy.spin_once(graph.node, timeout_sec=0.02)
    return {ns: float(np.mean([v for t, v in odom[ns] if responded[ns] + 1 < t < responded[ns] + 4]))
            if ns in responded else 0.0 for ns in namespaces}  # fmt: skip


def test_sim_launch_starts_the_nodes_it_describes_and_the_go2_walks(ament_env, prefix: Path, tmp_path: Path) -> None:
    share = prefix / "share" / "trot" / "launch"
    nodes = resolve(
        share / "sim.launch.xml", bag_dir=str(tmp_path / "bags"), params_file=tolerant_params(prefix, tmp_path)
    )
    assert [n.exec for n in nodes] == ["trot_sim_node", "trot_policy_node", "trot_recorder_node"]
    graph = LaunchedGraph()
    try:
        started = graph.launch(nodes, tmp_path)
        assert graph.wait_for_log(started["/trot_policy"], "standup -> running", timeout=40.0)
        # the graph is connected as the launch file says
        n = graph.node
        assert graph.wait_until(lambda: n.count_publishers("/joint_states") == 1
                                and n.count_subscribers("/joint_states") >= 2  # policy input + recorder
                                and n.count_publishers("/joint_commands") == 1
                                and n.count_subscribers("/joint_commands") >= 2)  # fmt: skip
        speed = _walk(graph, {"": 0.5})[""]
        assert abs(speed - 0.5) <= 0.15, f"walked at {speed:.2f} m/s\n{graph.log(started['/trot_policy'])}"
    finally:
        graph.close()
    (bag,) = (tmp_path / "bags").iterdir()
    assert (bag / "metadata.yaml").is_file(), "SIGTERM must close the launched recorder's bag"


def test_two_robots_side_by_side_in_namespaces(ament_env, prefix: Path, tmp_path: Path) -> None:
    launch_file = prefix / "share" / "trot" / "launch" / "sim.launch.xml"
    params = tolerant_params(prefix, tmp_path)
    nodes = [n for ns in ("robot1", "robot2") for n in resolve(launch_file, namespace=ns, record="false",
                                                                params_file=params)]  # fmt: skip
    assert sorted(n.fqn for n in nodes) == ["/robot1/trot_policy", "/robot1/trot_sim", "/robot2/trot_policy",
                                            "/robot2/trot_sim"]  # fmt: skip
    graph = LaunchedGraph()
    try:
        started = graph.launch(nodes, tmp_path)
        for ns in ("/robot1", "/robot2"):
            assert graph.wait_for_log(started[f"{ns}/trot_policy"], "standup -> running", timeout=60.0)
        speeds = _walk(graph, {"/robot1": 0.6, "/robot2": -0.4})
        logs = "\n".join(graph.log(i) for i in started.values())
        assert abs(speeds["/robot1"] - 0.6) <= 0.2 and abs(speeds["/robot2"] + 0.4) <= 0.2, f"{speeds}\n{logs}"
    finally:
        graph.close()


def test_real_launch_serves_a_driver_on_remapped_topics_with_forward_commands(
    ament_env, prefix: Path, tmp_path: Path
) -> None:
    launch_file = prefix / "share" / "trot" / "launch" / "real.launch.xml"
    nodes = resolve(launch_file, joint_states="/driver/joint_states", joint_commands="/driver/joint_commands",
                    imu="/driver/imu", forward_command="true", bag_dir=str(tmp_path))  # fmt: skip
    assert [n.exec for n in nodes] == ["trot_policy_node", "trot_recorder_node"]
    graph = LaunchedGraph()
    forward: list[tuple[float, Float64MultiArray]] = []
    commands: list[JointState] = []
    states: list[JointState] = []
    graph.node.create_subscription(Float64MultiArray, "/forward_position_controller/commands",
                                   lambda m: forward.append((time.time(), m)), 10)  # fmt: skip
    graph.node.create_subscription(JointState, "/driver/joint_commands", commands.append, 10)
    graph.node.create_subscription(JointState, "/driver/joint_states", states.append, 10)
    params = yaml.safe_load((prefix / "share" / "trot" / "config" / "go2.yaml").read_text())
    order = params["/**/trot_policy"]["ros__parameters"]["forward_joint_order"]

    def in_order(m: JointState) -> tuple[float, ...]:
        return tuple(float(m.position[list(m.name).index(n)]) for n in order)

    try:
        # the "driver": the MuJoCo robot node on the driver's topic names
        graph.start("trot.ros_nodes.sim_node", "policy_path:=go2_flat", "joint_states_topic:=/driver/joint_states",
                    "imu_topic:=/driver/imu", "joint_commands_topic:=/driver/joint_commands")  # fmt: skip
        started = graph.launch(nodes, tmp_path)
        assert graph.wait_for_log(started["/trot_policy"], "configured", timeout=40.0), graph.log(
            started["/trot_policy"]
        )
        # real robots get SCHED_FIFO by default (realtime_priority:=50), or a warning where not allowed
        expected = "SCHED_FIFO 50 for the control thread" if fifo_allowed() else "realtime_priority 50 not granted"
        assert graph.wait_for_log(started["/trot_policy"], expected, timeout=10.0), graph.log(started["/trot_policy"])
        graph.spin(1.0)
        assert not commands, "start_mode passive: nothing is commanded before ~/start"
        graph.press_start_until_it_runs(started["/trot_policy"])
        graph.spin(1.0)
        assert len(forward) > 10 and all(len(m.data) == 12 for _, m in forward)
        assert len(commands) > 10 and all(len(m.position) in (0, 12) for m in commands)
        # each forward command is a /joint_commands target set, in forward_joint_order (by name)
        running = [tuple(m.data) for _, m in forward[-10:]]
        graph.spin(0.3)  # (its JointState twin, published just before, may still be on its way)
        targets = {in_order(m) for m in commands if len(m.position)}
        assert all(data in targets for data in running)
        # DAMPING (here the watchdog's: the driver stops): a position interface gets the measured
        # pose, not the last target held at full stiffness
        assert graph.call(SetBool, "trot_sim/pause", SetBool.Request(data=True)).success
        paused_at = time.time()
        graph.spin(0.6)
        damping = [m.data for t, m in forward if t > paused_at + 0.2]
        assert len(damping) > 10 and not [m for m in commands[-10:] if len(m.position)]
        np.testing.assert_allclose(np.array(damping), np.tile(in_order(states[-1]), (len(damping), 1)), atol=1e-9)
        assert np.abs(np.array(damping[-1]) - np.array(running[-1])).max() > 1e-3, "not the last target"
        assert graph.wait_until(lambda: graph.node.count_subscribers("/driver/imu") >= 2)  # policy input + recorder
    finally:
        graph.close()


def test_the_go2_launch_files_start_the_bridge_chain_on_the_interface_given(
    ament_env, prefix: Path, tmp_path: Path
) -> None:
    """go2_real.launch.xml needs the robot's network interface (no default: a wrong guess finds no
    robot, or another one); go2_unitree_sim.launch.xml runs the same chain on the simulated board.
    Each node resolves to an installed executable (starting the chain: tests/ros_nodes/test_unitree_bridge.py)."""
    share = prefix / "share" / "trot" / "launch"
    with pytest.raises(UnsupportedLaunchConstruct, match="'network_interface' has no default"):
        resolve(share / "go2_real.launch.xml")
    real = resolve(share / "go2_real.launch.xml", network_interface="enp2s0", bag_dir=str(tmp_path))
    assert [n.exec for n in real] == ["trot_unitree_bridge", "trot_policy_node", "trot_recorder_node"]
    bridge = {k: v for p in real[0].parameters if isinstance(p, dict) for k, v in p.items()}
    assert bridge == {"policy_path": "go2_flat", "network_interface": "enp2s0", "dds_domain": 0}
    sim = resolve(share / "go2_unitree_sim.launch.xml", record="false")
    assert [n.exec for n in sim] == ["trot_unitree_board", "trot_unitree_bridge", "trot_policy_node"]
    board, bridge = ({k: v for p in n.parameters if isinstance(p, dict) for k, v in p.items()} for n in sim[:2])
    assert (
        board["dds_domain"] == bridge["dds_domain"]
        and board["network_interface"] == "lo" == bridge["network_interface"]
    )
    for node in real + sim:
        assert Path(node.command(tmp_path)[0]).is_file()


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ('<include file="x.launch.xml"/>', "<include>"),
        ('<arg name="a" default="$(env HOME)"/>', "$(env HOME)"),
        ('<node pkg="trot" exec="trot_sim_node" name="s" respawn="true"/>', "respawn"),
        ('<node pkg="trot" exec="trot_sim_node" name="s"><env name="A" value="1"/></node>', "<env>"),
        ('<node pkg="trot" exec="trot_sim_node" name="s" if="maybe"/>', "maybe"),
    ],
)
def test_the_launch_reader_fails_on_what_it_does_not_understand(
    ament_env, tmp_path: Path, snippet: str, message: str
) -> None:
    file = tmp_path / "x.launch.xml"
    file.write_text(f"<launch>{snippet}</launch>")
    with pytest.raises(UnsupportedLaunchConstruct, match=re.escape(message)):
        resolve(file)
    with pytest.raises(UnsupportedLaunchConstruct, match="no launch arguments"):
        resolve(ROOT / "launch" / "real.launch.xml", robto="go2")


def test_replay_launch_runs_a_policy_in_shadow_on_a_logged_episode(
    ament_env, prefix: Path, tmp_path: Path, deploy_run: Path
) -> None:
    import json

    (summary,) = deploy_run.glob("*/summary.json")
    bag = json.loads(summary.read_text())["bag"]
    launch_file = prefix / "share" / "trot" / "launch" / "replay.launch.xml"
    with pytest.raises(UnsupportedLaunchConstruct, match="'bag' has no default"):
        resolve(launch_file)
    nodes = resolve(launch_file, bag=bag, rate="2.0")
    assert [n.exec for n in nodes] == ["trot_play_node", "trot_policy_node"]
    graph = LaunchedGraph()
    shadow: list[JointState] = []
    graph.node.create_subscription(JointState, "/shadow/joint_commands", shadow.append, 50)
    try:
        started = graph.launch(nodes, tmp_path)
        assert graph.wait_for_log(started["/trot_policy"], "standup -> running", timeout=40.0), graph.log(
            started["/trot_policy"]
        ) + graph.log(started["/trot_play"])
        # this probe may discover the policy's publisher seconds after it runs (a loaded CI machine),
        # and a stall there (at rate 2, 0.25 s of wall time is the launch file's 25 periods) may damp
        # the policy meanwhile, rightly: then ~/start again, as an operator would, while the bag plays
        policy, handled = started["/trot_policy"], 0

        def enough() -> bool:
            return sum(len(m.position) == 12 for m in shadow) > 20

        for _ in range(3):
            graph.wait_until(lambda seen=handled: enough() or graph.log(policy).count("damping: watchdog") > seen,
                             timeout=30.0)  # fmt: skip
            if enough() or graph.log(policy).count("damping: watchdog") == handled:
                break
            handled = graph.log(policy).count("damping: watchdog")
            graph.restarted("watchdog trip while the shadow policy ran")
            graph.press_start_until_it_runs(policy)
        running = [m for m in shadow if len(m.position) == 12]
        assert len(running) > 20, (f"the shadow policy commands on shadow/joint_commands ({len(shadow)} "
                                   f"received, {len(running)} with positions)\n{graph.log(started['/trot_policy'])}"
                                   f"\n{graph.log(started['/trot_play'])}")  # fmt: skip
        assert graph.node.count_publishers("/joint_commands") == 0, "shadow mode must not command the robot topic"
        assert graph.wait_for_log(started["/trot_play"], "played", timeout=30.0)
    finally:
        graph.close()
