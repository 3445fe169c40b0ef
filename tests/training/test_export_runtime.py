"""Export a short real training run and run the artifact through the deploy-side runtime."""

import copy
import gc
import json
import re
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import mujoco
import numpy as np
import onnx
import pytest
import torch
import yaml
from onnx import numpy_helper

from trot.policies.artifact import CONTRACT_KEY, DIGEST_KEY, ArtifactError, read_artifact
from trot.policies.contract import CONTRACT_VERSION, Contract
from trot.policies.runtime import PolicyRuntime
from trot.testing.export import train_and_export
from trot.training.evaluate import load_run_policy
from trot.training.export import ParityError, check_parity, parity_observations
from trot.training.tasks.velocity.env import LocomotionEnv


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return train_and_export(tmp_path_factory.mktemp("export"))


#: So small that the young policy's actions exceed it: the clip acts on most ticks.
TIGHT_ACTION_CLIP = 0.005


@pytest.fixture(scope="module")
def tightly_clipped_artifact(tmp_path_factory) -> Path:
    return train_and_export(tmp_path_factory.mktemp("export_clipped"), action_clip=TIGHT_ACTION_CLIP)


def test_artifact_files_contract_and_parity(artifact: Path) -> None:
    model = onnx.load(artifact / "policy.onnx")
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert model.graph.input[0].name == "obs" and dims == ["batch", 45]
    assert model.graph.output[0].name == "actions"
    meta = {p.key: p.value for p in model.metadata_props}
    contract = Contract.from_json(meta[CONTRACT_KEY])
    assert contract.robot == "go2" and contract.joint_names[0] == "FL_hip_joint"
    prov = contract.provenance
    for key in ("training_config_sha256", "git_commit", "training_env_steps", "seed", "exported_at"):
        assert key in prov
    assert prov["seed"] == 3 and prov["training_iterations"] == 2
    on_disk = yaml.safe_load((artifact / "policy.yaml").read_text())
    assert Contract.from_dict(on_disk) == contract
    # the current version, self-describing in the ONNX metadata and in policy.yaml alike
    assert contract.version == CONTRACT_VERSION == on_disk["version"] == 2
    assert on_disk["obs_terms"][3]["definition"]["offset"] == "default_joint_pos"
    assert on_disk["action_definition"] == json.loads(meta[CONTRACT_KEY])["action_definition"]
    parity = json.loads((artifact / "parity.json").read_text())
    assert parity["samples"] >= 10_000 and parity["max_abs_diff"] <= 1e-5 and parity["tolerance"] == PARITY_TOLERANCE


@pytest.mark.parametrize("clipped", [False, True], ids=["default_clip", "tight_clip"])
def test_runtime_observation_equals_the_env_observation_in_closed_loop(
    artifact: Path, tightly_clipped_artifact: Path, quiet_cfg, clipped: bool
) -> None:
    """The robot's runtime builds, bit for bit, the observation training built; with a tight action
    clip that includes the previous action as clipped (the network's raw output exceeds it). Its
    action is the checkpoint's, evaluated independently of the ONNX graph."""
    path = tightly_clipped_artifact if clipped else artifact
    runtime = PolicyRuntime(path)
    checkpoint = checkpoint_policy(path.parent / "run")
    env_cfg = quiet_cfg(num_envs=1)
    if clipped:
        env_cfg.observation.action_clip = TIGHT_ACTION_CLIP
    env = LocomotionEnv(env_cfg, seed=0)
    assert env.contract.action_clip == runtime.contract.action_clip
    beyond_the_clip = 0
    obs, _ = env.reset()
    model = env.model
    names = [model.joint(j).name for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]
    names = names[::-1]  # a driver may publish joints in any order
    qadr = [model.jnt_qposadr[model.joint(n).id] for n in names]
    vadr = [model.jnt_dofadr[model.joint(n).id] for n in names]
    idx = env.index
    for _ in range(40):
        sensors = env._sensor_out[0, -1]
        targets = runtime.step(
            names,
            env.qpos[0, qadr],
            env.qvel[0, vadr],
            base_quat_wxyz=sensors[idx.orientation],
            base_ang_vel=sensors[idx.gyro],
            command=env.commands[0],
        )
        np.testing.assert_array_equal(runtime.builder.out, obs)
        np.testing.assert_allclose(runtime.action, checkpoint(obs), rtol=0, atol=PARITY_TOLERANCE)
        beyond_the_clip += int(np.abs(runtime.action).max() > runtime.contract.action_clip)
        obs, *_ = env.step(runtime.action.copy())
        np.testing.assert_array_equal(env._last_targets[0], targets)
    env.close()
    if clipped:  # the clip acted (on 40 ticks)
        assert beyond_the_clip > 20, beyond_the_clip


