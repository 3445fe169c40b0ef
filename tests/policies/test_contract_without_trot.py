"""The contract describes itself: a controller written from the artifact alone, in a process where
trot cannot be imported, computes the observation and the joint targets trot's runtime computes.

The controller below reads the ONNX metadata with onnx + json and follows only the definitions'
fields (input, components order, clip, offset, world_vector, quaternion_order, scale; the layout,
the input/output names and the action mapping); the robot state reaches it as named readings
(joints by name, quaternion and axes by component name), so every order it uses is one the
artifact states.
"""

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from trot.policies.artifact import ONNX_FILE, contract_metadata, read_artifact
from trot.policies.contract import COMMAND_AXES, Contract, ObsTerm
from trot.policies.runtime import PolicyRuntime
from trot.sim.robot import load_robot
from trot.sim.world import compile_model
from trot.training.export import to_onnx
from trot.training.tasks.velocity.config import EnvConfig
from trot.training.tasks.velocity.env import make_contract

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "policies" / "go2_flat"

CONTROLLER = textwrap.dedent(
    """
    import json, sys

    class BlockTrot:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("trot", "torch"):
                raise ImportError(f"{name} is blocked: this controller knows only the artifact")
            return None

    sys.meta_path.insert(0, BlockTrot())
    try:
        import trot  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker did not bite")

    import numpy as np
    import onnx
    import onnxruntime

    request = json.load(sys.stdin)
    model = onnx.load(request["onnx"])
    contract = json.loads({p.key: p.value for p in model.metadata_props}["trot_contract"])
    assert contract["version"] == 2, contract["version"]
    layout, mapping = contract["observation_definition"], contract["action_definition"]
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def rotation(q):  # unit quaternion (w, x, y, z) -> matrix taking base-frame vectors to the world frame
        w, x, y, z = q
        return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                         [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                         [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])

    def ordered(reading, components):
        names = contract[components] if isinstance(components, str) else components
        return np.array([reading[name] for name in names], dtype=np.float64)

    previous_action = {name: 0.0 for name in contract[mapping["order"]]}
    out = []
    for state in request["states"]:
        readings = {"imu.angular_velocity": state["gyro"], "imu.orientation": state["quat"],
                    "velocity_command": state["command"], "joint.position": state["joint_pos"],
                    "joint.velocity": state["joint_vel"], "previous_action": previous_action}
        terms = []
        for term in contract["obs_terms"]:
            d = term["definition"]
            if d["world_vector"] is not None:
                q = ordered(readings[d["input"]], d["quaternion_order"])
                value = rotation(q).T @ np.array(d["world_vector"])
            else:
                value = ordered(readings[d["input"]], d["components"])
            if d["clip"] is not None:
                value = np.clip(value, -contract[d["clip"]], contract[d["clip"]])
            if d["offset"] is not None:
                value = value - np.array(contract[d["offset"]])
            assert value.shape == (term["size"],)
            terms.append(term["scale"] * value)
        obs = np.concatenate(terms).astype(layout["dtype"])[None, :]
        action = session.run([mapping["output"]], {layout["input"]: obs})[0][0].astype(np.float64)
        clip = contract[mapping["clip"]]
        targets = np.array(contract[mapping["offset"]]) + contract[mapping["scale"]] * np.clip(action, -clip, clip)
        joints = contract[mapping["order"]]
        previous_action = dict(zip(joints, action.tolist()))
        out.append({"obs": obs[0].tolist(), "targets": dict(zip(joints, targets.tolist())),
                    "beyond_clip": bool(np.abs(action).max() > clip)})
    assert not any(m.split(".")[0] in ("trot", "torch") for m in sys.modules)
    print(json.dumps(out))
    """
)


