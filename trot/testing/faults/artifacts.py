"""Bad artifacts and configurations: each refused by name, and the node never activates."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from trot.testing import POLICY, ROOT
from trot.testing.faults.table import Row
from trot.testing.graph import threaded_graph


def onnx_runtime_rejects(workdir: Path) -> Path:
    """The shipped artifact with one weight matrix a row short, in ``workdir``: its ONNX file,
    signature and contract pass every check of the artifact reader, and ONNX Runtime refuses the
    graph (the node must say so itself: rclpy swallows an exception raised in configure)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(POLICY / "policy.onnx")
    weight = next(init for init in model.graph.initializer if len(init.dims) == 2)
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight)[:-1], weight.name))
    broken = workdir / "unloadable_policy"
    broken.mkdir(parents=True)
    onnx.save(model, broken / "policy.onnx")
    return broken


def _bad_artifacts(workdir: Path) -> dict[str, tuple[list[str], str]]:
    """case -> (policy node parameters / ROS args, the text its refusal must contain)."""
    import onnx

    from trot.policies.artifact import CONTRACT_KEY

    def copy(name: str) -> Path:
        d = workdir / name
        d.mkdir(parents=True)
        shutil.copy(POLICY / "policy.onnx", d / "policy.onnx")
        return d / "policy.onnx"

    truncated = copy("truncated")
    truncated.write_bytes(truncated.read_bytes()[:20_000])
    swapped = copy("swapped")
    model = onnx.load(swapped)
    for entry in model.metadata_props:
        if entry.key == CONTRACT_KEY:
            contract = json.loads(entry.value)
            names = contract["joint_names"]
            names[1], names[2] = names[2], names[1]  # FL thigh <-> FL calf: each keeps its limits and gains
            entry.value = json.dumps(contract)
    onnx.save(model, swapped)
    malformed = workdir / "malformed.yaml"
    malformed.write_text("/**:\n  ros__parameters:\n    standup_s: [1.0\n")
    unknown = workdir / "unknown_key.yaml"
    unknown.write_text("/**:\n  ros__parameters:\n    standup_seconds: 1.0\n")
    return {
        "truncated ONNX": ([f"-p policy_path:={truncated}"], "not a valid ONNX model"),
        "contract tampered: two joints swapped": ([f"-p policy_path:={swapped}"], "['joint_names'] were changed"),
        "artifact file missing": ([f"-p policy_path:={workdir / 'nowhere'}"], "no such policy file"),
        "ONNX graph ONNX Runtime rejects (a weight a row short)": (
            [f"-p policy_path:={onnx_runtime_rejects(workdir)}"], "ONNX Runtime cannot load the policy"),
        "unsound safety setting: joint_limit_margin 2.0 rad": (
            [f"-p policy_path:={POLICY}", "-p joint_limit_margin:=2.0"], "joint_limit_margin is 2.0: must be below"),
        "parameter file: malformed YAML": ([f"-p policy_path:={POLICY}", f"--params-file {malformed}"], str(malformed)),
        "parameter file: unknown key": ([f"-p policy_path:={POLICY}", f"--params-file {unknown}"], "standup_seconds"),
        "parameter file missing": ([f"-p policy_path:={POLICY}", f"--params-file {workdir / 'no.yaml'}"], "no.yaml"),
        "robot lacks a policy joint": ([f"-p policy_path:={POLICY}", "-r joint_states:=partial_joint_states"],
                                       "publishes no state for the policy's joints"),
    }  # fmt: skip


