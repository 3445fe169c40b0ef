"""``trot deploy --sim``: the MuJoCo robot node, the policy node and the recorder in one process.

ROS 2 manual composition: three ordinary nodes, created here instead of in three processes, still
talking over ROS topics through the middleware. A script node drives the command sequence (stand,
walk forward, turn, walk sideways, stop) on /cmd_vel; the recorder writes the episode's bag; the
summary (tracking per segment, loop timing, safety counters) is printed and saved next to it.

Executors: one single-threaded executor per node, each in its own thread (rclpy's multi-threaded
executor can deliver joint states late enough to trip the policy's watchdog); the timing-critical
work (physics, the control loop) runs in the nodes' own threads, so a slow callback cannot delay it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "policies" / "go2_flat"

SCRIPT: tuple[tuple[str, float, tuple[float, float, float]], ...] = (
    ("stand", 2.0, (0.0, 0.0, 0.0)),
    ("forward", 4.0, (0.6, 0.0, 0.0)),
    ("turn", 4.0, (0.0, 0.0, 0.8)),
    ("sideways", 4.0, (0.0, 0.3, 0.0)),
    ("stop", 2.0, (0.0, 0.0, 0.0)),
)


@dataclass
class DeployConfig:
    """``trot deploy --sim``: simulated robot + policy node + recorder, a scripted command sequence."""

    sim: bool = False
    """Run the MuJoCo robot node in this process (required: on a real robot the driver runs elsewhere
    and the launch files start the nodes: ros2 launch trot real.launch.xml)."""
    policy: Path = DEFAULT_POLICY
    """Policy artifact folder (or policy.onnx)."""
    out: Path = Path("out/deploy")
    """The episode's bag and summary.json go here."""
    real_time_factor: float = 1.0
    """1 = real time (the policy node runs on wall-clock deadlines, as on a robot); otherwise the
    simulator publishes /clock and every node, the script included, runs on that simulated time."""
    randomize: bool = False
    """Draw the training domain randomization once for the simulated robot."""
    shuffle_joint_order: bool = True
    """The robot publishes its joints in a permuted order: the policy must match them by name."""
    standup_s: float = 1.5
    """Seconds the policy node takes to stand the robot up before the script starts."""
    stale_periods: float = 25.0
    """The policy node's sensor watchdog, in control periods (25: 0.5 s). The simulated robot, its
    controller and the recorder share one process on a workstation, where a stall of the whole process
    (a busy machine) is no sensor failure, yet would trip a robot's 2-period watchdog into DAMPING.
    A robot runs with 2 (launch/config/nodes.yaml)."""
    settle_s: float = 1.0
    """Measure tracking only after this long in each segment."""
    domain_id: int | None = None
    """ROS_DOMAIN_ID for this run (default: the environment's)."""
    replay: bool = True
    """Afterwards, `trot replay render` + `resim` of the episode (video, plots, re-simulation divergence)."""

    def problems(self) -> list[str]:
        """Each unsound setting, named as its command-line flag with what it must be ([] if none):
        checked before anything starts (the nodes would refuse some of them only in their logs)."""
        from trot.policies.settings import at_least, unsound

        # at most 10: above it the script's /cmd_vel (at most 200 a second, or it is a flood) would come 0.05 s
        # or more of simulated time apart, and start to decay
        real_time = (lambda v: 0.0 < v <= 10.0), "a number > 0 and at most 10 (1 = real time)"
        found = unsound(self, {"real_time_factor": real_time, "standup_s": at_least(0),
                               "stale_periods": at_least(1, "(control periods)"), "settle_s": at_least(0)})  # fmt: skip
        shortest = min(seconds for _, seconds, _ in SCRIPT)
        if self.settle_s >= shortest:
            found.append(f"settle_s is {self.settle_s!r}: must be below the shortest segment ({shortest:g} s), "
                         "or that segment measures nothing")  # fmt: skip
        if self.domain_id is not None and not 0 <= self.domain_id <= 232:
            found.append(f"domain_id is {self.domain_id}: must be 0-232 (ROS 2's domain IDs)")
        return [f"--{p.split(' ', 1)[0].replace('_', '-')} {p.split(' ', 1)[1]}" for p in found]


