"""Kinematic video of a recorded episode: the logged joint positions and base pose rendered by
worker processes in segments, joined without re-encoding."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np

from trot.replay.episode import Episode, ReplayError, interp, latest


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
    qpos[:, index.qpos_adr] = interp(ep.joint_states, "pos", frame_t)
    if ep.odom is not None:
        qpos[:, 0:3] = interp(ep.odom, "pos", frame_t)
        qpos[:, 3:7] = ep.odom.values["quat"][latest(ep.odom, frame_t)]
    else:
        ep.notes.append("no odom: the video holds the base fixed at 0.3 m")
    workers = workers or min(os.cpu_count() or 1, 4)
    chunks = [c for c in np.array_split(qpos, workers) if len(c)]
    path.parent.mkdir(parents=True, exist_ok=True)
    segments = [str(path.with_name(f".{path.stem}_{i}.mp4")) for i in range(len(chunks))]
    context = multiprocessing.get_context("spawn")  # a fresh GL context per worker
    pool = concurrent.futures.ProcessPoolExecutor(len(chunks), mp_context=context)
    # Ctrl-C is the parent's to handle: the workers are started with SIGINT blocked, which they keep
    # across exec (set in their own code, it came after ~0.6 s of imports, with a traceback each
    # before). Blocked, not ignored, in the parent meanwhile: a Ctrl-C in that window stays pending
    # and is raised here once the workers have started, instead of being lost.
    block = threading.current_thread() is threading.main_thread()
    futures: list[concurrent.futures.Future] = []
    try:
        if block:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:  # (ProcessPoolExecutor starts a worker per submitted task here, none idle yet)
            futures = [pool.submit(_render_segment, robot_name, chunk, segment, fps)
                       for chunk, segment in zip(chunks, segments, strict=True)]  # fmt: skip
        finally:
            if block:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
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
