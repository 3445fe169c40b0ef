"""Sensor dropouts, a /cmd_vel storm from another process, and jumps of the simulated clock."""

from __future__ import annotations

import math
import re
import sys
import time

import numpy as np

from trot.testing.faults.policy import PolicyUnderTest
from trot.testing.faults.table import Row
from trot.testing.graph import threaded_graph

STORM = """
import sys, time
import rclpy
from geometry_msgs.msg import Twist
rclpy.init()
node = rclpy.create_node("cmd_vel_storm", start_parameter_services=False, enable_rosout=False)
pub = node.create_publisher(Twist, "cmd_vel", 10)
while pub.get_subscription_count() == 0:
    time.sleep(0.01)
fast, ok = Twist(), Twist()
ok.linear.x = 0.3
fast.linear.x, fast.angular.z = 50.0, -50.0
count, t0 = 0, time.time()
end = t0 + float(sys.argv[1])
while time.time() < end:
    pub.publish(fast if count % 2 else ok)
    count += 1
print(f"storm: {count} messages from {t0:.6f} to {time.time():.6f}", flush=True)
"""


def dropouts(repeats: int = 3) -> list[Row]:
    """Sensors stop (time from the last sample to the first damping command, both node-clock
    stamps), a /cmd_vel storm, and sim clock jumps (time from the jump to the damping command's
    arrival here); after each, DAMPING must hold with the sensors back until ~/start."""
    rows: list[Row] = []
    violations: list[str] = []

    def row(label: str, delays: list[float], stalls: list[float], held: list[bool], period_ms: float,
            after: str) -> Row:  # fmt: skip
        d, s = np.array(delays) * 1e3, np.array(stalls) * 1e3
        return Row("policy node", f"{label} ({len(d)}x)", f"DAMPING {np.median(d):.1f} ms p50, "
                   f"{d.max():.1f} ms max ({d.max() / period_ms:.2f} periods) after {after}; held until ~/start: "
                   f"{sum(held)}/{len(held)}; longest stall measured {s.max():.1f} ms", "<= 3 periods; held",
                   d.max() <= 3 * period_ms and all(held),
                   {"delays_ms": d.tolist(), "stalls_ms": s.tolist(), "held": held,
                    "period_ms": period_ms})  # fmt: skip

    with threaded_graph() as r:
        p = PolicyUnderTest(r)
        period_ms = p.period * 1e3
        for label, attr, stamp in (("dropout: joint states stop", "js_on", "last_js_stamp"),
                                   ("dropout: IMU alone stops", "imu_on", "last_imu_stamp")):  # fmt: skip
            delays, stalls, held = [], [], []
            for _ in range(repeats):
                p.ensure_running(timeout=60.0)
                time.sleep(0.2)
                setattr(p, attr, False)
                time.sleep(0.05)
                last = getattr(p, stamp)
                damped = p.first_damping_after(last)
                setattr(p, attr, True)  # the sensor comes back...
                time.sleep(0.3)
                held.append(p.mode == "damping")  # ...and DAMPING holds until an explicit start
                delays.append(damped - last if damped is not None else math.inf)
                stalls.append(p.stall(last, damped if damped is not None else time.time()))
            rows.append(row(label, delays, stalls, held, period_ms, "the last sample"))
        # teleop at 100 Hz (the fast end of normal) must not trip the flood detection
        from geometry_msgs.msg import Twist

        p.ensure_running()
        teleop, t0 = Twist(), time.time()
        teleop.linear.x = 0.5
        while time.time() - t0 < 1.0:
            p.cmd_pub.publish(teleop)
            time.sleep(0.01)
        with p.lock:
            stamps = np.array([c[1] for c in p.commands if t0 <= c[1] and c[2]])
        rate = stamps.size / (time.time() - t0)
        rows.append(Row("policy node", "/cmd_vel from teleop at 100 Hz (1 s)", f"stayed {p.mode}; {rate:.1f} "
                        "commands/s", "RUNNING, 50 commands/s", p.mode == "running" and rate >= 45.0,
                        {"mode": p.mode, "command_rate": rate}))  # fmt: skip
        # a /cmd_vel storm from another process (a runaway teleop node), as fast as it can publish
        # for 1 s, half of it out of range, while this process keeps streaming the sensors
        delays, stalls, held, reasons, rates = [], [], [], [], []
        for _ in range(repeats):
            p.ensure_running()
            time.sleep(0.2)
            storm = r.start_args([sys.executable, "-c", STORM, "1.0"])
            if not r.wait_for_log(storm, "storm: ", timeout=60.0):
                raise RuntimeError(f"the storm publisher did not run: {r.log(storm)}")
            match = re.search(r"storm: (\d+) messages from ([\d.]+) to ([\d.]+)", r.log(storm))
            count, t0, t1 = int(match.group(1)), float(match.group(2)), float(match.group(3))
            rates.append(count / (t1 - t0))
            damped = p.first_damping_after(t0)
            delays.append(damped - t0 if damped is not None else math.inf)
            stalls.append(p.stall(t0, damped if damped is not None else time.time()))
            time.sleep(0.3)  # the storm is over
            held.append(p.mode == "damping")
            reasons.append(p.log().count("/cmd_vel flood"))
        rows.append(row(f"/cmd_vel storm from another process at {np.median(rates):.0f} msg/s", delays, stalls,
                        held, period_ms, "the storm began"))  # fmt: skip
        rows[-1].data["flood_logged"] = reasons
        with p.lock:
            violations += p.violations
    with threaded_graph() as r:  # sim time: the clock jumps (a simulator reset, a replayed bag looping)
        p = PolicyUnderTest(r, sim_time=True)
        for label, jump in (("sim clock jumps forward 10 s", 10.0), ("sim clock jumps back 20 s", -20.0)):
            delays, stalls, held = [], [], []
            for _ in range(repeats):
                p.ensure_running(timeout=60.0)
                time.sleep(0.2)
                t = time.time()
                p.time_offset += jump  # clock and sensor stamps jump together: only the jump itself is wrong
                damped = p.first_damping_after(t, by_stamp=False)  # stamps are sim time: use receipt
                delays.append(damped - t if damped is not None else math.inf)
                stalls.append(p.stall(t, damped if damped is not None else time.time(), by_stamp=False))
                time.sleep(0.3)
                held.append(p.mode == "damping")
            rows.append(row(label, delays, stalls, held, period_ms, "the jump"))
        # not a fault: a player catching up publishes /clock and samples in bursts; each sample
        # must be judged against the /clock published with it, never as "from the future". (The
        # watchdog may still trip: at ~50x real time a sample that DDS delivers 1 ms after its
        # /clock is 50 ms late in sim time; that is reported, not judged.)
        p.ensure_running(timeout=60.0)
        before, trips_before, t0 = p.log().count("bad input"), p.log().count("watchdog:"), time.time()
        bursts = p.stream_in_bursts(3.0, burst_s=0.15)
        time.sleep(0.2)
        commands = p.position_commands_since(t0) / (time.time() - t0)
        faults_logged, trips = p.log().count("bad input") - before, p.log().count("watchdog:") - trips_before
        rows.append(Row("policy node", f"sim time: /clock and samples in {bursts} bursts of 0.15 s (3 s)",
                        f"{faults_logged} bad inputs logged; ended {p.mode}; {trips} watchdog trips; "
                        f"{commands:.1f} commands/s", "0 bad inputs", faults_logged == 0,
                        {"mode": p.mode, "bad_inputs": faults_logged, "watchdog_trips": trips,
                         "command_rate": commands, "log": p.log()[-2000:]}))  # fmt: skip
        with p.lock:
            violations += p.violations
    rows.append(Row("policy node", "dropouts: commands published outside limits or non-finite", str(len(violations)),
                    "0", not violations, {"violations": violations}))  # fmt: skip
    return rows