def artifact_refusals(workdir: Path) -> list[Row]:
    """Each bad artifact or configuration: the policy node names the problem and never activates
    (no command, ~/start refused), with a live robot publishing joint states the whole time."""
    from sensor_msgs.msg import JointState

    from trot.policies.artifact import read_artifact

    _, contract = read_artifact(POLICY)
    names = list(contract.joint_names)
    cases = _bad_artifacts(workdir)
    rows = []
    with threaded_graph() as r:
        full = [r.node.create_publisher(JointState, f"/case{i}/joint_states", 10) for i in range(len(cases))]
        partial = [r.node.create_publisher(JointState, f"/case{i}/partial_joint_states", 10) for i in range(len(cases))]
        commands: dict[int, int] = {i: 0 for i in range(len(cases))}
        for i in range(len(cases)):
            r.node.create_subscription(JointState, f"/case{i}/joint_commands",
                                       lambda m, i=i: commands.__setitem__(i, commands[i] + 1), 10)  # fmt: skip
        procs = {}
        for i, (_, (args, _)) in enumerate(cases.items()):
            ros_args = [a for arg in args for a in arg.split(" ", 1)]
            procs[i] = r.start_args([sys.executable, "-m", "trot.ros_nodes.policy_node", "--ros-args",
                                 "-r", f"__ns:=/case{i}",
                                "-p", "start_mode:=auto", "-p", "joint_state_timeout_s:=20.0", *ros_args])  # fmt: skip
        js, js_partial = JointState(name=names, position=list(contract.default_joint_pos)), JointState(name=names[:-1])
        js_partial.position = list(contract.default_joint_pos)[:-1]
        end = time.time() + 60
        expected = {i: text for i, (_, (_, text)) in enumerate(cases.items())}
        while time.time() < end and not all(text in r.log(procs[i]) for i, text in expected.items()):
            for i in range(len(cases)):
                js.header.stamp = js_partial.header.stamp = r.node.get_clock().now().to_msg()
                full[i].publish(js)
                partial[i].publish(js_partial)
            time.sleep(0.02)
        time.sleep(1.0)
        starts = {}
        for i in range(len(cases)):
            if r.procs[procs[i]].poll() is None:
                response = r.call_trigger(f"/case{i}/trot_policy/start", timeout=5.0)
                starts[i] = response.success if response is not None else False
            else:
                starts[i] = False
        for i, (case, (_, text)) in enumerate(cases.items()):
            log = r.log(procs[i])
            named = text in log
            line = next((x for x in log.splitlines() if text in x), "")
            line = re.sub(r"^\[[A-Z]+\] \[[\d.]+\] \[[^\]]*\]: ", "", line.strip()).replace(f"{workdir}/", "")[:150]
            state = "exited" if r.procs[procs[i]].poll() is not None else "alive, unconfigured"
            ok = named and commands[i] == 0 and not starts[i] and "configured:" not in log and "Traceback" not in log
            rows.append(Row("artifacts & config", case, f"refused ({state}, {commands[i]} commands): `{line}`",
                            "refused naming the problem; never activates", ok))  # fmt: skip
    return rows + robot_config_refusals(workdir)


def robot_config_refusals(workdir: Path) -> list[Row]:
    """A robot YAML that is malformed or has a misspelled key: the MuJoCo robot node refuses to
    start (exit 2) with one line naming the file or the field."""
    good = (ROOT / "sim" / "robots" / "go2.yaml").read_text()
    cases = {
        "robot config: malformed YAML": ("broken.yaml", good.replace(":", "", 1) + "\n  - [", "is not valid YAML"),
        "robot config: unknown key": ("misspelled.yaml", good.replace("joints:", "joint:", 1), "joint"),
    }
    rows = []
    for case, (name, text, expected) in cases.items():
        path = workdir / name
        path.write_text(text)
        run = subprocess.run([sys.executable, "-m", "trot.ros_nodes.sim_node", "--ros-args", "-p", f"robot:={path}"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
        line = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ""
        ok = run.returncode == 2 and expected in line and "Traceback" not in run.stderr
        rows.append(Row("artifacts & config", case, f"exit {run.returncode}: `{line.replace(f'{workdir}/', '')[:150]}`",
                        "refused naming the problem", ok))  # fmt: skip
    return rows
