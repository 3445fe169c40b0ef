"""Replay a recorded episode (any rosbag2 bag with the standard message types): render, re-simulate,
shadow-evaluate another policy. No ROS needed: bags are read with `rosbags`.

Topics are found by message type and name suffix (``joint_states``, ``imu``, ``odom``,
``cmd_vel``, ``joint_commands``), so namespaced bags work. Times are the bag's receive timestamps
in seconds from the first message; joint arrays are in the robot config's joint order.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np

from trot.replay.bag import read_messages, read_metadata

TOPIC_TYPES = {
    "joint_states": "sensor_msgs/msg/JointState",
    "imu": "sensor_msgs/msg/Imu",
    "odom": "nav_msgs/msg/Odometry",
    "cmd_vel": "geometry_msgs/msg/Twist",
    "joint_commands": "sensor_msgs/msg/JointState",
    "state": "std_msgs/msg/String",  # the policy node's mode (trot_policy/state), on every change
}


class ReplayError(ValueError):
    pass


@dataclass
class Series:
    t: np.ndarray  # s since the episode's first message (bag receive time)
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.t)


@dataclass
class Episode:
    path: Path
    metadata: dict
    joint_names: list[str]
    joint_states: Series | None  # pos, vel [n, J]
    imu: Series | None  # quat (wxyz) [n, 4], gyro [n, 3]
    odom: Series | None  # pos [n, 3], quat [n, 4], linvel (body) [n, 3], angvel (body) [n, 3]
    cmd_vel: Series | None  # cmd [n, 3]
    joint_commands: Series | None  # target [n, J] (NaN rows: damping), stamp [n] (header, s since t0)
    state: Series | None  # mode [n] (str): passive / standup / running / damping
    notes: list[str] = field(default_factory=list)  # what was missing or unreadable
    policy_parameters: dict | None = None  # what the policy node ran with (trot_policy/parameters, JSON)

    def require(self, *topics: str, purpose: str) -> None:
        missing = [t for t in topics if getattr(self, t) is None or not len(getattr(self, t))]
        if missing:
            raise ReplayError(f"{self.path}: no {', '.join(missing)} messages: cannot compute {purpose}")


def _stamp(header) -> float:
    return header.stamp.sec + 1e-9 * header.stamp.nanosec


def load_episode(path: str | Path, joint_names: list[str] | None = None) -> Episode:
    """Read a bag into arrays. Unreadable tails (a truncated bag) end the read with a note."""
    from trot.sim.robot import load_robot

    path = Path(path)
    if not path.exists():
        raise ReplayError(f"{path}: no such bag")
    metadata = read_metadata(path)
    names = joint_names or list(load_robot(metadata.get("robot", "go2")).joint_names)
    rows: dict[str, list] = {k: [] for k in TOPIC_TYPES}
    notes: list[str] = []
    parameters = None
    try:
        for m in read_messages(path, msgtypes=set(TOPIC_TYPES.values())):
            kind = next((k for k, ty in TOPIC_TYPES.items() if m.msgtype == ty and m.topic.endswith(k)), None)
            if kind is not None:
                rows[kind].append((m.timestamp_ns, m.msg))
            elif parameters is None and m.topic.endswith("trot_policy/parameters"):
                try:
                    parameters = json.loads(m.msg.data)
                except json.JSONDecodeError as exc:
                    notes.append(f"{m.topic} is not JSON ({exc}): the policy node's parameters are unknown")
    except Exception as exc:  # rosbags raises several types for a damaged file
        if not any(rows.values()):
            raise ReplayError(f"{path}: unreadable bag: {exc} (try `trot bag recover {path}`)") from exc
        notes.append(f"the bag is damaged after the first {sum(map(len, rows.values()))} messages ({exc})")
    stamps = [r[0][0] for r in rows.values() if r]
    if not stamps:
        raise ReplayError(f"{path}: none of the topics {list(TOPIC_TYPES)} is in the bag")
    t0 = min(stamps)

    def times(kind: str) -> np.ndarray:
        return (np.array([ts for ts, _ in rows[kind]], dtype=np.int64) - t0) * 1e-9

    def ordered(msg, field_name: str) -> np.ndarray:
        values = dict(zip(msg.name, getattr(msg, field_name), strict=False))
        return np.array([values.get(n, np.nan) for n in names])

    series: dict[str, Series | None] = {}
    if rows["joint_states"]:
        msgs = [m for _, m in rows["joint_states"]]
        series["joint_states"] = Series(times("joint_states"), {
            "pos": np.array([ordered(m, "position") for m in msgs]),
            "vel": np.array([ordered(m, "velocity") if len(m.velocity) else np.zeros(len(names)) for m in msgs]),
        })  # fmt: skip
    if rows["imu"]:
        msgs = [m for _, m in rows["imu"]]
        series["imu"] = Series(times("imu"), {
            "quat": np.array([[m.orientation.w, m.orientation.x, m.orientation.y, m.orientation.z] for m in msgs]),
            "gyro": np.array([[m.angular_velocity.x, m.angular_velocity.y, m.angular_velocity.z] for m in msgs]),
        })  # fmt: skip
    if rows["odom"]:
        msgs = [m for _, m in rows["odom"]]
        series["odom"] = Series(times("odom"), {
            "pos": np.array([[m.pose.pose.position.x, m.pose.pose.position.y, m.pose.pose.position.z] for m in msgs]),
            "quat": np.array([[m.pose.pose.orientation.w, m.pose.pose.orientation.x, m.pose.pose.orientation.y,
                               m.pose.pose.orientation.z] for m in msgs]),
            "linvel": np.array([[m.twist.twist.linear.x, m.twist.twist.linear.y, m.twist.twist.linear.z]
                                for m in msgs]),
            "angvel": np.array([[m.twist.twist.angular.x, m.twist.twist.angular.y, m.twist.twist.angular.z]
                                for m in msgs]),
        })  # fmt: skip
    if rows["cmd_vel"]:
        msgs = [m for _, m in rows["cmd_vel"]]
        series["cmd_vel"] = Series(times("cmd_vel"), {"cmd": np.array([[m.linear.x, m.linear.y, m.angular.z]
                                                                        for m in msgs])})  # fmt: skip
    if rows["joint_commands"]:
        msgs = [m for _, m in rows["joint_commands"]]
        target = np.array([ordered(m, "position") if len(m.position) else np.full(len(names), np.nan) for m in msgs])
        series["joint_commands"] = Series(times("joint_commands"), {
            "target": target, "stamp": np.array([_stamp(m.header) for m in msgs]) - t0 * 1e-9,
        })  # fmt: skip
    if rows["state"]:
        series["state"] = Series(times("state"), {"mode": np.array([m.data for _, m in rows["state"]])})
    for kind in TOPIC_TYPES:
        if kind not in series:
            notes.append(f"no {kind} messages")
    return Episode(path, metadata, names, *(series.get(k) for k in TOPIC_TYPES), notes=notes,
                   policy_parameters=parameters)  # fmt: skip


def _latest(series: Series, t: np.ndarray) -> np.ndarray:
    """Index of the latest sample at or before each time (0 before the first)."""
    return np.clip(np.searchsorted(series.t, t, side="right") - 1, 0, len(series) - 1)


def _interp(series: Series, key: str, t: np.ndarray) -> np.ndarray:
    values = series.values[key]
    return np.stack([np.interp(t, series.t, values[:, j]) for j in range(values.shape[1])], axis=1)


def _quat_rotate(quat: np.ndarray, vec: np.ndarray) -> np.ndarray:
    out = np.zeros(3)
    mujoco.mju_rotVecQuat(out, vec, quat)
    return out


# ---------------------------------------------------------------------------------------------- resim
@dataclass
class ResimResult:
    t: np.ndarray  # the logged joint-state times within the re-simulated span
    joint_pos_sim: np.ndarray
    joint_pos_log: np.ndarray
    base_vel_sim: np.ndarray  # body-frame linear velocity [n, 3]
    base_vel_log: np.ndarray | None
    joint_rms: np.ndarray  # per joint, rad
    base_vel_error: np.ndarray | None  # |v_sim - v_log| (xy) over time
    seconds_simulated: float
    wall_s: float


def resim(ep: Episode, policy_path: str | None = None) -> ResimResult:
    """Re-simulate from the logged initial state, applying the logged joint commands at their logged
    times with the contract's PD gains (damping rows: zero stiffness, damping_kd)."""
    from trot.policies.artifact import read_artifact
    from trot.sim.robot import load_robot
    from trot.sim.world import DAMPING_KD, compile_model, home_qpos, joint_gains, set_joint_gains

    ep.require("joint_states", "joint_commands", purpose="a re-simulation (initial joint state, commands)")
    robot = load_robot(ep.metadata.get("robot", "go2"))
    model, index = compile_model(robot)
    data = mujoco.MjData(model)
    kp, kd = joint_gains(robot)
    policy_path = policy_path or ep.metadata.get("policy_path")
    if policy_path:
        try:
            _, contract = read_artifact(policy_path)
            kp, kd = joint_gains(robot, contract, ep.joint_names)
        except Exception as exc:
            ep.notes.append(f"PD gains from the robot config ({policy_path}: {exc})")
    js, cmds = ep.joint_states, ep.joint_commands
    t_start = max(js.t[0], cmds.t[0], ep.odom.t[0] if ep.odom is not None else 0.0)
    qpos = home_qpos(model, index, robot)
    k0 = _latest(js, np.array([t_start]))[0]
    qpos[index.qpos_adr] = js.values["pos"][k0]
    data.qvel[index.qvel_adr] = js.values["vel"][k0]
    if ep.odom is not None:
        o = _latest(ep.odom, np.array([t_start]))[0]
        qpos[0:3], qpos[3:7] = ep.odom.values["pos"][o], ep.odom.values["quat"][o]
        data.qvel[0:3] = _quat_rotate(qpos[3:7], ep.odom.values["linvel"][o])  # free joint: world linear velocity
        data.qvel[3:6] = ep.odom.values["angvel"][o]  # and body angular velocity
    else:
        ep.notes.append("no odom: the re-simulation starts from the default base pose at rest")
    data.qpos[:] = qpos
    mujoco.mj_forward(model, data)
    ids = index.actuator_ids
    # DAMPING: the simulated driver's default damping gain (the bag does not carry the driver's parameters)
    no_kp, damping_kd = np.zeros_like(kp), np.full_like(kd, DAMPING_KD)
    dt = model.opt.timestep
    t_end = min(js.t[-1], cmds.t[-1] + 0.1)
    steps = int((t_end - t_start) / dt)
    sample_t = js.t[(js.t >= t_start) & (js.t <= t_start + steps * dt)]
    out_pos, out_vel = np.zeros((len(sample_t), len(ep.joint_names))), np.zeros((len(sample_t), 3))
    next_sample, ci, mode = 0, -1, None
    t0_wall = time.perf_counter()
    for k in range(steps + 1):
        t = t_start + k * dt
        while next_sample < len(sample_t) and sample_t[next_sample] <= t + 1e-9:
            out_pos[next_sample] = data.qpos[index.qpos_adr]
            out_vel[next_sample] = data.sensordata[index.linvel]
            next_sample += 1
        while ci + 1 < len(cmds) and cmds.t[ci + 1] <= t:
            ci += 1
        if ci >= 0:
            target = cmds.values["target"][ci]
            damping = bool(np.isnan(target).any())
            if damping != mode:
                set_joint_gains(model, index, *((no_kp, damping_kd) if damping else (kp, kd)))
                mode = damping
            if not damping:
                data.ctrl[ids] = target
        elif mode is None:  # before the first command the robot's motors only damp, as the sim node does
            set_joint_gains(model, index, no_kp, damping_kd)
            mode = "before the first command"
        mujoco.mj_step(model, data)
    wall = time.perf_counter() - t0_wall
    n = next_sample
    log_pos = js.values["pos"][(js.t >= t_start)][:n]
    base_log = _interp(ep.odom, "linvel", sample_t[:n]) if ep.odom is not None else None
    return ResimResult(
        t=sample_t[:n] - t_start,
        joint_pos_sim=out_pos[:n],
        joint_pos_log=log_pos,
        base_vel_sim=out_vel[:n],
        base_vel_log=base_log,
        joint_rms=np.sqrt(np.nanmean((out_pos[:n] - log_pos) ** 2, axis=0)),
        base_vel_error=np.linalg.norm(out_vel[:n, :2] - base_log[:, :2], axis=1) if base_log is not None else None,
        seconds_simulated=steps * dt,
        wall_s=wall,
    )


