"""``trot export RUN_DIR -o policies/<name>/``: the deployable artifact of a training run.

Writes ``policy.onnx`` (normalizer + actor mean, dynamic batch, opset 17, the contract as JSON in
its metadata, with each observation term's definition and the action mapping: enough to run it
without trot), ``policy.yaml`` (the same contract, for people) and ``parity.json``. Every export
compares torch and ONNX Runtime on >= 10,000 observations (random and recorded from rollouts of
the policy in its training environment) and refuses to write the artifact if they differ by
more than the tolerance; a failed export writes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import numpy as np
import onnx
import torch
import tyro
import yaml

from trot.policies.artifact import INPUT_NAME, ONNX_FILE, OUTPUT_NAME, contract_metadata, read_artifact
from trot.policies.contract import Contract
from trot.policies.runtime import make_session
from trot.training.tasks.velocity.env import LocomotionEnv

OPSET = 17


@dataclass
class ExportConfig:
    """Export a run's checkpoint as an ONNX policy artifact with its deployment contract."""

    run: tyro.conf.Positional[Path]
    """Training run folder."""
    out: Annotated[Path, tyro.conf.arg(aliases=("-o",))]
    """Artifact folder, e.g. policies/go2_flat."""
    checkpoint: str = "last.pt"
    parity_samples: int = 10_000
    tolerance: float = 1e-5
    """Largest allowed |torch - ONNX Runtime| over all parity samples."""
    seed: int = 0


class ParityError(RuntimeError):
    pass


def git_commit() -> str | None:
    """HEAD of the checkout exporting, with ``+dirty`` when it has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True, timeout=10, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def provenance(run: Path, checkpoint: dict, train_cfg) -> dict:
    config_text = (run / "config.yaml").read_bytes()
    info = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
    machine = info.get("machine", {})
    resumed = {}
    if resumes := info.get("resumes"):
        resumed["training_resumed"] = "; ".join(f"at iteration {r['from_iteration']}: {r['command']}" for r in resumes)
    return {
        "training_command": info.get("command"),
        **resumed,
        "training_machine": f"{machine.get('cpu_count')} cores, {machine.get('platform')}" if machine else None,
        "task": checkpoint["meta"]["task"],
        "run": run.name,
        "training_config_sha256": hashlib.sha256(config_text).hexdigest(),
        "git_commit": git_commit(),
        "training_iterations": checkpoint["iteration"],
        "training_env_steps": checkpoint["env_steps"],
        "training_wall_clock_s": round(float(checkpoint["elapsed_s"]), 1),
        "seed": train_cfg.seed,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def to_onnx(actor: torch.nn.Module, num_obs: int, contract: Contract) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(
            actor,
            (torch.zeros(1, num_obs),),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    model.producer_name = "trot"
    del model.metadata_props[:]
    for key, value in contract_metadata(contract).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    return model


def parity_observations(train_cfg, actor: torch.nn.Module, samples: int, seed: int) -> np.ndarray:
    """Half recorded from closed-loop rollouts of the policy, half random (wide) vectors."""
    env_cfg = dataclasses.replace(train_cfg.env, num_envs=64)
    env = LocomotionEnv(env_cfg, seed=seed)
    obs, _ = env.reset()
    recorded = []
    with torch.no_grad():
        while len(recorded) * env.num_envs < samples // 2:
            recorded.append(obs)
            obs, *_ = env.step(actor(torch.from_numpy(obs)).numpy())
    env.close()
    rng = np.random.default_rng(seed)
    random = rng.normal(0.0, 3.0, size=(samples - len(recorded) * env.num_envs, obs.shape[1])).astype(np.float32)
    return np.concatenate([*recorded, random])


def check_parity(actor: torch.nn.Module, model: onnx.ModelProto, obs: np.ndarray, tolerance: float) -> dict:
    with torch.no_grad():
        expected = actor(torch.from_numpy(obs)).numpy()
    session = make_session(model.SerializeToString())
    got = session.run([OUTPUT_NAME], {INPUT_NAME: obs})[0]
    diff = np.abs(expected - got)
    result = {"samples": int(obs.shape[0]), "max_abs_diff": float(diff.max()), "tolerance": tolerance}
    if not diff.max() <= tolerance:
        raise ParityError(
            f"torch and ONNX Runtime differ by {diff.max():.3g} > {tolerance:g} on {obs.shape[0]} samples"
        )
    return result


def export(cfg: ExportConfig) -> Path:
    from trot.training.evaluate import load_run_policy

    actor, train_cfg, ck = load_run_policy(cfg.run, cfg.checkpoint)
    if "contract" not in ck["meta"]:
        raise ValueError(f"{cfg.run}: not a trot locomotion run (Gymnasium runs have no deployment contract)")
    contract = dataclasses.replace(  # at the current version: a run saved with a version-1 contract is upgraded
        Contract.from_json(ck["meta"]["contract"]).upgraded(), provenance=provenance(cfg.run, ck, train_cfg)
    )
    model = to_onnx(actor, contract.num_obs, contract)
    obs = parity_observations(train_cfg, actor, cfg.parity_samples, cfg.seed)
    parity = check_parity(actor, model, obs, cfg.tolerance)

    # Written beside the artifact folder and read back as a robot will read it; only then moved in,
    # file by file: a failed export leaves no artifact, and an earlier one in cfg.out untouched.
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{cfg.out.name}.", dir=cfg.out.parent) as staging:
        stage = Path(staging)
        onnx.save(model, stage / ONNX_FILE)
        header = "# Deployment contract of policy.onnx (the same JSON is in its metadata). Do not edit.\n"
        (stage / "policy.yaml").write_text(header + yaml.safe_dump(contract.to_dict(), sort_keys=False))
        (stage / "parity.json").write_text(json.dumps(parity, indent=2))
        from trot.training.evaluate import plot_curve

        curve = plot_curve(cfg.run)
        if curve is not None:
            shutil.copyfile(curve, stage / "training_curve.png")
        if (cfg.run / "eval.json").exists():  # `trot eval RUN_DIR` figures on the training distribution
            shutil.copyfile(cfg.run / "eval.json", stage / "training_eval.json")
        read_artifact(stage)  # what a robot will do: refuse now rather than there
        cfg.out.mkdir(exist_ok=True)
        for f in sorted(stage.iterdir(), key=lambda f: f.name == ONNX_FILE):  # the policy last
            os.replace(f, cfg.out / f.name)
    return cfg.out