#: The exporter's tolerance (ExportConfig.tolerance): largest |checkpoint - ONNX Runtime| action.
PARITY_TOLERANCE = 1e-5

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "elu": torch.nn.functional.elu, "tanh": torch.tanh, "relu": torch.relu, "silu": torch.nn.functional.silu,
}  # fmt: skip


def checkpoint_policy(run: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The deterministic policy of a run's last checkpoint, evaluated in float64 with plain torch ops
    from the saved tensors, not through trot's modules or the exported graph: the observation
    normalizer, (obs - mean) / sqrt(var + 0.01) clamped to +-10, then the actor's linear layers with
    the run's activation between them."""
    state = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)["model"]
    activation = _ACTIVATIONS[yaml.safe_load((run / "config.yaml").read_text())["policy"]["activation"]]
    mean, var = state["actor_norm.mean"].double(), state["actor_norm.var"].double()
    layers = sorted({int(key.split(".")[1]) for key in state if key.startswith("actor.")})
    weights = [(state[f"actor.{i}.weight"].double(), state[f"actor.{i}.bias"].double()) for i in layers]

    def act(obs: np.ndarray) -> np.ndarray:
        x = torch.clamp((torch.as_tensor(obs, dtype=torch.float64) - mean) / torch.sqrt(var + 0.01), -10.0, 10.0)
        for k, (w, b) in enumerate(weights):
            x = x @ w.T + b
            if k < len(weights) - 1:
                x = activation(x)
        return x.numpy()

    return act


def test_runtime_actions_equal_the_checkpoint_evaluated_independently(artifact: Path, quiet_cfg) -> None:
    """The artifact's actions, through the deploy runtime (ONNX Runtime), are the checkpoint's: on
    observations of a closed-loop rollout, and on wide random ones that reach the normalizer's clamp
    (measured: 5e-8 and 5e-7 apart; an exported graph without the normalizer is 0.15 apart, one with
    its epsilon at 1e-5 0.02, tanh for elu 0.03)."""
    runtime = PolicyRuntime(artifact)
    checkpoint = checkpoint_policy(artifact.parent / "run")
    env = LocomotionEnv(quiet_cfg(num_envs=16), seed=1)
    obs, _ = env.reset()
    rollout = []
    for _ in range(50):
        rollout.append(obs)
        obs, *_ = env.step(runtime.act_batch(obs))
    env.close()
    wide = np.random.default_rng(1).normal(0.0, 3.0, size=(800, obs.shape[1])).astype(np.float32)
    for observations in (np.concatenate(rollout), wide):
        actions = runtime.act_batch(observations)
        assert np.abs(actions).max() > 100 * PARITY_TOLERANCE  # (the young policy's actions are not ~0)
        np.testing.assert_allclose(actions, checkpoint(observations), rtol=0, atol=PARITY_TOLERANCE)


@pytest.fixture(scope="module")
def parity_inputs(artifact: Path) -> tuple:
    """The run's actor as the exporter loads it, and fresh parity observations (another seed)."""
    actor, train_cfg, _ = load_run_policy(artifact.parent / "run")
    return actor, parity_observations(train_cfg, actor, 2000, seed=1)


def _last_bias_plus_2e_5(model: onnx.ModelProto) -> None:
    """One action offset by twice the tolerance."""
    bias = next(i for i in model.graph.initializer if i.name.startswith("actor.") and i.name.endswith(".bias")
                and numpy_helper.to_array(i).shape == (12,))  # fmt: skip
    values = numpy_helper.to_array(bias).copy()
    values[0] += 2e-5
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))


def _elu_alpha_0_99(model: onnx.ModelProto) -> None:
    """An activation's parameter not the torch module's (a converter's mistake)."""
    (alpha,) = next(n for n in model.graph.node if n.op_type == "Elu").attribute
    alpha.f = 0.99