# ---------------------------------------------------------------------------------------------- shadow
@dataclass
class ShadowResult:
    t: np.ndarray
    logged: np.ndarray  # logged position targets [n, J]
    shadow: np.ndarray  # the other policy's targets [n, J]
    rms: np.ndarray
    max_abs: np.ndarray
    first_divergence_s: float | None
    threshold: float


def shadow(ep: Episode, policy_path: str, threshold: float = 0.2) -> ShadowResult:
    """Run ``policy_path`` on the logged inputs at each logged RUNNING tick and compare. The inputs go
    through the policy node's own controller (trot.policies.controller), with the safety settings the
    node logged: the same command clipping and decay, quaternion normalization, joint-limit margin
    and target rate limit, so that a difference is the policy's, not the replay's."""
    from trot.policies.controller import Mode, PolicyController, SafetyConfig
    from trot.policies.runtime import PolicyRuntime

    ep.require("joint_states", "imu", "joint_commands", purpose="shadow actions (observation inputs)")
    runtime = PolicyRuntime(policy_path)
    cmds = ep.joint_commands
    running = ~np.isnan(cmds.values["target"]).any(axis=1)
    if ep.state is not None:  # only the policy's own ticks: not the stand-up interpolation
        running &= ep.state.values["mode"][_latest(ep.state, cmds.t)] == "running"
        running &= cmds.t >= ep.state.t[0]
    else:
        ep.notes.append("no policy state topic: stand-up ticks are compared as if they were the policy's")
    # the command's header stamp is when its tick sampled the inputs; use the inputs received by then
    ticks = np.where(running)[0]
    if not len(ticks):
        raise ReplayError(f"{ep.path}: the policy never ran in this episode (no RUNNING command): nothing to shadow")
    t_in = cmds.values["stamp"][ticks]
    js = _latest(ep.joint_states, t_in)
    imu = _latest(ep.imu, t_in)
    cv = _latest(ep.cmd_vel, t_in) if ep.cmd_vel is not None else None
    if ep.cmd_vel is None:
        ep.notes.append("no cmd_vel: the shadow policy sees a zero command")
    if (params := ep.policy_parameters) is not None:
        known = {f.name for f in dataclasses.fields(SafetyConfig)}  # (a bag from another version of trot)
        safety = SafetyConfig(**{k: v for k, v in params["safety"].items() if k in known})
        period = params["control_period_s"]
    else:
        safety, period = SafetyConfig(), None
        ep.notes.append("no trot_policy/parameters: the shadow's controller has the default safety settings")
    faults: list[str] = []
    controller = PolicyController(runtime, safety, period, log=lambda line: None, warn=faults.append)
    order = [ep.joint_names.index(n) for n in runtime.joint_names]  # contract joint -> column of the logs
    state = ep.joint_states.values
    out = np.zeros((len(ticks), len(ep.joint_names)))
    for i, (k, now) in enumerate(zip(ticks, t_in, strict=True)):
        j, u = js[i], imu[i]
        # stamped now: the logged node ran on these samples (it was RUNNING), so they were fresh; their
        # bag times carry the recorder's lag, which is no fault of the policy under test
        controller.set_joint_state(ep.joint_names, state["pos"][j], state["vel"][j], now, now)
        controller.set_imu(ep.imu.values["quat"][u], ep.imu.values["gyro"][u], now, now)
        if cv is not None and ep.cmd_vel.t[cv[i]] <= now:
            controller.set_command(*ep.cmd_vel.values["cmd"][cv[i]], now=ep.cmd_vel.t[cv[i]])
        if i == 0 or ticks[i - 1] != k - 1 or controller.mode is not Mode.RUNNING:  # a RUNNING stretch begins
            before = cmds.values["target"][k - 1][order] if k > 0 else np.full(len(order), np.nan)
            controller.take_over(before if np.isfinite(before).all() else controller.joint_pos, now)
        out[i, order] = controller.tick(now).position
    if damped := [line for line in faults if "-> damping" in line]:
        ep.notes.append(f"the shadow's controller fell to damping {len(damped)} times (taken over again at the "
                        f"next tick); first: {faults[0]}")  # fmt: skip
    logged = cmds.values["target"][ticks]
    diff = np.abs(out - logged)
    over = np.where(diff.max(axis=1) > threshold)[0]
    return ShadowResult(
        t=cmds.t[ticks] - (cmds.t[ticks][0] if len(ticks) else 0.0),
        logged=logged,
        shadow=out,
        rms=np.sqrt((diff**2).mean(axis=0)),
        max_abs=diff.max(axis=0),
        first_divergence_s=float(cmds.t[ticks][over[0]] - cmds.t[ticks][0]) if len(over) else None,
        threshold=threshold,
    )