def segment_tracking(odom: np.ndarray, segments: list[tuple[str, float, float, tuple]], settle_s: float) -> list[dict]:
    """Per segment: commanded vs. mean measured body velocity (vx, vy, yaw rate) after settling."""
    rows = []
    for name, t0, t1, cmd in segments:
        sel = odom[(odom[:, 0] >= t0 + settle_s) & (odom[:, 0] < t1)]
        measured = sel[:, 1:4].mean(axis=0) if len(sel) else np.full(3, np.nan)
        rows.append(
            {
                "segment": name,
                "command": [float(c) for c in cmd],
                "measured": [float(m) for m in measured],
                "error": float(np.abs(measured - np.asarray(cmd)).max()),
                "min_height": float(sel[:, 4].min()) if len(sel) else float("nan"),
            }
        )
    return rows


class DeployInterrupted(RuntimeError):
    """SIGINT/SIGTERM (Ctrl-C) before the policy ran: nothing to sum up."""


def odometry(bag: Path) -> np.ndarray:
    """Rows of (header stamp s, vx, vy, wz, z) from a bag's /odom."""
    from trot.replay.bag import read_messages

    rows = []
    for m in read_messages(bag, topics=["/odom"]):
        o = m.msg
        v, w, stamp = o.twist.twist.linear, o.twist.twist.angular, o.header.stamp
        rows.append((stamp.sec + 1e-9 * stamp.nanosec, v.x, v.y, w.z, o.pose.pose.position.z))
    return np.asarray(rows).reshape(-1, 5)


