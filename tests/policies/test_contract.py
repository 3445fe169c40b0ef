import json
from pathlib import Path

import onnx
import pytest

from trot.policies.artifact import CONTRACT_KEY, DIGEST_KEY, ArtifactError, contract_metadata, read_artifact
from trot.policies.contract import CONTRACT_VERSION, Contract, ContractError
from trot.policies.observation import ActionMapper, ObservationBuilder
from trot.policies.terms import OBS_TERMS
from trot.sim.robot import load_robot
from trot.sim.world import compile_model
from trot.training.tasks.velocity.config import EnvConfig
from trot.training.tasks.velocity.env import make_contract


@pytest.fixture(scope="module")
def contract() -> Contract:
    robot = load_robot("go2")
    _, index = compile_model(robot)
    return make_contract(robot, EnvConfig(), index.joint_range)


def test_layout_and_json_roundtrip(contract: Contract) -> None:
    assert contract.num_obs == 3 + 3 + 3 + 12 * 3 == 45
    assert contract.joint_names[0] == "FL_hip_joint"
    assert contract.term_slices()["joint_pos"] == slice(9, 21)
    back = Contract.from_json(contract.to_json())
    assert back == contract
    assert json.loads(contract.to_json())["version"] == CONTRACT_VERSION


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(version=99), "contract.version"),
        (lambda d: d.pop("kp"), "missing field(s) ['kp']"),
        (lambda d: d.update(kp=d["kp"][:-1]), "contract.kp"),
        (lambda d: d.update(colour="red"), "unknown field(s) ['colour']"),
        (lambda d: d["obs_terms"].__setitem__(0, {"name": "lidar", "size": 3, "scale": 1.0}), "obs_terms[0].name"),
        (lambda d: d["obs_terms"].__setitem__(3, {"name": "joint_pos", "size": 11, "scale": 1.0}), "obs_terms[3].size"),
        (lambda d: d.update(joint_names=["a"] * 12), "duplicated joints"),
        (lambda d: d.update(control_dt=-0.02), "contract.control_dt"),
        (lambda d: d.update(default_joint_pos=["x"] * 12), "contract.default_joint_pos"),
        (lambda d: d["command_ranges"].pop("lin_vel_y"), "contract.command_ranges"),
        # each a field the error must name (not an AttributeError escaping ContractError)
        (lambda d: d.update(command_ranges=[[-1.0, 1.0]] * 3), "contract.command_ranges: malformed (AttributeError"),
        (lambda d: d["command_ranges"].update(lin_vel_x=[1.0]), "contract.command_ranges: malformed (ValueError"),
        (lambda d: d.update(action_scale=[0.25]), "contract.action_scale: malformed (TypeError"),
        (lambda d: d.update(obs_terms=7), "contract.obs_terms: malformed (TypeError"),
        (lambda d: d.update(provenance=["trained"]), "contract.provenance: malformed (ValueError"),
    ],
)
def test_malformed_contract_names_the_field(contract: Contract, mutate, field: str) -> None:
    data = contract.to_dict()
    mutate(data)
    with pytest.raises(
        ContractError, match=field.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")
    ):
        Contract.from_dict(data)


def test_not_json() -> None:
    with pytest.raises(ContractError, match="not valid JSON"):
        Contract.from_json("{nope")


# ---------------------------------------------------------------------- self-description (version 2)
SHIPPED = Path(__file__).resolve().parents[2] / "policies" / "go2_flat"


def test_every_term_carries_its_definition(contract: Contract) -> None:
    data = json.loads(contract.to_json())
    assert data["version"] == 2
    by_name = {t["name"]: t for t in data["obs_terms"]}
    assert by_name["joint_pos"]["definition"]["offset"] == "default_joint_pos"
    assert by_name["joint_pos"]["definition"]["components"] == "joint_names"
    assert by_name["joint_vel"]["definition"]["offset"] is None
    assert by_name["last_action"]["definition"]["clip"] == "action_clip"
    assert by_name["projected_gravity"]["definition"]["world_vector"] == [0.0, 0.0, -1.0]
    assert by_name["projected_gravity"]["definition"]["quaternion_order"] == ["w", "x", "y", "z"]
    assert by_name["command"]["definition"]["components"] == list(contract.command_ranges)
    assert by_name["base_ang_vel"]["definition"]["unit"] == "rad/s"
    for term in contract.obs_terms:
        assert term.definition == OBS_TERMS[term.name]
        assert term.size == term.definition.size(contract.num_joints)
    assert data["action_definition"]["formula"] == (
        "target = default_joint_pos + action_scale * clip(action, -action_clip, action_clip)"
    )
    assert data["observation_definition"]["input"] == "obs" and data["action_definition"]["output"] == "actions"
    assert Contract.from_json(contract.to_json()) == contract