def tiny_policy(folder: Path) -> Path:
    """A freshly exported version-2 artifact: an untrained network (outputs beyond its action clip)
    with non-unit scales on the terms that have an offset or a rotation."""
    robot = load_robot("go2")
    _, index = compile_model(robot)
    contract = make_contract(robot, EnvConfig(), index.joint_range)
    rescaled = {"projected_gravity": 1.5, "joint_pos": 0.7, "last_action": 0.5}
    terms = tuple(ObsTerm(t.name, t.size, rescaled.get(t.name, t.scale)) for t in contract.obs_terms)
    contract = dataclasses.replace(contract, action_clip=0.3, obs_terms=terms)
    torch.manual_seed(0)
    actor = torch.nn.Sequential(
        torch.nn.Linear(contract.num_obs, 32), torch.nn.Tanh(), torch.nn.Linear(32, contract.num_joints)
    )
    with torch.no_grad():
        actor[2].weight.mul_(4.0)
    folder.mkdir()
    onnx.save(to_onnx(actor, contract.num_obs, contract), folder / ONNX_FILE)
    return folder


def shipped_upgraded(folder: Path) -> Path:
    """The shipped version-1 policy with its contract upgraded in memory to version 2."""
    _, contract = read_artifact(SHIPPED)
    assert contract.version == 1
    model = onnx.load(SHIPPED / ONNX_FILE)
    del model.metadata_props[:]
    for key, value in contract_metadata(contract.upgraded()).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    folder.mkdir()
    onnx.save(model, folder / ONNX_FILE)
    return folder


def robot_states(contract: Contract, count: int, seed: int) -> list[dict]:
    """Named readings: joints by name in a shuffled order, quaternion and axes by component name."""
    rng = np.random.default_rng(seed)
    states = []
    for _ in range(count):
        order = rng.permutation(contract.num_joints)
        names = [contract.joint_names[i] for i in order]
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        pos = {n: float(contract.default_joint_pos[i] + rng.normal(0, 0.3)) for n, i in zip(names, order, strict=True)}
        states.append({
            "joint_pos": pos,
            "joint_vel": {n: float(rng.normal(0, 3.0)) for n in names},
            "quat": dict(zip("wxyz", q.tolist(), strict=True)),
            "gyro": dict(zip("xyz", rng.normal(0, 1.0, 3).tolist(), strict=True)),
            "command": dict(zip(COMMAND_AXES, rng.uniform(-1, 1, 3).tolist(), strict=True)),
        })  # fmt: skip
    return states


@pytest.mark.parametrize("make", [tiny_policy, shipped_upgraded], ids=["fresh_export", "shipped_v1_upgraded"])
def test_a_controller_from_the_artifact_alone_computes_trots_targets(tmp_path: Path, make) -> None:
    artifact = make(tmp_path / "policy")
    runtime = PolicyRuntime(artifact)
    assert runtime.contract.version == 2
    states = robot_states(runtime.contract, 30, seed=4)
    request = json.dumps({"onnx": str(artifact / ONNX_FILE), "states": states})
    result = subprocess.run([sys.executable, "-c", CONTROLLER], input=request, cwd=ROOT, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    theirs = json.loads(result.stdout)
    assert len(theirs) == len(states)
    for state, other in zip(states, theirs, strict=True):
        names = list(state["joint_pos"])
        targets = runtime.step(
            names,
            np.array([state["joint_pos"][n] for n in names]),
            np.array([state["joint_vel"][n] for n in names]),
            base_quat_wxyz=np.array([state["quat"][k] for k in "wxyz"]),
            base_ang_vel=np.array([state["gyro"][k] for k in "xyz"]),
            command=np.array(list(state["command"].values())),
        )
        np.testing.assert_allclose(other["obs"], runtime.builder.out[0], rtol=0, atol=1e-6)
        np.testing.assert_allclose([other["targets"][n] for n in runtime.joint_names], targets, rtol=0, atol=1e-6)
    if make is tiny_policy:  # the clip acted: the controller's last_action had to follow the definition's clip
        assert sum(o["beyond_clip"] for o in theirs) > len(states) // 2


def test_the_controller_needs_the_definitions(tmp_path: Path) -> None:
    """The check above can fail: an artifact without definitions (version 1) leaves that controller
    with nothing to follow."""
    request = json.dumps({"onnx": str(SHIPPED / ONNX_FILE), "states": []})
    result = subprocess.run([sys.executable, "-c", CONTROLLER], input=request, cwd=ROOT, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode != 0 and "AssertionError: 1" in result.stderr