def deploy(cfg: DeployConfig) -> dict[str, Any]:
    if not cfg.sim:
        raise ValueError("sim: only `trot deploy --sim` runs here; on a robot use launch/real.launch.xml")
    if problems := cfg.problems():
        raise ValueError("; ".join(problems))
    if cfg.domain_id is not None:
        os.environ["ROS_DOMAIN_ID"] = str(cfg.domain_id)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from geometry_msgs.msg import Twist
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.signals import SignalHandlerOptions

    from trot.policies.artifact import read_artifact
    from trot.policies.controller import Mode
    from trot.ros_nodes.params import failed, realtime_friendly_gil, use_trot_dds_profile
    from trot.ros_nodes.policy_node import PolicyNode
    from trot.ros_nodes.recorder_node import RecorderNode
    from trot.ros_nodes.sim_node import SimNode

    read_artifact(cfg.policy)  # fail early and clearly on a bad artifact
    policy = str(cfg.policy)
    run_dir = cfg.out / time.strftime("%Y%m%d-%H%M%S")
    realtime_friendly_gil()
    # Ctrl-C / SIGTERM end the script early, then the normal teardown closes the bag (rclpy's own
    # handlers would shut the context down under the nodes' threads: a page of tracebacks)
    use_trot_dds_profile()
    rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
    interrupted = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: interrupted.set()) for sig in (signal.SIGINT, signal.SIGTERM)}

    def params(**kw: Any) -> list[Parameter]:
        return [Parameter(k, value=v) for k, v in kw.items()]

    nodes: list[Node] = []
    executors: list[SingleThreadedExecutor] = []
    spinners: list[threading.Thread] = []
    stop_spinning = threading.Event()

    wake_ups = []  # per node: a guard condition whose (empty) callback makes spin_once() return

    def spin(executor: SingleThreadedExecutor) -> None:
        # spin_once() without a timeout, as spin() does (with one, rclpy makes a timer for every wait)
        while not stop_spinning.is_set() and rclpy.ok():
            executor.spin_once()

    def join_spinners() -> None:
        """Stop every spinning thread, then the executors: shutting an executor down under a thread in
        its spin() races rclpy's callback handler, which then triggers a destroyed guard condition
        (an InvalidHandle traceback at the end of `make demo`)."""
        stop_spinning.set()
        for wake_up in wake_ups:
            wake_up.trigger()
        for thread in spinners:
            thread.join(timeout=2.0)
        for executor in executors:
            executor.shutdown(timeout_sec=1.0)
        executors.clear()

    # not real time: the simulator's /clock is every node's time (a policy on wall-clock deadlines would
    # tick every 20 ms of wall time, 20 x real_time_factor ms of the robot's), the script's too
    sim_time = cfg.real_time_factor != 1.0
    try:
        sim = SimNode(parameter_overrides=params(policy_path=policy, real_time_factor=cfg.real_time_factor,
                                                 randomize=cfg.randomize, publish_clock=sim_time,
                                                 shuffle_joint_order=cfg.shuffle_joint_order))  # fmt: skip
        nodes.append(sim)
        pol = PolicyNode(parameter_overrides=params(
            policy_path=policy, start_mode="auto", use_sim_time=sim_time, standup_s=cfg.standup_s,
            stale_periods=cfg.stale_periods))  # fmt: skip
        nodes.append(pol)
        meta = {"job": "trot deploy --sim", "config": json.dumps(dataclasses.asdict(cfg), default=str)}
        rec = RecorderNode(metadata=meta, parameter_overrides=params(output_dir=str(run_dir), policy_path=policy,
                                                                     use_sim_time=sim_time))  # fmt: skip
        nodes.append(rec)
        if rec.bag is None:  # (the episode would go unrecorded)
            raise RuntimeError(f"the recorder cannot open a bag in {run_dir} (see its error above)")
        script = Node("trot_deploy_script", parameter_overrides=params(use_sim_time=sim_time))
        nodes.append(script)

        def now() -> float:
            """The script's time, the one /odom is stamped with: the wall clock, or the simulator's."""
            return script.get_clock().now().nanoseconds * 1e-9

        cmd_pub = script.create_publisher(Twist, "cmd_vel", 10)
        for node in nodes:  # one single-threaded executor per node, each in its own thread
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            wake_ups.append(node.create_guard_condition(lambda: None))
            executors.append(executor)
            spinners.append(
                threading.Thread(target=spin, args=(executor,), name=f"spin_{node.get_name()}", daemon=True)
            )
            spinners[-1].start()

        def check_nodes() -> None:
            """A node whose loop raised (params.fail: its traceback is in the log above) ends the run."""
            if broken := [f"{node.get_name()}: {failed(node)}" for node in nodes if failed(node)]:
                raise RuntimeError(f"failed: {', '.join(broken)} (see the log above)")

        def wait_running(timeout: float) -> bool:
            end = time.monotonic() + timeout
            while time.monotonic() < end and not interrupted.is_set():
                check_nodes()
                if pol.controller is not None and pol.controller.mode is Mode.RUNNING:
                    return True
                time.sleep(0.02)
            return False

        timeout = 20.0 + cfg.standup_s / cfg.real_time_factor
        if not wait_running(timeout):
            if interrupted.is_set():
                raise DeployInterrupted(f"interrupted before the policy ran; bag: {rec.bags[-1]}")
            raise RuntimeError(f"the policy node did not reach RUNNING within {timeout:g} s (see its log above)")
        # /cmd_vel every 0.05 s of the robot's time at most, and at most 200 a second (1000 is a flood)
        resend = max(0.005, min(0.05, 0.05 / cfg.real_time_factor))
        segments, script_began, wall_began = [], now(), time.perf_counter()
        for name, seconds, cmd in SCRIPT:
            pol.get_logger().info(f"script: {name} {cmd} for {seconds:g} s")
            t0 = now()
            msg = Twist()
            msg.linear.x, msg.linear.y, msg.angular.z = cmd
            while now() < t0 + seconds and not interrupted.is_set():
                check_nodes()
                cmd_pub.publish(msg)
                interrupted.wait(resend)
            segments.append((name, t0, now(), cmd))
            if interrupted.is_set():
                pol.get_logger().warn(f"script: interrupted during {name}; closing the bag")
                break
        check_nodes()  # (a failure in the last moments of the script)
        c = pol.controller
        summary = {
            "policy": policy,
            "bag": str(rec.bags[-1]),
            "interrupted": interrupted.is_set(),
            "real_time_factor": {  # (what a machine too slow for the one asked for managed)
                "asked": cfg.real_time_factor,
                "achieved": (now() - script_began) / max(time.perf_counter() - wall_began, 1e-9),
            },
            "control": {
                **pol.timing(),
                "overruns": int(pol.overruns),
                "watchdog_trips": int(c.stats.watchdog_trips),
                "bad_inputs": int(c.stats.bad_inputs),
                "final_mode": c.mode.value,
            },
        }
        join_spinners()
        check_nodes()
        rec.close()
        summary["recorded"] = dict(rec.bag.counts)
        # tracking from the bag's /odom (a 250 Hz subscription here would be one more Python
        # consumer sharing the simulator's GIL)
        summary["segments"] = segment_tracking(odometry(Path(summary["bag"])), segments, cfg.settle_s)
    finally:
        join_spinners()
        for node in reversed(nodes):
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary_file = run_dir / "summary.json"
    summary_file.write_text(json.dumps(summary, indent=2))  # before the replay: if it fails, nothing is lost
    if cfg.replay and not summary["interrupted"]:
        summary |= _replay(Path(summary["bag"]))
        summary_file.write_text(json.dumps(summary, indent=2))
    return summary