def test_version_1_reads_with_definitions_from_the_term_names() -> None:
    _, shipped = read_artifact(SHIPPED)  # digests verified: a version-1 contract serializes as written
    assert shipped.version == 1
    data = shipped.to_dict()
    assert "definition" not in data["obs_terms"][0] and "action_definition" not in data
    assert Contract.from_dict(data) == shipped
    assert [t.definition for t in shipped.obs_terms] == [OBS_TERMS[t.name] for t in shipped.obs_terms]
    shipped.check_definitions()
    upgraded = shipped.upgraded()
    assert upgraded.version == 2 and upgraded.obs_terms == shipped.obs_terms
    assert "definition" in upgraded.to_dict()["obs_terms"][0]
    with pytest.raises(ContractError, match=r"contract.obs_terms\[0\]: unknown field\(s\) \['definition'\]"):
        Contract.from_dict(data | {"obs_terms": upgraded.to_dict()["obs_terms"]})
    with pytest.raises(ContractError, match=r"unknown field\(s\) \['action_definition'\]"):
        Contract.from_dict(data | {"action_definition": upgraded.action_definition})


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["obs_terms"][0].pop("definition"), r"contract.obs_terms\[0\].definition: missing"),
        (lambda d: d.pop("action_definition"), r"missing field\(s\) \['action_definition'\]"),
        (lambda d: d["obs_terms"][2]["definition"].update(colour=1), r"obs_terms\[2\].definition: unknown field"),
        (lambda d: d["obs_terms"][2]["definition"].pop("unit"), r"obs_terms\[2\].definition: missing field"),
        (lambda d: d["obs_terms"][2]["definition"].update(unit=3), r"obs_terms\[2\].definition: unit: expected"),
        (lambda d: d.update(observation_definition=[1]), r"contract.observation_definition: malformed"),
    ],
)
def test_malformed_definitions_name_the_field(contract: Contract, mutate, message: str) -> None:
    data = contract.to_dict()
    mutate(data)
    with pytest.raises(ContractError, match=message):
        Contract.from_dict(data)


def test_a_definition_other_than_trots_is_refused_by_the_math(contract: Contract) -> None:
    """What the builder and the mapper compute is what the definitions say: a contract that defines a
    term (or the action) otherwise cannot be built into either."""
    data = contract.to_dict()
    data["obs_terms"][3]["definition"]["offset"] = None
    other = Contract.from_dict(data)  # well formed
    with pytest.raises(ContractError, match=r"obs_terms\[3\].definition: joint_pos is defined differently .*offset"):
        ObservationBuilder(other)
    data = contract.to_dict()
    data["action_definition"]["clip"] = None
    with pytest.raises(ContractError, match=r"contract.action_definition: differs .*\['clip'\]"):
        ActionMapper(Contract.from_dict(data))


def _v2_artifact(tmp_path: Path, change=None, recompute: bool = False) -> Path:
    """The shipped network with its contract upgraded to version 2, ``change`` applied to the
    contract JSON after its digests were taken (or before, with ``recompute``)."""
    _, contract = read_artifact(SHIPPED)
    meta = contract_metadata(contract.upgraded())
    if change is not None:
        data = json.loads(meta[CONTRACT_KEY])
        change(data)
        meta[CONTRACT_KEY] = json.dumps(data)
        if recompute:
            meta[DIGEST_KEY] = json.dumps(Contract.from_dict(data).field_digests())
    model = onnx.load(SHIPPED / "policy.onnx")
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, tmp_path / "policy.onnx")
    return tmp_path / "policy.onnx"


def _reword(data: dict) -> None:
    data["obs_terms"][3]["definition"]["text"] = "joint position, rad (nothing subtracted)"


def test_a_tampered_definition_is_refused_by_the_digest_check(tmp_path: Path) -> None:
    assert read_artifact(_v2_artifact(tmp_path))[1].version == 2
    with pytest.raises(ArtifactError, match=r"contract field\(s\) \['obs_terms'\] were changed after export"):
        read_artifact(_v2_artifact(tmp_path, _reword))
    with pytest.raises(ArtifactError, match=r"\['action_definition'\] were changed after export"):
        read_artifact(_v2_artifact(tmp_path, lambda d: d["action_definition"].update(scale="kp")))
    # exported that way (digests match): still not what this trot computes
    with pytest.raises(ArtifactError, match=r"obs_terms\[3\].definition: joint_pos is defined differently .*text"):
        read_artifact(_v2_artifact(tmp_path, _reword, recompute=True))