def _normalizer_clip_at_9(model: onnx.ModelProto) -> None:
    """The normalizer's clamp at +-9 instead of +-10 (the Clip node's bounds)."""
    clip = next(n for n in model.graph.node if n.op_type == "Clip")
    for bound in clip.input[1:]:
        (value,) = next(n for n in model.graph.node if bound in n.output).attribute
        value.t.CopyFrom(numpy_helper.from_array(np.sign(numpy_helper.to_array(value.t)) * np.float32(9.0)))


@pytest.mark.parametrize(
    ("perturb", "figure_range"),
    [(_last_bias_plus_2e_5, (1.9e-5, 2.2e-5)), (_elu_alpha_0_99, (1e-4, 1.0)), (_normalizer_clip_at_9, (1e-3, 10.0))],
    ids=["last_bias_plus_2e-5", "elu_alpha_0.99", "normalizer_clip_at_9"],
)
def test_export_parity_refuses_a_perturbed_graph(artifact: Path, parity_inputs: tuple, perturb, figure_range) -> None:
    """The exporter's parity check, run here on the exported graph (it passes: measured 5e-7) and on a
    copy perturbed after conversion: ParityError naming the difference (measured 2.04e-5, 2.1e-3, 0.087)."""
    actor, obs = parity_inputs
    model = onnx.load(artifact / "policy.onnx")
    assert check_parity(actor, model, obs, PARITY_TOLERANCE)["max_abs_diff"] <= PARITY_TOLERANCE
    perturbed = copy.deepcopy(model)
    perturb(perturbed)
    with pytest.raises(ParityError, match=r"differ by \S+ > 1e-05 on 2000 samples") as error:
        check_parity(actor, perturbed, obs, PARITY_TOLERANCE)
    figure = float(re.search(r"differ by (\S+) >", str(error.value)).group(1))
    assert figure_range[0] < figure < figure_range[1], error.value


def test_runtime_reuses_buffers_and_allocates_nothing_per_step(artifact: Path) -> None:
    runtime = PolicyRuntime(artifact)
    names = list(runtime.joint_names)
    q, dq = np.array(runtime.contract.default_joint_pos), np.zeros(12)
    quat, gyro, cmd = np.array([1.0, 0, 0, 0]), np.zeros(3), np.array([0.5, 0.0, 0.0])
    first = runtime.step(names, q, dq, quat, gyro, cmd)
    assert runtime.step(names, q, dq, quat, gyro, cmd) is not None
    second = runtime.step(names, q, dq, quat, gyro, cmd)
    assert np.shares_memory(first, second), "targets must live in one reused buffer"
    tracemalloc.start()
    for _ in range(50):
        runtime.step(names, q, dq, quat, gyro, cmd)
    # Our part of the step (observation build + action mapping) writes into preallocated arrays;
    # what Python allocates transiently is a few view objects and the keyword dict (~2 KB peak,
    # independent of how many steps run).
    tracemalloc.reset_peak()
    start, _ = tracemalloc.get_traced_memory()
    for _ in range(500):
        runtime.observe(names, q, dq, quat, gyro, cmd)
        runtime.mapper(runtime.action)
    end, peak = tracemalloc.get_traced_memory()
    assert end - start < 1024, f"memory grew by {end - start} bytes over 500 steps (a leak)"
    assert peak - start < 4096, f"observation/mapping allocate (peak +{peak - start} bytes)"
    # The whole step retains nothing of ours (ONNX Runtime's own bookkeeping is outside our control).
    # Measured between two rounds after a first one: a leak grows every round, while a one-time
    # cache (numpy keeps small freed blocks for reuse) is filled by the first round.
    ours = [tracemalloc.Filter(False, "*onnxruntime*"), tracemalloc.Filter(False, tracemalloc.__file__)]
    # (collected before each snapshot: whether the cyclic collector last ran before or after a round
    # depends on what earlier tests allocated, and a leak survives a collection anyway)
    for _ in range(500):
        runtime.step(names, q, dq, quat, gyro, cmd)
    gc.collect()
    before = tracemalloc.take_snapshot().filter_traces(ours)
    for _ in range(500):
        runtime.step(names, q, dq, quat, gyro, cmd)
    gc.collect()
    after = tracemalloc.take_snapshot().filter_traces(ours)
    tracemalloc.stop()
    runtime_file = Path(PolicyRuntime.__init__.__code__.co_filename).name
    grown = [d for d in after.compare_to(before, "filename") if d.size_diff > 0 and runtime_file in str(d.traceback)]
    assert not grown, grown