def _replay(bag: Path) -> dict[str, Any]:
    """`trot replay render` + `resim` of the episode: {"replay": figures}, or {"replay_error": why}
    (with "replay_interrupted" after Ctrl-C or SIGTERM, which end it, the workers too)."""
    from trot.replay.episode import ReplayError
    from trot.replay.report import render_cmd, resim_cmd

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    out = bag.with_name(bag.name + "_replay")
    try:
        render = render_cmd(bag, out)
        resimulated = resim_cmd(bag, out)
    except KeyboardInterrupt:
        return {"replay_error": "interrupted", "replay_interrupted": True}
    except (ReplayError, OSError, RuntimeError, ValueError, ImportError) as exc:
        return {"replay_error": f"{type(exc).__name__}: {exc}"}
    finally:
        signal.signal(signal.SIGTERM, previous)
    return {"replay": {
        "report": render["report"],
        "render_s": render["seconds"],
        "video_error": render["video_error"],
        "resim_real_time_factor": resimulated["real_time_factor"],
        "resim_joint_rms_rad": resimulated["joint_rms_mean_rad"],
        "resim_base_vel_error_mps": resimulated["base_vel_error_mean_mps"],
    }}  # fmt: skip


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="trot deploy --sim: command tracking (body frame, after settling)")
    for col in ("segment", "command vx vy wz", "measured vx vy wz", "max error", "min height m"):
        table.add_column(col)
    for row in summary["segments"]:
        table.add_row(
            row["segment"],
            " ".join(f"{v:+.2f}" for v in row["command"]),
            " ".join(f"{v:+.2f}" for v in row["measured"]),
            f"{row['error']:.3f}",
            f"{row['min_height']:.2f}",
        )
    console = Console()
    console.print(table)
    rtf = summary["real_time_factor"]
    if rtf["asked"] != 1.0:
        console.print(f"simulated at {rtf['achieved']:.2f}x real time (asked {rtf['asked']:g}x); the policy node and "
                      "the script on its /clock")  # fmt: skip
    c = summary["control"]
    console.print(
        f"control loop {c['loop_rate_hz']:.1f} Hz, period jitter p50 {c['period_jitter_p50_ms']:.3f} ms "
        f"p99 {c['period_jitter_p99_ms']:.3f} ms, overruns {c['overruns']}, watchdog trips {c['watchdog_trips']}, "
        f"bad inputs {c['bad_inputs']}, final mode {c['final_mode']}"
    )
    counts = ", ".join(f"{t} {n}" for t, n in summary["recorded"].items())
    console.print(f"bag: {summary['bag']} ({counts})")
    if summary.get("interrupted"):
        last = summary["segments"][-1]["segment"] if summary["segments"] else "the stand-up"
        console.print(f"interrupted during {last}: the bag holds the episode until then (no replay)")
    if "replay" in summary:
        r = summary["replay"]
        console.print(
            f"replay: re-simulated at {r['resim_real_time_factor']:.0f}x real time, joint RMS divergence "
            f"{r['resim_joint_rms_rad']:.4f} rad, base velocity divergence {r['resim_base_vel_error_mps']:.4f} m/s; "
            f"video + plots in {r['render_s']:.0f} s"
        )
        if r.get("video_error"):
            console.print(f"[yellow]{r['video_error']}[/yellow]")
        console.print(f"report: {r['report']}")
    if "replay_error" in summary:
        console.print(f"[red]replay: {summary['replay_error']}[/red] (the episode's bag and summary.json are complete)")
