"""The Unitree chain's timing: rt/lowstate -> rt/lowcmd through trot_unitree_bridge and the policy node,
and the bridge's rt/lowcmd rate and jitter, over CycloneDDS on the loopback interface.

This process plays the Go2's board: it serves the motion switcher (no built-in controller holds the
robot), publishes rt/lowstate and reads rt/lowcmd (Unitree's SDK). The bridge and the policy node
(``control_trigger:=joint_states``, so it ticks on each fresh joint state) run as processes.

1. Rate and jitter: rt/lowstate at 500 Hz for ``--seconds``; the arrival times of the bridge's
   rt/lowcmd here give its rate and its period jitter (|period - 2 ms|) p50/p99.
2. Latency (ping-pong): one rt/lowstate every 20 ms (joint positions perturbed, so that each tick's
   targets differ), timed to the first rt/lowcmd whose targets changed: two CycloneDDS hops, two Fast
   DDS hops, the bridge's conversions, the policy's observation and inference, and the bridge's
   holding of the newest target until its next 2 ms write.
3. The floor: the same ping-pong against a bare CycloneDDS echo process (rt/lowstate in, rt/lowcmd out).

Targets (issue 29): latency p99 <= 2 ms above the floor; 500 Hz with jitter p99 <= 0.5 ms.

    python bench/unitree_timing.py [--seconds 10] [--pings 300]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # (a checkout: trot.testing is not installed)

from trot.ros_nodes import unitree_map as um  # noqa: E402
from trot.ros_nodes.unitree_board import MotionSwitcher  # noqa: E402
from trot.sim.robot import load_robot  # noqa: E402
from trot.testing import POLICY  # noqa: E402
from trot.testing.processes import NodeProcesses, next_domain, stop_processes, wait  # noqa: E402

ECHO = """
import sys, time
from unitree_sdk2py.core.channel import ChannelFactoryInitialize, ChannelPublisher, ChannelSubscriber
from unitree_sdk2py.idl.unitree_go.msg.dds_ import LowCmd_, LowState_
from trot.ros_nodes import unitree_map as um
ChannelFactoryInitialize(int(sys.argv[1]), "lo")
pub = ChannelPublisher(um.LOWCMD_TOPIC, LowCmd_)
pub.Init()
cmd = um.stop_command()
def echo(state):
    cmd.motor_cmd[0].q = state.motor_state[0].q  # (each reply differs, as the policy's targets do)
    cmd.crc = um.crc(cmd)
    pub.Write(cmd)
sub = ChannelSubscriber(um.LOWSTATE_TOPIC, LowState_)
sub.Init(echo, 0)
print("echo ready", flush=True)
time.sleep(3600)
"""


def on_time(t: float) -> None:
    """Sleep until 1 ms before ``t``, then spin: the states leave on time, as a board's do (a wake-up
    from sleep is late by up to a millisecond here, which would spread the chain's arrival phases)."""
    time.sleep(max(0.0, t - 1e-3 - time.perf_counter()))
    while time.perf_counter() < t:
        pass


class Board:
    """This process's side: the motion switcher, rt/lowstate out, rt/lowcmd in (arrival, targets)."""

    mode = ""  # (what MotionSwitcher reports: no built-in controller holds the robot)

    def __init__(self, domain: int) -> None:
        from unitree_sdk2py.core.channel import ChannelFactoryInitialize, ChannelPublisher, ChannelSubscriber
        from unitree_sdk2py.idl.unitree_go.msg.dds_ import LowCmd_, LowState_

        ChannelFactoryInitialize(domain, "lo")
        robot = load_robot("go2")
        self.motors = um.MotorMap.of(robot)
        self.stand = np.array([j.default for j in robot.joints.values()])
        self.switcher = MotionSwitcher(self)
        self.switcher.Init()
        self.switcher.Start()
        self.state = um.new_state()
        self.state.imu_state.quaternion = [1.0, 0.0, 0.0, 0.0]
        self.pub = ChannelPublisher(um.LOWSTATE_TOPIC, LowState_)
        self.pub.Init()
        self.arrivals: list[float] = []
        self.written: list[float] = []  # the bridge's DDS source timestamps: when it wrote each one
        self._last: tuple[float, ...] = ()
        self._armed = False
        self.replied = threading.Event()
        self.reply_at = 0.0
        self.sub = ChannelSubscriber(um.LOWCMD_TOPIC, LowCmd_)
        self.sub.Init(self._on_lowcmd, 0)
        self.rng = np.random.default_rng(0)

    def set_mode(self, name: str) -> None:  # (MotionSwitcher's release/select: nothing to do here)
        pass

    def _on_lowcmd(self, cmd) -> None:
        now = time.perf_counter()
        self.arrivals.append(now)
        self.written.append(cmd.sample_info.source_timestamp * 1e-9)
        targets = tuple(cmd.motor_cmd[s].q for s in self.motors.slots)
        if self._armed and targets != self._last:
            self.reply_at, self._armed = now, False
            self.replied.set()
        self._last = targets

    def publish(self, noise: float = 0.002) -> float:
        """One state (the standing pose, perturbed); its send time."""
        q = self.stand + self.rng.normal(0.0, noise, len(self.stand))
        self.motors.write_state(self.state, q, np.zeros(len(q)), np.zeros(len(q)))
        self.state.tick = (self.state.tick + 2) & 0xFFFFFFFF
        self.state.crc = um.crc(self.state)
        t = time.perf_counter()
        self.pub.Write(self.state)
        return t

    def feed(self, seconds: float, rate: float = 500.0) -> None:
        next_t = time.perf_counter()
        end = next_t + seconds
        while next_t < end:
            self.publish()
            next_t += 1.0 / rate
            time.sleep(max(0.0, next_t - time.perf_counter()))

    def ping_pong(self, pings: int, interval: float = 0.02, wait_s: float = 0.05) -> np.ndarray:
        """Latencies, ms, to the first rt/lowcmd whose targets changed (a lost reply counts as ``wait_s``)."""
        out = []
        next_t = time.perf_counter()
        for _ in range(pings):
            next_t += interval
            on_time(next_t)
            self.replied.clear()
            self._armed = True
            sent = self.publish()
            out.append((self.reply_at - sent) if self.replied.wait(wait_s) else wait_s)
        self._armed = False
        return np.array(out) * 1e3