def test_warm_up_changes_nothing_the_next_step_reads(artifact: Path) -> None:
    """The node runs warm_up just before a tick is due (prewarm_lead_s): whatever it is given, the
    steps around it must come out exactly as without it."""
    plain, warmed = PolicyRuntime(artifact), PolicyRuntime(artifact)
    names = list(plain.joint_names)
    rng = np.random.default_rng(3)

    def inputs() -> tuple:
        q = np.array(plain.contract.default_joint_pos) + rng.normal(0, 0.1, 12)
        quat = rng.normal(size=4)
        return q, rng.normal(0, 1, 12), quat / np.linalg.norm(quat), rng.normal(0, 0.5, 3), rng.uniform(-0.5, 0.5, 3)

    for _ in range(20):
        state = inputs()
        expected = plain.step(names, *state).copy()
        other = inputs()
        scratch = warmed.warm_up(names[::-1], other[0][::-1], other[1][::-1], *other[2:])
        assert np.isfinite(scratch).all() and not np.shares_memory(scratch, warmed.mapper.targets)
        np.testing.assert_array_equal(warmed.step(names, *state), expected)
        np.testing.assert_array_equal(warmed.last_action, plain.last_action)


def test_runtime_matches_joints_by_name_and_refuses_missing_ones(artifact: Path) -> None:
    runtime = PolicyRuntime(artifact)
    names = list(runtime.joint_names)
    q = np.array(runtime.contract.default_joint_pos) + np.linspace(0, 0.1, 12)
    state = dict(base_quat_wxyz=np.array([1.0, 0, 0, 0]), base_ang_vel=np.zeros(3), command=np.zeros(3))
    a = runtime.step(names, q, np.zeros(12), **state).copy()
    runtime.reset()
    perm = np.random.default_rng(0).permutation(12)
    b = runtime.step([names[i] for i in perm], q[perm], np.zeros(12), **state).copy()
    np.testing.assert_array_equal(a, b)
    with pytest.raises(KeyError, match="RR_calf_joint"):
        runtime.step(names[:-1], q[:-1], np.zeros(11), **state)
    with pytest.raises(ValueError, match=r"\[batch, 45\]"):
        runtime.act_batch(np.zeros((2, 44)))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a valid ONNX model"),
        (lambda p: p.write_bytes(b"hello"), "not a valid ONNX model"),
        (lambda p: _edit_meta(p, None), "no 'trot_contract' metadata"),
        (lambda p: _edit_meta(p, "{broken"), "not valid JSON"),
        (lambda p: _edit_meta(p, lambda d: d.update(version=7)), "contract.version"),
        (lambda p: _edit_meta(p, lambda d: d["obs_terms"].pop()), "input 'obs' has shape"),
        (lambda p: _edit_meta(p, _swap_two_joints), r"contract field\(s\) \['joint_names'\] were changed after export"),
        (lambda p: _edit_meta(p, lambda d: d["kp"].__setitem__(3, 80.0)), r"\['kp'\] were changed"),
        (lambda p: _edit_meta(p, lambda d: None, digest="drop"), "no 'trot_contract_digest' metadata"),
        (lambda p: _edit_meta(p, _drop_the_joint_offset), r"\['obs_terms'\] were changed"),
    ],
    ids=[
        "truncated",
        "garbage",
        "no-metadata",
        "bad-json",
        "future-version",
        "size-mismatch",
        "swapped-joints",
        "edited-gain",
        "no-digest",
        "edited-definition",
    ],
)
def test_bad_artifacts_are_refused(artifact: Path, tmp_path: Path, damage, message: str) -> None:
    broken = tmp_path / "policy.onnx"
    broken.write_bytes((artifact / "policy.onnx").read_bytes())
    damage(broken)
    with pytest.raises(ArtifactError, match=message):
        read_artifact(broken)
    with pytest.raises(ArtifactError):
        PolicyRuntime(broken)


