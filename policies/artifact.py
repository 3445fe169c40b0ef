"""Reading a policy artifact: an ONNX file whose metadata carries the deployment contract.

Every way an artifact can be wrong (missing, truncated, not ONNX, no contract, a malformed or
future contract, tensor shapes that disagree with the contract, a contract edited after export,
term definitions that are not what this trot computes) is refused here with a message
naming the problem; nothing downstream ever guesses a default.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from trot.policies.contract import Contract, ContractError

CONTRACT_KEY = "trot_contract"
DIGEST_KEY = "trot_contract_digest"  # Contract.field_digests() at export time, JSON
INPUT_NAME = "obs"
OUTPUT_NAME = "actions"
ONNX_FILE = "policy.onnx"


class ArtifactError(ValueError):
    """A policy artifact cannot be used; the message says why."""


SHIPPED = Path(__file__).resolve().parent  # policies/<name>/ folders installed with trot


def onnx_path(path: str | Path) -> Path:
    """A policy folder, its policy.onnx, or the bare name of a shipped policy (``go2_flat``)."""
    path = Path(path)
    if not path.exists() and len(path.parts) == 1 and (SHIPPED / path / ONNX_FILE).is_file():
        path = SHIPPED / path
    if path.is_dir():
        path = path / ONNX_FILE
    if not path.is_file():
        raise ArtifactError(f"{path}: no such policy file")
    return path


def read_artifact(path: str | Path) -> tuple[bytes, Contract]:
    """The serialized ONNX model and its validated contract."""
    path = onnx_path(path)
    data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf decode errors have no common public base class
        raise ArtifactError(f"{path}: not a valid ONNX model (corrupt or truncated?): {exc}") from exc
    meta = {p.key: p.value for p in model.metadata_props}
    if CONTRACT_KEY not in meta:
        raise ArtifactError(f"{path}: no '{CONTRACT_KEY}' metadata: not a trot policy artifact")
    try:
        contract = Contract.from_json(meta[CONTRACT_KEY])
    except ContractError as exc:
        raise ArtifactError(f"{path}: metadata {exc}") from exc
    _check_signature(model, contract, path)
    _check_digests(meta, contract, path)
    try:
        contract.check_definitions()  # as exported, but not what this trot's observation and action are
    except ContractError as exc:
        raise ArtifactError(f"{path}: metadata {exc}") from exc
    return data, contract


def contract_metadata(contract: Contract) -> dict[str, str]:
    """The metadata entries an exported artifact carries: the contract as JSON (at its version:
    version 2 with every term's definition) and its per-field digests."""
    return {CONTRACT_KEY: contract.to_json(), DIGEST_KEY: json.dumps(contract.field_digests())}


def _check_digests(meta: dict[str, str], contract: Contract, path: Path) -> None:
    if DIGEST_KEY not in meta:
        raise ArtifactError(f"{path}: no '{DIGEST_KEY}' metadata: the contract cannot be verified (re-export it)")
    try:
        stored = json.loads(meta[DIGEST_KEY])
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: metadata '{DIGEST_KEY}' is not valid JSON ({exc})") from exc
    actual = contract.field_digests()
    changed = sorted(k for k in set(actual) | set(stored) if stored.get(k) != actual.get(k))
    if changed:
        raise ArtifactError(
            f"{path}: contract field(s) {changed} were changed after export (their digests do not match): "
            "refusing a contract that may not be the one the policy was trained with; re-export instead of editing"
        )


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


def _check_signature(model: onnx.ModelProto, contract: Contract, path: Path) -> None:
    inputs = {i.name: i for i in model.graph.input}
    outputs = {o.name: o for o in model.graph.output}
    if INPUT_NAME not in inputs:
        raise ArtifactError(f"{path}: the model has no input '{INPUT_NAME}' (inputs: {sorted(inputs)})")
    if OUTPUT_NAME not in outputs:
        raise ArtifactError(f"{path}: the model has no output '{OUTPUT_NAME}' (outputs: {sorted(outputs)})")
    in_dims, out_dims = _dims(inputs[INPUT_NAME]), _dims(outputs[OUTPUT_NAME])
    if len(in_dims) != 2 or in_dims[1] != contract.num_obs:
        raise ArtifactError(
            f"{path}: input '{INPUT_NAME}' has shape {in_dims}; the contract's observation has {contract.num_obs}"
        )
    if len(out_dims) != 2 or out_dims[1] != contract.num_joints:
        raise ArtifactError(
            f"{path}: output '{OUTPUT_NAME}' has shape {out_dims}, the contract has {contract.num_joints} joints"
        )
