"""trot.policies.inputs: what counts as bad sensor or command input, how it is named, and how often
it is logged (the controller's reaction to it: tests/policies/test_controller.py; each limit at its
edge: tests/policies/test_limits_edges.py)."""

import math
from pathlib import Path

import numpy as np
import pytest

from trot.policies.inputs import BadInputLog, JointStateCheck, check_imu, publication_rate
from trot.policies.runtime import PolicyRuntime
from trot.policies.settings import SafetyConfig

POLICY = Path(__file__).resolve().parents[2] / "policies" / "go2_flat"


def test_a_joint_state_is_plausible_or_its_first_fault_is_named() -> None:
    contract = PolicyRuntime(POLICY).contract
    check = JointStateCheck(contract, SafetyConfig(joint_pos_tolerance=0.5, max_joint_velocity=60.0))
    pos, vel = np.asarray(contract.default_joint_pos, dtype=float), np.zeros(contract.num_joints)
    assert check.plausible(pos, vel) and check.problem(pos, vel) is None
    name = contract.joint_names[3]
    bad = pos.copy()
    bad[3] = contract.joint_pos_upper[3] + 0.6
    assert not check.plausible(bad, vel)
    assert check.problem(bad, vel).startswith(f"joint state {name} = {bad[3]:.4g} rad is beyond its limits")
    fast = vel.copy()
    fast[3] = -61.0
    assert check.problem(pos, fast) == f"joint state {name} velocity -61 rad/s exceeds max_joint_velocity 60.0"
    both = fast.copy()
    both[3] = np.nan
    assert check.problem(bad, both) == f"joint state {name} velocity is nan (NaN or Inf; 1 of 12 joints)"
    unchecked = JointStateCheck(contract, SafetyConfig(max_joint_velocity=math.inf))
    infinite = vel.copy()
    infinite[0] = np.inf  # refused as non-finite even with the speed check off
    assert not unchecked.plausible(pos, infinite) and "(NaN or Inf" in unchecked.problem(pos, infinite)


def test_an_imu_sample_is_normalized_or_its_fault_named() -> None:
    sample = check_imu([1.05, 0.0, 0.0, 0.0], [0.1, 0.2, 0.3], True, 40.0)
    assert sample.quat_wxyz == pytest.approx((1.0, 0.0, 0.0, 0.0)) and sample.gyro == (0.1, 0.2, 0.3)
    assert check_imu([1.0, 0.0, 0.0], [0.0] * 3, True, 40.0).startswith("IMU sample has 3 orientation")
    assert check_imu([1.0, 0, 0, 0], [0.0] * 3, False, 40.0).startswith("IMU sample carries no orientation")
    assert "not unit length (norm 2" in check_imu([2.0, 0, 0, 0], [0.0] * 3, True, 40.0)
    assert "is not finite" in check_imu([1.0, 0, 0, 0], [math.nan, 0, 0], True, 40.0)
    assert check_imu([1.0, 0, 0, 0], [0, 0, 50.0], True, 40.0) == (
        "IMU angular speed 50 rad/s exceeds max_angular_velocity 40.0"
    )


def test_a_publication_rate_needs_three_messages() -> None:
    assert publication_rate([]) == publication_rate([1.0, 1.001]) == 0.0
    assert publication_rate([1.0, 1.01, 1.02]) == pytest.approx(100.0)
    assert publication_rate([1.0, 1.0, 1.0]) == math.inf


def test_each_kind_of_bad_input_is_logged_once_a_second_with_the_count_it_suppressed() -> None:
    log = BadInputLog()
    assert log.line("joint state a position is nan", 10.0) == "bad input: joint state a position is nan"
    assert log.line("joint state a position is 3.5", 10.1) is None  # (same kind: the numbers differ)
    assert log.line("IMU sample has 3 orientation", 10.2) is not None  # another kind
    assert log.line("joint state a position is inf", 10.5) is None
    assert log.line("joint state a position is nan", 11.0) == (
        "bad input: joint state a position is nan (2 more like it in the last 1.0 s)"
    )
    for k in range(100):  # kinds named by the sender: the memory of them stays bounded
        log.line(f"joint state: no joint named x{'y' * k}", 20.0)
    assert len(log._logged) <= 64