def test_missing_artifact(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no such policy file"):
        PolicyRuntime(tmp_path)


def _drop_the_joint_offset(contract: dict) -> None:
    """A definition edited: joint_pos said to be the raw joint position."""
    contract["obs_terms"][3]["definition"]["offset"] = None


def _swap_two_joints(contract: dict) -> None:
    """The classic mistake: two joints' names exchanged in the contract (each keeps its numbers)."""
    names = contract["joint_names"]
    names[0], names[3] = names[3], names[0]


def _edit_meta(path: Path, change, digest: str = "keep") -> None:
    """Edit the contract in an artifact's metadata; ``digest``: keep the original's (a tampered
    artifact), ``recompute`` (as if exported that way) or ``drop``."""
    model = onnx.load(path)
    meta = {p.key: p.value for p in model.metadata_props}
    del model.metadata_props[:]
    if digest == "keep" and change is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = DIGEST_KEY, meta[DIGEST_KEY]
    if change is not None:
        if isinstance(change, str):
            value = change
        else:
            data = json.loads(meta[CONTRACT_KEY])
            change(data)
            value = json.dumps(data)
        entry = model.metadata_props.add()
        entry.key, entry.value = CONTRACT_KEY, value
        if digest == "recompute":
            entry = model.metadata_props.add()
            entry.key, entry.value = DIGEST_KEY, json.dumps(Contract.from_json(value).field_digests())
    onnx.save(model, path)


def test_sim2sim_eval_and_card(artifact: Path) -> None:
    from trot.training.artifact_eval import (
        ROBUSTNESS,
        PolicyEvalConfig,
        command_response,
        evaluate_artifact,
        robustness,
        write_card,
    )

    cfg = PolicyEvalConfig(
        segment_s=0.4, settle_s=0.2, envs_per_condition=2, conditions=("nominal", "timestep_2ms", "mjcf_contacts"),
        response_s=0.2, robust_episodes=2, robust_episode_s=1.5, robust_command_s=1.2,
    )  # fmt: skip
    results = evaluate_artifact(artifact, cfg)
    assert [r["condition"] for r in results] == ["nominal", "timestep_2ms", "mjcf_contacts"]
    for r in results:
        # a share of the condition's robots (not of time steps, not of segments)
        assert 0.0 <= r["fall_rate"] <= 1.0 and (r["fall_rate"] * cfg.envs_per_condition).is_integer(), r["fall_rate"]
        assert len(r["trace"]["t"]) == 6 * 20  # 6 segments x 0.4 s at 50 Hz
    response = command_response(artifact, cfg)
    ranges = PolicyRuntime(artifact).contract.command_ranges
    for axis, key in (("vx", "lin_vel_x"), ("vy", "lin_vel_y"), ("yaw", "ang_vel_yaw")):
        commanded = [r["command"] for r in response if r["axis"] == axis]
        assert min(commanded) < 0 < max(commanded), axis  # both directions
        assert all(ranges[key][0] <= c <= ranges[key][1] for c in commanded), axis
    assert all(np.isfinite(r["achieved"]) or r["fell"] for r in response)
    robust = robustness(artifact, cfg)
    assert [r["condition"] for r in robust] == list(ROBUSTNESS)
    for r in robust:
        assert r["episodes"] == 2 and 0.0 <= r["no_fall_share"] <= 1.0 and np.isfinite(r["vx_error_mean"]), r
    card = write_card(artifact, results, cfg, response=response, robust=robust)
    text = card.read_text()
    assert "| nominal |" in text and "| timestep_2ms |" in text and "training_config_sha256" in text
    assert "## Random commands" in text and "| mjcf_payload |" in text
    assert json.loads((artifact / "robustness.json").read_text()) == robust
    assert "## Command response" in text and "| vy [m/s] |" in text
    assert json.loads((artifact / "response.json").read_text()) == response
    for png in ("tracking_nominal.png", "conditions.png", "training_curve.png", "command_response.png"):
        assert (artifact / png).stat().st_size > 1000, png


def test_dead_band_is_the_largest_command_followed_by_less_than_half() -> None:
    from trot.training.artifact_eval import dead_band

    rows = [{"axis": "vx", "command": c, "achieved": a} for c, a in
            ((-0.5, -0.45), (-0.2, 0.0), (0.1, 0.06), (0.3, 0.1), (0.5, 0.5))]  # fmt: skip
    assert dead_band(rows, "vx") == 0.3  # 0.3 -> 0.1 is the largest miss (0.1 -> 0.06 is followed)
    rows.append({"axis": "vx", "command": 0.8, "achieved": float("nan")})  # fell: not followed
    assert dead_band(rows, "vx") == 0.8
    assert dead_band([{"axis": "vy", "command": 0.3, "achieved": -0.3}], "vy") == 0.3  # the wrong way
    assert dead_band(rows, "yaw") == 0.0


def test_eval_refuses_an_artifact_whose_contract_disagrees_with_the_simulation(artifact: Path, tmp_path: Path) -> None:
    from trot.training.artifact_eval import ContractMismatch, PolicyEvalConfig, evaluate_artifact

    other = tmp_path / "other"
    other.mkdir()
    (other / "policy.onnx").write_bytes((artifact / "policy.onnx").read_bytes())
    _edit_meta(other / "policy.onnx", lambda d: d.update(kp=[99.0] * 12), digest="recompute")
    with pytest.raises(ContractMismatch, match=r"contract\.kp"):
        evaluate_artifact(other, PolicyEvalConfig(segment_s=0.2, conditions=("nominal",)))


def test_export_and_eval_from_the_command_line(artifact: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]

    def trot(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "trot.cli", *args], cwd=root, capture_output=True, text=True,
                              timeout=300)  # fmt: skip

    out = tmp_path / "cli_policy"
    r = trot("export", str(artifact.parent / "run"), "-o", str(out), "--parity-samples", "10000")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "max_abs_diff" in r.stdout
    quick = ("--robust-episodes", "2", "--robust-episode-s", "1.5", "--robust-command-s", "1.2")
    r = trot("eval", str(out), "--segment-s", "0.2", "--envs-per-condition", "1", "--conditions", "nominal",
             "weak_motors", *quick)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "weak_motors" in r.stdout and (out / "card.md").is_file()
    assert "random commands, mjcf_contacts" in r.stdout and "## Random commands" in (out / "card.md").read_text()
    r = trot("eval", str(out), "--conditions", "moon_gravity")
    assert r.returncode == 2 and "moon_gravity" in r.stderr
    r = trot("export", str(tmp_path / "no_run"), "-o", str(tmp_path / "x"))
    assert r.returncode == 2 and "no checkpoint" in r.stderr


