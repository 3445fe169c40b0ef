"""A policy node run in this fresh process through what it does while it controls a robot: stand-up,
RUNNING, /diagnostics, an estop over its service, ~/start again and a watchdog trip. Prints, as
JSON, the modules imported after configure, the modes it passed through and the state each
/diagnostics gave.

A module imported while the control loop runs is first-time work (found: numpy.percentile's first
call imports numpy.ma, 35-65 ms with the GIL held in stretches): on a 16-core machine it froze the
control thread for ~50 ms once per process and tripped the watchdog. Only a fresh interpreter shows
it, hence this script (tests/ros_nodes/test_policy_node.py runs it)."""

from __future__ import annotations

import json
import sys
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Imu, JointState
from std_srvs.srv import Trigger

from trot.policies.artifact import read_artifact
from trot.policies.controller import Mode
from trot.ros_nodes.policy_node import PolicyNode
from trot.testing import POLICY


def main() -> None:
    rclpy.init()
    _, contract = read_artifact(POLICY)
    feeder = rclpy.create_node("probe_feeder")
    js_pub = feeder.create_publisher(JointState, "joint_states", 10)
    imu_pub = feeder.create_publisher(Imu, "imu", 10)
    feeding = threading.Event()
    feeding.set()
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            if feeding.is_set():
                stamp = feeder.get_clock().now().to_msg()
                js = JointState(name=list(contract.joint_names), position=list(contract.default_joint_pos),
                                velocity=[0.0] * contract.num_joints)  # fmt: skip
                js.header.stamp = stamp
                imu = Imu()
                imu.header.stamp = stamp
                imu.orientation.w = 1.0
                js_pub.publish(js)
                imu_pub.publish(imu)
            time.sleep(0.005)

    feeding_thread = threading.Thread(target=feed, daemon=True)
    feeding_thread.start()
    diagnosed: list[str] = []  # the state in each /diagnostics: one must come while RUNNING
    feeder.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diagnosed.extend(
        kv.value for status in m.status for kv in status.values if kv.key == "state"), 10)  # fmt: skip
    # stale_periods 10 (0.2 s): the watchdog trips when this probe stops feeding, not on a loaded CI's stall
    node = PolicyNode(parameter_overrides=[
        Parameter("policy_path", value=str(POLICY)), Parameter("start_mode", value="manual"),
        Parameter("standup_s", value=0.3), Parameter("stale_periods", value=10.0)])  # fmt: skip
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(feeder)

    def spin() -> None:  # (until stop: an executor shut down under its spin() can abort the process at exit)
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinning = threading.Thread(target=spin, daemon=True)
    spinning.start()
    modes: list[str] = []

    def wait_for(mode: Mode, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while node.controller.mode is not mode and time.monotonic() < end:
            time.sleep(0.002)
        modes.append(node.controller.mode.value)

    def call(name: str) -> None:
        client = feeder.create_client(Trigger, f"trot_policy/{name}")
        client.wait_for_service(timeout_sec=5.0)
        client.call(Trigger.Request(), timeout_sec=5.0)

    node.trigger_configure()
    before = set(sys.modules)
    node.trigger_activate()
    call("start")
    wait_for(Mode.RUNNING)
    time.sleep(1.3)  # a /diagnostics (1 Hz) while running
    modes.append(node.controller.mode.value)
    call("estop")
    wait_for(Mode.DAMPING)
    call("start")
    wait_for(Mode.RUNNING)
    feeding.clear()  # the sensors stop: the watchdog damps
    wait_for(Mode.DAMPING)
    time.sleep(1.1)  # a /diagnostics in DAMPING
    imported = sorted(set(sys.modules) - before)
    print(json.dumps({"imported": imported, "modes": modes, "diagnostics": diagnosed,
                      "watchdog_trips": node.controller.stats.watchdog_trips}))  # fmt: skip
    node.trigger_deactivate()
    stop.set()
    for thread in (spinning, feeding_thread):
        thread.join(timeout=5.0)
    executor.shutdown()
    node.destroy_node()
    feeder.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
