import json

import pytest

from trot.policies.contract import CONTRACT_VERSION, Contract, ContractError
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
        # each a field the error used to leave unnamed, or an AttributeError that escaped ContractError
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