# ---------------------------------------------------------------------------------------------- render
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_episode(ep: Episode, out: Path) -> list[Path]:
    """PNG plots of what can be computed from the bag; notes say what cannot."""
    plt = _plt()
    written = []
    if ep.odom is not None:
        fig, axes = plt.subplots(3, 1, figsize=(9, 6), sharex=True)
        labels = ("vx m/s", "vy m/s", "yaw rate rad/s")
        achieved = np.column_stack([ep.odom.values["linvel"][:, 0], ep.odom.values["linvel"][:, 1],
                                    ep.odom.values["angvel"][:, 2]])  # fmt: skip
        for i, ax in enumerate(axes):
            ax.plot(ep.odom.t, achieved[:, i], lw=0.8, label="achieved (odom)")
            if ep.cmd_vel is not None:
                ax.step(ep.cmd_vel.t, ep.cmd_vel.values["cmd"][:, i], where="post", label="commanded")
            ax.set_ylabel(labels[i])
        axes[0].legend(fontsize=8)
        axes[-1].set_xlabel("s")
        fig.suptitle("base velocity: commanded vs achieved")
        written.append(_save(fig, out / "base_velocity.png"))
    else:
        ep.notes.append("no odom: no achieved base velocity plot")
    if ep.joint_states is not None:
        fig, axes = plt.subplots(4, 3, figsize=(12, 9), sharex=True)
        for j, ax in enumerate(axes.flat[: len(ep.joint_names)]):
            ax.plot(ep.joint_states.t, ep.joint_states.values["pos"][:, j], lw=0.8, label="measured")
            if ep.joint_commands is not None:
                ax.plot(ep.joint_commands.t, ep.joint_commands.values["target"][:, j], lw=0.8, label="target")
            ax.set_title(ep.joint_names[j], fontsize=8)
        axes.flat[0].legend(fontsize=7)
        fig.suptitle("joint position targets vs measured (rad)")
        written.append(_save(fig, out / "joints.png"))
    if ep.joint_commands is not None and ep.joint_states is not None:
        from trot.policies.artifact import read_artifact

        try:
            _, contract = read_artifact(ep.metadata.get("policy_path", "go2_flat"))
            from trot.policies.observation import ActionMapper, joint_index

            to_contract = joint_index(ep.joint_names, contract)  # replay arrays are in robot order
            actions = ActionMapper(contract).actions_of(ep.joint_commands.values["target"][:, to_contract])
            fig, ax = plt.subplots(figsize=(9, 3.5))
            ax.plot(ep.joint_commands.t, actions, lw=0.6)
            ax.set_title("actions ((target - default) / action_scale), after the node's safety limits")
            ax.set_xlabel("s")
            written.append(_save(fig, out / "actions.png"))
        except Exception as exc:
            ep.notes.append(f"no actions plot: the policy contract is unavailable ({exc})")
    if ep.joint_commands is not None and len(ep.joint_commands) > 2:
        periods = np.diff(ep.joint_commands.values["stamp"]) * 1e3
        latency = (ep.joint_commands.t - ep.joint_commands.values["stamp"]) * 1e3
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        axes[0].hist(periods, bins=60)
        axes[0].set_title("control period (command stamps), ms")
        axes[1].hist(latency, bins=60)
        axes[1].set_title("command stamp -> recorded (transport latency), ms")
        written.append(_save(fig, out / "timing.png"))
    else:
        n = 0 if ep.joint_commands is None else len(ep.joint_commands)
        ep.notes.append(f"{n} joint_commands: too few for control-loop timing" if n else "no joint_commands: no "
                        "control-loop timing")  # fmt: skip
    return written


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _plt().close(fig)
    return path


