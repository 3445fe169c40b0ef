"""Unitree's low-level messages and the robot config's motor map, without DDS: joints by name, the stop
mode of unused slots, the loops a stop value switches off, the CRC, and the config's refusals."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from trot.testing.requires import require

require("unitree_sdk2py")

from trot.policies.artifact import read_artifact  # noqa: E402
from trot.ros_nodes import unitree_map as um  # noqa: E402
from trot.sim.robot import ROBOTS_DIR, load_robot  # noqa: E402
from trot.sim.strict import ConfigError  # noqa: E402
from trot.testing import POLICY  # noqa: E402


def test_the_go2s_motor_slots_are_unitrees_order_and_the_policy_keeps_its_own() -> None:
    _, contract = read_artifact(POLICY)
    motors = um.MotorMap.of(load_robot("go2"), contract.joint_names)
    slot = dict(zip(motors.joint_names, motors.slots, strict=True))
    assert [slot[f"{leg}_{part}_joint"] for leg in ("FR", "FL", "RR", "RL") for part in ("hip", "thigh", "calf")] \
        == list(range(12))  # fmt: skip
    assert motors.joint_names == contract.joint_names and contract.joint_names[0] == "FL_hip_joint"
    assert motors.feet == ("FR_foot", "FL_foot", "RR_foot", "RL_foot")
    # a state read back in the contract's order, whatever the slots
    state = um.new_state()
    q = np.linspace(-1.0, 1.0, 12)
    motors.write_state(state, q, 2 * q, 3 * q)
    assert state.motor_state[0].q == pytest.approx(q[contract.joint_names.index("FR_hip_joint")])
    np.testing.assert_allclose(np.array(motors.read(state)), np.array([q, 2 * q, 3 * q]), atol=1e-6)


def test_a_command_fills_the_mapped_slots_leaves_the_rest_in_stop_mode_and_checks_by_crc() -> None:
    motors = um.MotorMap.of(load_robot("go2"))
    cmd = um.stop_command()
    assert list(cmd.head) == [0xFE, 0xEF] and cmd.level_flag == 0xFF
    q, kp, kd = np.linspace(-0.5, 0.5, 12), np.full(12, 40.0), np.full(12, 1.0)
    motors.write_command(cmd, q, kp, kd, np.zeros(12), np.full(12, 0.5))
    for m in cmd.motor_cmd[12:]:  # unused: the SDK examples' stop values, no gains, no torque
        assert (m.mode, m.q, m.dq, m.kp, m.kd, m.tau) == (0x01, pytest.approx(um.POS_STOP), um.VEL_STOP, 0, 0, 0)
    np.testing.assert_allclose(motors.read_command(cmd), [q, np.zeros(12), kp, kd, np.full(12, 0.5)], atol=1e-6)
    cmd.crc = um.crc(cmd)
    assert um.crc_ok(cmd)
    cmd.motor_cmd[3].q += 0.01  # one number changed on the wire
    assert not um.crc_ok(cmd)
    # damping: the position loop off (stop position, kp 0); the board reads no position term
    motors.write_command(cmd, None, kp, np.full(12, 2.0), np.zeros(12), np.zeros(12))
    q_t, dq_t, kp_t, kd_t, tau_t = motors.read_command(cmd)
    assert not kp_t.any() and not q_t.any() and (kd_t == 2.0).all() and not tau_t.any()
    first, second = motors.slots[:2]  # (the robot's first two joints)
    cmd.motor_cmd[first].dq, cmd.motor_cmd[second].mode = um.VEL_STOP, 0x00  # a stop velocity; a motor off
    q_t, dq_t, kp_t, kd_t, tau_t = motors.read_command(cmd)
    assert kd_t[0] == 0 == dq_t[0] and kd_t[1] == 0


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (lambda m: m.__setitem__(0, "FL_hip_joint"), "drive more than one motor slot"),
        (lambda m: m.__setitem__(0, "FR_hip"), "joints ['FR_hip'] the robot does not have"),
        (lambda m: m.pop(), "no motor for joints ['RL_calf_joint']"),
    ],
)
def test_a_motor_list_that_is_not_each_joint_once_is_refused(tmp_path: Path, edit, error) -> None:
    data = yaml.safe_load((ROBOTS_DIR / "go2.yaml").read_text())
    edit(data["unitree"]["motors"])
    file = tmp_path / "go2.yaml"
    file.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"robot\.unitree.*" + error.replace("[", r"\[").replace("]", r"\]")):
        um.MotorMap.of(load_robot(str(file)))  # (a repeated joint already at load)


def test_a_joint_read_beyond_its_range_is_named() -> None:
    lower, upper = np.array([-1.0, -1.5, -2.7]), np.array([1.0, 3.4, -0.8])
    assert um.out_of_range(np.array([0.0, 0.9, -1.8]), lower, upper, 0.2).size == 0
    # thigh and calf swapped: each reads the other's angle
    assert list(um.out_of_range(np.array([0.0, -1.8, 0.9]), lower, upper, 0.2)) == [1, 2]
    assert list(um.out_of_range(np.array([np.nan, 0.9, -1.8]), lower, upper, 0.2)) == [0]
    np.testing.assert_allclose(um.rpy([np.cos(0.25), 0, 0, np.sin(0.25)]), [0, 0, 0.5], atol=1e-9)


def test_ticks_in_order_trusted_out_of_order_not_until_settled() -> None:
    ticks = um.TickCheck(max_step=1000, settle=3)
    assert [ticks.check(t) for t in (100, 102, 104)] == [None, None, None]  # the first state of all too
    assert ticks.check(104) == "tick 104 twice"
    assert ticks.check(106) == "1 of 3 states in order since a tick out of order"
    assert ticks.check(108) == "2 of 3 states in order since a tick out of order"
    assert ticks.check(110) is None
    assert ticks.check(6) == "tick 6 after 110: behind"  # a restarted board: trusted again once settled
    assert [ticks.check(t) for t in (8, 10)] != [None, None] and ticks.check(12) is None
    assert ticks.check(1012) is None and ticks.check(2013) == "tick 2013 after 1012: 1001 ms ahead"
    assert ticks.out_of_order == 3


def test_ticks_wrap_at_2_to_the_32_and_a_second_writer_never_settles() -> None:
    ticks = um.TickCheck(settle=3)
    assert [ticks.check(t) for t in (0xFFFFFFFE, 0, 2)] == [None, None, None]  # (the counter wraps)
    board, other = 4, 50_000
    verdicts = []
    for _ in range(20):  # interleaved: each state out of order with the one before
        verdicts += [ticks.check(board), ticks.check(other)]
        board, other = board + 2, other + 2
    assert verdicts[0] is None and all(v is not None and ("ahead" in v or "behind" in v) for v in verdicts[1:])
