"""`trot replay` on a real episode recorded by `trot deploy --sim`: render, re-simulation, shadow;
bags that lack topics or are damaged."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from trot.replay.bag import EpisodeBag, read_messages, read_metadata, recover
from trot.replay.episode import ReplayError, load_episode
from trot.replay.resim import resim
from trot.replay.shadow import shadow

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "go2_flat"


def trot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trot.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def bag(deploy_run: Path) -> Path:
    (summary,) = deploy_run.glob("*/summary.json")
    return Path(json.loads(summary.read_text())["bag"])


def test_deploy_leaves_a_replay_report_with_video_plots_and_resim(bag: Path) -> None:
    out = bag.with_name(bag.name + "_replay")
    report = (out / "report.md").read_text()
    for name in ("replay.mp4", "base_velocity.png", "joints.png", "actions.png", "timing.png", "resim.png"):
        assert (out / name).stat().st_size > 10_000, name
        assert name in report, name
    import imageio_ffmpeg

    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(out / "replay.mp4"))
    assert frames > 15 * 30 and abs(frames / seconds - 30.0) < 1.0  # ~18 s at 30 fps
    assert "Re-simulation" in report
    # what the policy node ran with, from its latched trot_policy/parameters in the bag
    assert "- policy node: 50 Hz (timer), watchdog 25.0 periods, max_target_step 0.25 rad" in report, report
    # who published, from the recorder's /trot/sources: the robot node alone on its sensor topics
    assert "- sources: " in report and "## Sources" in report, report
    timeline = report.split("## Sources")[1]
    assert "/joint_states: /trot_sim" in timeline and "/joint_states: /trot_sim," not in timeline, timeline


#: Re-simulation divergence bounds, about 3x what a sim bag measures (joint RMS 0.0029-0.0044 rad,
#: base velocity 0.005 m/s; 0.006-0.011 rad and 0.009-0.014 m/s with the 2-core host overloaded by
#: two or three busy processes besides the deploy). Commands one control period off measure
#: 0.021-0.027 rad, Kp x 0.8 0.045 rad and 0.12 m/s: each must exceed them (the negative controls).
RESIM_JOINT_RMS = 0.012  # rad, mean over the joints
RESIM_BASE_VEL = 0.025  # m/s, mean over time


def test_a_sim_bag_resimulates_with_near_zero_divergence(bag: Path) -> None:
    """Not to the bit: the replay applies each command at the recorder's receive time, the sim node
    at its own (~1 ms apart), and starts from the first 250 Hz samples of a contact-rich trajectory."""
    r = resim(load_episode(bag))
    assert r.seconds_simulated > 15.0
    assert r.joint_rms.mean() < RESIM_JOINT_RMS, r.joint_rms
    assert r.base_vel_error.mean() < RESIM_BASE_VEL, r.base_vel_error.mean()
    assert r.seconds_simulated / r.wall_s > 20.0  # far faster than real time even on a loaded CI machine


def _with_kp_scaled(policy: Path, out: Path, scale: float) -> Path:
    """A copy of the artifact whose contract says Kp x ``scale`` (digests recomputed: a valid artifact)."""
    from trot.policies.artifact import CONTRACT_KEY, DIGEST_KEY
    from trot.policies.contract import Contract

    model = onnx.load(policy / "policy.onnx")
    meta = {p.key: p.value for p in model.metadata_props}
    contract = json.loads(meta[CONTRACT_KEY])
    contract["kp"] = [scale * kp for kp in contract["kp"]]
    meta[CONTRACT_KEY] = json.dumps(contract)
    meta[DIGEST_KEY] = json.dumps(Contract.from_json(meta[CONTRACT_KEY]).field_digests())
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    out.mkdir()
    onnx.save(model, out / "policy.onnx")
    return out


@pytest.mark.parametrize("variant", ["commands_one_period_late", "commands_one_period_early", "kp_x0.8"])
def test_resim_of_a_mismatched_replay_exceeds_the_bound(bag: Path, tmp_path: Path, variant: str) -> None:
    """Negative controls for the bounds above: the same bag re-simulated with each command applied one
    control period late or early (a latency mistake), or with Kp x 0.8 (gains not the robot's), must
    exceed them, or the bound could not tell a faithful re-simulation from a wrong one."""
    ep = load_episode(bag)
    period = ep.policy_parameters["control_period_s"]
    if variant == "kp_x0.8":
        r = resim(ep, str(_with_kp_scaled(POLICY, tmp_path / "weak", 0.8)))
        assert not any("PD gains from the robot config" in note for note in ep.notes), ep.notes  # (the scaled ones)
        assert r.base_vel_error.mean() > RESIM_BASE_VEL, r.base_vel_error.mean()
    else:
        ep.joint_commands.t = ep.joint_commands.t + (period if variant.endswith("late") else -period)
        r = resim(ep)
    assert r.seconds_simulated > 15.0
    assert r.joint_rms.mean() > RESIM_JOINT_RMS, r.joint_rms


def test_shadow_of_the_same_policy_agrees_and_a_perturbed_one_diverges(bag: Path, tmp_path: Path) -> None:
    ep = load_episode(bag)
    same = shadow(ep, str(POLICY))
    assert len(same.t) > 500
    # same policy: the same targets up to sample alignment (the node used the latest sample it had
    # received at its tick; the bag has the recorder's receive times): measured 0.005-0.02 rad RMS
    assert same.rms.max() < 0.05, same.rms
    # a policy with its last layer's weights scaled by 1.5: a "new policy" that is not the logged one
    model = onnx.load(POLICY / "policy.onnx")
    weights = [i for i in model.graph.initializer if numpy_helper.to_array(i).ndim == 2]
    last = weights[-1]
    last.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(last) * 1.5, last.name))
    other = tmp_path / "perturbed"
    other.mkdir()
    onnx.save(model, other / "policy.onnx")
    diverged = shadow(load_episode(bag), str(other), threshold=0.05)
    assert diverged.rms.mean() > 5 * same.rms.mean()
    assert diverged.first_divergence_s is not None
    cli = trot("replay", "shadow", str(bag), "--policy", str(other), "--out", str(tmp_path / "report"))
    assert cli.returncode == 0, cli.stderr
    summary = json.loads((tmp_path / "report" / "shadow.json").read_text())
    assert set(summary["rms_rad"]) == set(ep.joint_names) and summary["ticks"] == len(diverged.t)
    assert (tmp_path / "report" / "shadow.png").is_file()


def test_shadow_commands_what_the_policy_node_would_have_sent(bag: Path, tmp_path: Path) -> None:
    """The shadow runs through the node's own controller: a wild policy (last layer x10) is held to
    the logged safety settings, the joint-limit margin and the per-tick target change, as on the
    robot (the shadow once clipped to the bare limits only, and jumped)."""
    from trot.policies.runtime import PolicyRuntime
    from trot.policies.settings import SafetyConfig

    model = onnx.load(POLICY / "policy.onnx")
    last = [i for i in model.graph.initializer if numpy_helper.to_array(i).ndim == 2][-1]
    last.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(last) * 10.0, last.name))
    wild = tmp_path / "wild"
    wild.mkdir()
    onnx.save(model, wild / "policy.onnx")
    ep = load_episode(bag)
    r = shadow(ep, str(wild))
    safety = SafetyConfig(**ep.policy_parameters["safety"])
    contract = PolicyRuntime(POLICY).contract
    order = [ep.joint_names.index(n) for n in contract.joint_names]
    lower = np.asarray(contract.joint_pos_lower) + safety.joint_limit_margin
    upper = np.asarray(contract.joint_pos_upper) - safety.joint_limit_margin
    shadowed = r.shadow[:, order]
    assert (shadowed >= lower - 1e-12).all() and (shadowed <= upper + 1e-12).all()
    consecutive = np.diff(r.t) < 1.5 * ep.policy_parameters["control_period_s"]
    steps = np.abs(np.diff(shadowed, axis=0))[consecutive]
    assert steps.max() <= safety.max_target_step + 1e-9, steps.max()
    assert steps.max() > 0.5 * safety.max_target_step  # (the limit acted: the wild policy pushes it)


def test_a_bag_without_commands_renders_what_it_can_and_says_what_it_cannot(bag: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    out = EpisodeBag(partial, {"robot": "go2"})
    out.add_topic("/joint_states", "sensor_msgs/msg/JointState")
    from trot.replay.bag import typestore

    store = typestore()
    for m in read_messages(bag, topics=["/joint_states"]):
        out.write("/joint_states", m.timestamp_ns, bytes(store.serialize_cdr(m.msg, m.msgtype)))
    out.close()
    render = trot("replay", "render", str(partial), "--no-video", "--out", str(tmp_path / "r"))
    assert render.returncode == 0, render.stderr
    report = (tmp_path / "r" / "report.md").read_text()
    assert "no odom" in report and "no joint_commands" in report and "joints.png" in report
    resim_cli = trot("replay", "resim", str(partial))
    assert resim_cli.returncode == 2
    assert "no joint_commands messages: cannot compute a re-simulation" in resim_cli.stderr
    with pytest.raises(ReplayError, match="imu, joint_commands"):
        shadow(load_episode(partial), str(POLICY))


def test_a_truncated_bag_is_a_clear_error_and_recovers(bag: Path, tmp_path: Path) -> None:
    damaged = tmp_path / bag.name
    shutil.copytree(bag, damaged)
    (mcap,) = damaged.glob("*.mcap")
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])  # a disk that filled up, a copy cut short
    cli = trot("replay", "render", str(damaged), "--no-video")
    assert cli.returncode == 2 and "trot bag recover" in cli.stderr, cli.stderr
    counts = recover(damaged)
    assert 0 < counts["/joint_states"] < len(list(read_messages(bag, topics=["/joint_states"])))
    ep = load_episode(damaged)
    assert ep.joint_states is not None and np.isfinite(ep.joint_states.values["pos"]).all()


def test_a_sqlite3_bag_from_another_recorder_replays_too(bag: Path, tmp_path: Path) -> None:
    """Not every bag comes from trot: the same episode as a plain sqlite3 rosbag2 (version 9, no
    episode metadata, namespaced topics) re-simulates the same way."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from trot.replay.bag import typestore

    other = tmp_path / "sqlite_bag"
    store = typestore()
    with Writer(other, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        # first, a robot vendor's message, which replay does not read (it once ended the read as damage)
        vendor = writer.add_connection("/lowstate", "unitree_go/msg/LowState", msgdef="uint32 tick\n",
                                       rihs01="RIHS01_" + "0" * 64)  # fmt: skip
        writer.write(vendor, next(read_messages(bag)).timestamp_ns - 1, b"\x00\x01\x00\x00" + (7).to_bytes(4, "little"))
        connections = {}
        for m in read_messages(bag):
            topic = f"/go2{m.topic}"
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, m.msgtype, typestore=store)
            writer.write(connections[topic], m.timestamp_ns, bytes(store.serialize_cdr(m.msg, m.msgtype)))
    assert next(other.glob("*.db3"))
    ep = load_episode(other)
    assert ep.metadata == {} and ep.odom is not None and ep.state is not None and not ep.notes, ep.notes
    r = resim(ep, str(POLICY))
    assert r.joint_rms.mean() < RESIM_JOINT_RMS, r.joint_rms


def test_an_episode_where_the_policy_never_ran_is_a_clear_error_for_shadow(bag: Path, tmp_path: Path) -> None:
    """The stand-up only (the bag cut before RUNNING): nothing to shadow, said so (it was a numpy
    ValueError from an empty array, a traceback at the command line)."""
    from trot.replay.bag import typestore

    store = typestore()
    messages = list(read_messages(bag))
    running = min(m.timestamp_ns for m in messages if m.topic.endswith("trot_policy/state") and m.msg.data == "running")
    short = EpisodeBag(tmp_path / "standup_only", read_metadata(bag))
    for m in messages:
        if m.timestamp_ns < running:
            short.add_topic(m.topic, m.msgtype)
            short.write(m.topic, m.timestamp_ns, bytes(store.serialize_cdr(m.msg, m.msgtype)))
    short.close()
    ep = load_episode(tmp_path / "standup_only")
    assert ep.joint_commands is not None and len(ep.joint_commands.t) > 10  # the stand-up's commands
    with pytest.raises(ReplayError, match="the policy never ran in this episode"):
        shadow(ep, str(POLICY))


def test_recover_leaves_a_bag_it_cannot_rebuild_as_it_found_it(bag: Path, tmp_path: Path) -> None:
    """A truncated bag split over two files (`ros2 bag record --max-bag-size`): refused, and its
    metadata.yaml is still there (recover deleted it first, then found it could not go on)."""
    split = tmp_path / bag.name
    shutil.copytree(bag, split)
    (mcap,) = split.glob("*.mcap")
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])
    (split / "second_1.mcap").write_bytes(data[: len(data) // 2])
    before = {p.name: p.read_bytes() for p in split.iterdir()}
    with pytest.raises(FileNotFoundError, match=r"expected one \.mcap file to recover, found 2"):
        recover(split)
    assert {p.name: p.read_bytes() for p in split.iterdir()} == before


def test_an_episode_too_short_for_one_frame_is_a_clear_error_for_the_video(bag: Path, tmp_path: Path) -> None:
    """Joint states spanning less than a frame (a bag cut at once): said so, not an empty mp4 or an
    ffmpeg traceback."""
    from trot.replay.bag import typestore
    from trot.replay.video import render_video

    store = typestore()
    joint_states = list(read_messages(bag, topics=["/joint_states"]))[:3]  # 250 Hz: 8 ms
    short = EpisodeBag(tmp_path / "short", read_metadata(bag))
    short.add_topic("/joint_states", joint_states[0].msgtype)
    for m in joint_states:
        short.write(m.topic, m.timestamp_ns, bytes(store.serialize_cdr(m.msg, m.msgtype)))
    short.close()
    with pytest.raises(ReplayError, match=r"the joint states span 0\.00\d s: too short for a video"):
        render_video(load_episode(tmp_path / "short"), tmp_path / "short.mp4")
    assert not (tmp_path / "short.mp4").exists()


def test_without_offscreen_gl_replay_skips_the_video_says_why_and_does_the_rest(bag: Path, tmp_path: Path) -> None:
    """A machine without libEGL (the Makefile set MUJOCO_GL=egl): `import mujoco` itself failed, so
    neither the simulator nor any replay ran. libEGL is hidden here in a mount namespace of its own."""
    import re

    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout  # (where the loader finds them)
    libraries = {os.path.realpath(path) for path in re.findall(r"lib(?:EGL|OSMesa)\.so[.\d]* \(.*\) => (\S+)", cache)}
    if not libraries:
        pytest.skip("no libEGL or OSMesa here: this machine is the case itself")
    namespaces = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if namespaces.returncode != 0:
        pytest.skip(f"no private mount namespace here (unshare: {namespaces.stderr.decode()[-200:]})")
    hide = "; ".join(f'mount --bind /dev/null "{library}" || exit 97' for library in sorted(libraries))
    env = {**os.environ, "MUJOCO_GL": "egl"}
    env.pop("DISPLAY", None)
    outputs = {}
    replay = [sys.executable, "-m", "trot.cli", "replay"]
    # the nodes' own entry points too (`ros2 run trot trot_sim_node` imports mujoco before any replay)
    nodes = [sys.executable, "-c",
             "import trot.ros_nodes.sim_node, trot.ros_nodes.policy_node, trot.ros_nodes.recorder_node"]
    for action, command in (("render", [*replay, "render", str(bag), "--out", str(tmp_path / "report")]),
                            ("resim", [*replay, "resim", str(bag), "--out", str(tmp_path / "report")]),
                            ("nodes", nodes)):  # fmt: skip
        run = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", f'{hide}; exec "$@"', "sh",
                              *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        if run.returncode == 97:
            pytest.skip(f"no private mount namespace here: {run.stderr[-300:]}")
        assert run.returncode == 0, run.stdout + run.stderr
        outputs[action] = run.stdout + run.stderr
    assert "MUJOCO_GL=egl, but its library (libEGL.so.1) cannot be loaded" in outputs["render"], outputs["render"]
    assert "no video: no OpenGL to render with" in outputs["render"] and "Traceback" not in outputs["render"]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "install libEGL (Debian/Ubuntu: libegl1)" in report and "## Re-simulation" in report
    assert not (tmp_path / "report" / "replay.mp4").exists() and (tmp_path / "report" / "joints.png").exists()


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["sigint", "sigterm", "a_worker_killed"]
)
def test_the_demos_replay_stopped_midway_says_so_and_leaves_no_worker(bag: Path, tmp_path: Path, signum) -> None:
    """`make demo` ends with the replay (~30 s of rendering): Ctrl-C or SIGTERM there used to end in a
    traceback from each render worker, and lose summary.json (written only after the replay). A
    render worker that dies (a GL driver's crash, the OOM killer) must end the video, not hang it."""
    import time

    copy = tmp_path / bag.name  # (its report goes next to it)
    shutil.copytree(bag, copy)
    # Ctrl-C handled as in a terminal: a shell that starts the suite in the background (no job
    # control) leaves SIGINT ignored, and children inherit that
    script = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); from pathlib import Path; "
              f"from trot.ros_nodes.deploy import _replay; print(_replay(Path({str(copy)!r})))")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip

    def group() -> list[str]:
        return subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()

    deadline = time.time() + 60
    while time.time() < deadline and len(group()) < 3:  # the render workers are starting
        time.sleep(0.01)
    # Ctrl-C at once, while the workers start (the window in which SIGINT is held back); the others later
    time.sleep(0.0 if signum == signal.SIGINT else 1.0)
    if signum == signal.SIGKILL:  # one worker (the newest process of the group: not the parent)
        os.kill(max(int(pid) for pid in group() if int(pid) != proc.pid), signal.SIGKILL)
    else:
        os.killpg(proc.pid, signum)  # (Ctrl-C reaches the whole process group, the workers too)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    if signum == signal.SIGKILL:
        assert "'video_error': 'cannot render the video (BrokenProcessPool" in out, out + err
    else:
        assert "{'replay_error': 'interrupted', 'replay_interrupted': True}" in out, out + err
        assert "Traceback" not in err, err
    deadline = time.time() + 10  # (multiprocessing's resource tracker ends once it sees its parent gone)
    while group() and time.time() < deadline:
        time.sleep(0.1)
    assert group() == [], subprocess.run(["ps", "-o", "pid,etime,args", "-g", str(proc.pid)], capture_output=True,
                                         text=True).stdout  # fmt: skip