def test_a_failed_export_writes_nothing_and_leaves_an_earlier_artifact_intact(artifact: Path, tmp_path: Path) -> None:
    """Parity fails (tolerance 0: the conversion differs by ~5e-7): no artifact folder appears, an
    existing one keeps its files byte for byte, and no staging folder is left beside it."""
    from trot.training.export import ExportConfig, export

    run = artifact.parent / "run"
    fresh = tmp_path / "fresh"
    with pytest.raises(ParityError, match="differ by"):
        export(ExportConfig(run=run, out=fresh, parity_samples=500, tolerance=0.0))
    assert not fresh.exists()
    earlier = tmp_path / "earlier"
    export(ExportConfig(run=run, out=earlier, parity_samples=500))
    before = {f.name: f.read_bytes() for f in earlier.iterdir()}
    assert {"policy.onnx", "policy.yaml", "parity.json"} <= set(before)
    with pytest.raises(ParityError):
        export(ExportConfig(run=run, out=earlier, parity_samples=500, tolerance=0.0))
    assert {f.name: f.read_bytes() for f in earlier.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier"]


def test_shipped_go2_policy_loads_and_matches_the_simulation() -> None:
    """The artifact in the repository must stay usable as the robot config evolves."""
    from trot.training.artifact_eval import check_contract
    from trot.training.tasks.velocity.config import EnvConfig

    shipped = Path(__file__).resolve().parents[2] / "policies" / "go2_flat"
    runtime = PolicyRuntime(shipped)
    env = LocomotionEnv(EnvConfig(robot=runtime.contract.robot, num_envs=1))
    check_contract(runtime.contract, env.contract)
    env.close()
    assert runtime.contract.provenance["training_command"].startswith("trot train go2-flat")
    assert (shipped / "policy.onnx").stat().st_size < 5_000_000
    assert "| nominal |" in (shipped / "card.md").read_text()