def _render_segment(robot: str, qpos: np.ndarray, path: str, fps: float) -> str:
    """One worker's share of the video (a process of its own: software GL renders on one core)."""
    from trot.sim.render import Renderer, write_mp4
    from trot.sim.robot import load_robot

    renderer = Renderer(load_robot(robot))
    frames = [renderer.frame(q) for q in qpos]
    renderer.close()
    return str(write_mp4(frames, path, fps=fps))


def render_video(ep: Episode, path: Path, fps: float = 30.0, workers: int | None = None) -> Path:
    """Kinematic replay: logged joint positions and (from odom) base pose, at ``fps``. Frames are
    rendered by one process per core in segments, then joined without re-encoding."""
    import concurrent.futures
    import multiprocessing
    import subprocess
    import threading

    import imageio_ffmpeg

    from trot.sim.robot import load_robot
    from trot.sim.world import compile_model

    ep.require("joint_states", purpose="a video (joint positions)")
    if not os.environ.get("MUJOCO_GL") and not os.environ.get("DISPLAY"):  # (trot.sim.gl.choose_offscreen_gl)
        raise ReplayError("no video: no OpenGL to render with (libEGL and OSMesa cannot be loaded, and no DISPLAY); "
                          "install libEGL (Debian/Ubuntu: libegl1) or OSMesa (libosmesa6)")  # fmt: skip
    robot_name = ep.metadata.get("robot", "go2")
    model, index = compile_model(load_robot(robot_name))
    frame_t = np.arange(ep.joint_states.t[0], ep.joint_states.t[-1], 1.0 / fps)
    if len(frame_t) < 2:
        raise ReplayError(f"{ep.path}: the joint states span {np.ptp(ep.joint_states.t):.3f} s: too short for a video")
    qpos = np.zeros((len(frame_t), model.nq))
    qpos[:, 2], qpos[:, 3] = 0.3, 1.0
    qpos[:, index.qpos_adr] = _interp(ep.joint_states, "pos", frame_t)
    if ep.odom is not None:
        qpos[:, 0:3] = _interp(ep.odom, "pos", frame_t)
        qpos[:, 3:7] = ep.odom.values["quat"][_latest(ep.odom, frame_t)]
    else:
        ep.notes.append("no odom: the video holds the base fixed at 0.3 m")
    workers = workers or min(os.cpu_count() or 1, 4)
    chunks = [c for c in np.array_split(qpos, workers) if len(c)]
    path.parent.mkdir(parents=True, exist_ok=True)
    segments = [str(path.with_name(f".{path.stem}_{i}.mp4")) for i in range(len(chunks))]
    context = multiprocessing.get_context("spawn")  # a fresh GL context per worker
    pool = concurrent.futures.ProcessPoolExecutor(len(chunks), mp_context=context)
    # Ctrl-C is the parent's to handle: the workers are started with SIGINT ignored, which they keep
    # across exec (set in their own code, it came after ~0.6 s of imports, with a traceback each before)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
    try:  # (ProcessPoolExecutor starts a worker per submitted task here, none idle yet)
        futures = [pool.submit(_render_segment, robot_name, chunk, segment, fps)
                   for chunk, segment in zip(chunks, segments, strict=True)]  # fmt: skip
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
    try:
        for future in futures:
            future.result()
    except BaseException as exc:  # a worker's error, one that died (BrokenProcessPool), or Ctrl-C here
        for process in list((pool._processes or {}).values()):  # (Python 3.14: pool.terminate_workers())
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        for segment in segments:
            Path(segment).unlink(missing_ok=True)
        if not isinstance(exc, Exception):
            raise
        gl = os.environ.get("MUJOCO_GL") or "none found"
        raise ReplayError(
            f"cannot render the video ({type(exc).__name__}: {exc}); offscreen OpenGL (MUJOCO_GL: {gl}) "
            "needs libEGL (Debian/Ubuntu: libegl1) or OSMesa (libosmesa6, MUJOCO_GL=osmesa)"
        ) from exc
    pool.shutdown()
    listing = path.with_name(f".{path.stem}_segments.txt")
    listing.write_text("".join(f"file '{Path(s).resolve()}'\n" for s in segments))
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i",
           str(listing), "-c", "copy", str(path)]  # fmt: skip
    subprocess.run(cmd, check=True)
    for file in [*segments, str(listing)]:
        Path(file).unlink()
    return path