def figures(ms: np.ndarray) -> str:
    return f"p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms, max {ms.max():.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="500 Hz feed for the rate and jitter")
    parser.add_argument("--pings", type=int, default=300, help="round trips, each way")
    parser.add_argument("--policy-params", nargs="*", default=[], metavar="NAME:=VALUE",
                        help="more policy node parameters, e.g. busy_wait_s:=0.0003")  # fmt: skip
    args = parser.parse_args()
    sys.setswitchinterval(2e-4)  # (this process's reader stamps arrivals beside its 500 Hz feed thread)
    domain = next_domain()
    board = Board(domain)
    nodes = NodeProcesses()
    try:
        bridge = nodes.start("trot.ros_nodes.unitree_bridge", f"policy_path:={POLICY}", "network_interface:=lo",
                             f"dds_domain:={domain}")  # fmt: skip
        policy = nodes.start("trot.ros_nodes.policy_node", f"policy_path:={POLICY}", "start_mode:=auto",
                             "standup_s:=0.5", "stale_periods:=5.0", "control_trigger:=joint_states",
                             *args.policy_params)  # fmt: skip
        running = threading.Thread(target=lambda: wait(lambda: "standup -> running" in nodes.log(policy), 60.0))
        running.start()
        while running.is_alive():
            board.feed(0.2)
        if "standup -> running" not in nodes.log(policy):
            raise SystemExit(f"the policy node never ran:\n{nodes.log(policy)[-2000:]}\n{nodes.log(bridge)[-2000:]}")
        board.arrivals.clear()
        board.written.clear()
        board.feed(args.seconds)
        settled = slice(250, None)  # (the first half second: the feed settling)
        t, w = np.array(board.arrivals)[settled], np.array(board.written)[settled]
        jitter = np.abs(np.diff(t) - 0.002) * 1e3
        jitter_written = np.abs(np.diff(w) - 0.002) * 1e3
        rate = (len(t) - 1) / (t[-1] - t[0])
        chain = board.ping_pong(args.pings)
        damped = "running -> damping" in nodes.log(policy)
    finally:
        logs = nodes.stop()
    echo = NodeProcesses()
    try:
        index = echo.start_args([sys.executable, "-c", ECHO, str(domain)])
        echo.wait_for_log(index, "echo ready", timeout=30.0)
        board.feed(1.0, rate=50.0)
        floor = board.ping_pong(args.pings)
    finally:
        stop_processes(echo.procs)
    print(f"rt/lowcmd from the bridge: {rate:.1f} Hz over {args.seconds:g} s; period jitter p50 "
          f"{np.percentile(jitter, 50):.3f} ms, p99 {np.percentile(jitter, 99):.3f} ms, max {jitter.max():.2f} ms "
          f"(target: 500 Hz, p99 <= 0.5 ms)")  # fmt: skip
    print(f"  as the bridge wrote them (DDS source timestamps): period jitter p50 "
          f"{np.percentile(jitter_written, 50):.3f} ms, p99 {np.percentile(jitter_written, 99):.3f} ms, max "
          f"{jitter_written.max():.2f} ms")  # fmt: skip
    print(f"rt/lowstate -> rt/lowcmd through bridge + policy node ({args.pings} pings): {figures(chain)}")
    print(f"floor, a bare CycloneDDS echo: {figures(floor)}")
    above = np.percentile(chain, 99) - np.percentile(floor, 99)
    print(f"p99 above the floor: {above:.2f} ms (target <= 2 ms)")
    if damped:
        print("note: the policy node damped during the run (see its log):\n" + logs[1][-1500:])


if __name__ == "__main__":
    main()