def _resim_plot(r: ResimResult, out: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    axes[0].plot(r.t, np.sqrt(((r.joint_pos_sim - r.joint_pos_log) ** 2).mean(axis=1)))
    axes[0].set_ylabel("joint RMS divergence, rad")
    if r.base_vel_error is not None:
        axes[1].plot(r.t, r.base_vel_error)
    axes[1].set_ylabel("|v_xy sim - log|, m/s")
    axes[1].set_xlabel("s since the re-simulation start")
    fig.suptitle("re-simulation vs log (the reality gap, for a real robot's bag)")
    return _save(fig, out / "resim.png")


def _shadow_plot(r: ShadowResult, names: list[str], out: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(4, 3, figsize=(12, 9), sharex=True)
    for j, ax in enumerate(axes.flat[: len(names)]):
        ax.plot(r.t, r.logged[:, j], lw=0.8, label="logged")
        ax.plot(r.t, r.shadow[:, j], lw=0.8, label="shadow")
        ax.set_title(f"{names[j]} (rms {r.rms[j]:.3f})", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("shadow policy targets vs logged targets (rad)")
    return _save(fig, out / "shadow.png")


def write_report(ep: Episode, out: Path, sections: dict[str, str]) -> Path:
    lines = [f"# Replay of `{ep.path.name}`", ""]
    lines += [
        f"- {k}: {v}" for k, v in ep.metadata.items() if k in ("robot", "policy_path", "policy_sha256", "started")
    ]
    lines += [
        f"- topics: {', '.join(f'{k} ({len(getattr(ep, k))})' for k in TOPIC_TYPES if getattr(ep, k) is not None)}"
    ]
    if (params := ep.policy_parameters) is not None:
        node, safety = params["node"], params["safety"]
        lines += [
            f"- policy node: {1 / params['control_period_s']:.0f} Hz ({node['control_trigger']}), watchdog "
            f"{safety['stale_periods']} periods, max_target_step {safety['max_target_step']} rad, joint_limit_margin "
            f"{safety['joint_limit_margin']} rad, standup_s {safety['standup_s']}, realtime_priority "
            f"{node['realtime_priority']}, use_sim_time {params['use_sim_time']} (all of it: trot_policy/parameters)"
        ]
    for title, body in sections.items():
        lines += ["", f"## {title}", "", body]
    if ep.notes:
        lines += ["", "## What could not be computed", ""] + [f"- {n}" for n in dict.fromkeys(ep.notes)]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def render_cmd(bag: Path, out: Path, fps: float = 30.0, video: bool = True) -> dict:
    ep = load_episode(bag)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sections, video_error = {}, None
    if video:
        try:
            sections["Video"] = f"![video]({render_video(ep, out / 'replay.mp4', fps).name})"
        except ReplayError as exc:
            video_error = str(exc)
            ep.notes.append(video_error)
    plots = plot_episode(ep, out)
    sections["Plots"] = "\n\n".join(f"![{p.stem}]({p.name})" for p in plots)
    report = write_report(ep, out, sections)
    return {"report": str(report), "plots": [str(p) for p in plots], "seconds": time.perf_counter() - t0,
            "notes": ep.notes, "video_error": video_error}  # fmt: skip


def resim_cmd(bag: Path, out: Path, policy: str | None = None) -> dict:
    ep = load_episode(bag)
    r = resim(ep, policy)
    out.mkdir(parents=True, exist_ok=True)
    plot = _resim_plot(r, out)
    summary = {
        "seconds_simulated": r.seconds_simulated,
        "wall_s": r.wall_s,
        "real_time_factor": r.seconds_simulated / max(r.wall_s, 1e-9),
        "joint_rms_rad": dict(zip(ep.joint_names, r.joint_rms.round(4).tolist(), strict=True)),
        "joint_rms_mean_rad": float(r.joint_rms.mean()),
        "base_vel_error_mean_mps": float(r.base_vel_error.mean()) if r.base_vel_error is not None else None,
        "notes": ep.notes,
    }
    (out / "resim.json").write_text(json.dumps(summary, indent=2))
    body = (f"Re-simulated {r.seconds_simulated:.1f} s in {r.wall_s:.2f} s ({summary['real_time_factor']:.0f}x real "
            f"time). Joint RMS divergence (mean over joints) {summary['joint_rms_mean_rad']:.4f} rad; base xy velocity "
            f"divergence (mean) {summary['base_vel_error_mean_mps']} m/s.\n\n![resim]({plot.name})")  # fmt: skip
    _append(out / "report.md", "Re-simulation", body)
    return summary


def shadow_cmd(bag: Path, out: Path, policy: str, threshold: float = 0.2) -> dict:
    ep = load_episode(bag)
    r = shadow(ep, policy, threshold)
    out.mkdir(parents=True, exist_ok=True)
    plot = _shadow_plot(r, ep.joint_names, out)
    summary = {
        "policy": policy,
        "ticks": len(r.t),
        "rms_rad": dict(zip(ep.joint_names, r.rms.round(4).tolist(), strict=True)),
        "max_abs_rad": dict(zip(ep.joint_names, r.max_abs.round(4).tolist(), strict=True)),
        "first_divergence_s": r.first_divergence_s,
        "threshold_rad": threshold,
        "notes": ep.notes,
    }
    (out / "shadow.json").write_text(json.dumps(summary, indent=2))
    first = "never" if r.first_divergence_s is None else f"{r.first_divergence_s:.2f} s"
    body = (f"`{policy}` on the logged observations, {len(r.t)} control ticks: RMS {r.rms.mean():.4f} rad (mean over "
            f"joints), max {r.max_abs.max():.3f} rad; first divergence beyond {threshold} rad: {first}."
            f"\n\n![shadow]({plot.name})")  # fmt: skip
    _append(out / "report.md", f"Shadow: {Path(policy).name}", body)
    return summary


def _append(report: Path, title: str, body: str) -> None:
    text = report.read_text() if report.exists() else "# Replay\n"
    report.write_text(text.rstrip("\n") + f"\n\n## {title}\n\n{body}\n")
