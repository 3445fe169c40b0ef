"""trot.policies.inputs: what counts as bad sensor or command input, how it is named, and how often
it is logged (the controller's reaction to it: tests/policies/test_controller.py; each limit at its
edge: tests/policies/test_limits_edges.py)."""

import math
from pathlib import Path

import numpy as np
import pytest

from trot.policies.inputs import BadInput, BadInputLog, Fault, JointStateCheck, check_imu, publication_rate
from trot.policies.runtime import PolicyRuntime
from trot.policies.settings import SafetyConfig
from trot.testing.faults.log_lines import BadInputLine, parse

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


def garbage(rng: np.random.Generator, fault: Fault) -> BadInput:
    """A bad input of category ``fault`` whose text varies (numbers, joint names) as a sender's would."""
    return BadInput(fault, f"{fault.input} sample {rng.integers(1e9)}: joint_{rng.integers(1e6)} is {rng.normal():.6g}")


def read_back(lines: list[tuple[float, str]]) -> list[tuple[float, BadInputLine]]:
    return [(t, parsed) for t, line in lines if (parsed := parse(line)) is not None]


def test_varied_garbage_of_every_category_is_logged_a_few_lines_a_second_per_input_every_fault_counted() -> None:
    """2 kHz of bad input in every category, each message different, for 2 s (simulated), flushed
    every 20 ms control period: at most 3 lines in any second per input (1/3 s apart), the first occurrence of
    every category logged with its own text, and every fault either logged or in a line's count."""
    rng, log = np.random.default_rng(1), BadInputLog(per_second=3)
    lines: list[tuple[float, str]] = []
    firsts: dict[Fault, str] = {}
    faults = list(Fault)
    sent = 0
    for k in range(4000):
        now = k / 2000.0
        bad = garbage(rng, faults[int(rng.integers(len(faults)))])
        firsts.setdefault(bad.fault, bad)
        sent += 1
        if (line := log.line(bad, now)) is not None:
            lines.append((now, line))
        if k % 40 == 0:  # the control period's flush
            lines += [(now, line) for line in log.flush(now)]
    assert len(firsts) == len(faults)  # (every category was sent)
    for k in range(1, 500):  # 10 s of control periods after the garbage: what is left goes out
        now = 2.0 + k * 0.02
        lines += [(now, line) for line in log.flush(now)]
    assert not log.pending
    parsed = read_back(lines)
    assert len(parsed) == len(lines), [line for _, line in lines]
    for name in {fault.input for fault in Fault}:
        times = [t for t, p in parsed if p.input == name]
        worst = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
        assert worst <= 3, (name, worst)
    for fault, bad in firsts.items():  # the first of each, with its own text, marked
        shown = [line for (_, line), (_, p) in zip(lines, parsed, strict=True) if p.fault is fault and p.first]
        assert len(shown) == 1 and shown[0].startswith(f"bad input: {bad} [{fault}, first occurrence"), (fault, shown)
    shown_faults = sum(1 for _, p in parsed if p.fault is not None)
    unlogged = sum(sum(p.unlogged.values()) for _, p in parsed)
    assert shown_faults + unlogged == sent, (shown_faults, unlogged, sent)
    assert len(lines) < 60  # (3 inputs, 3 a second, ~12 s; 4000 faults)


def test_a_first_occurrence_is_logged_at_once_or_as_its_inputs_next_line_and_the_rest_when_quiet() -> None:
    log, rng = BadInputLog(per_second=3), np.random.default_rng(2)
    nan = garbage(rng, Fault.JOINT_STATE_NON_FINITE)
    assert log.line(nan, 10.0) == f"bad input: {nan} [joint state: NaN or Inf, first occurrence]"
    assert log.line(garbage(rng, Fault.JOINT_STATE_NON_FINITE), 10.1) is None  # counted: lines 1/3 s apart
    imu = garbage(rng, Fault.IMU_NON_UNIT)
    assert log.line(imu, 10.1).startswith(f"bad input: {imu} [")  # another input: lines of its own
    missing = garbage(rng, Fault.JOINT_STATE_MISSING)
    assert log.line(missing, 10.2) is None and log.pending  # a first, held: the input's last line was 0.2 s ago
    assert log.line(garbage(rng, Fault.JOINT_STATE_NON_FINITE), 10.3) is None
    assert log.flush(10.3) == []
    assert log.flush(10.34) == [
        f"bad input: {missing} [joint state: policy joints missing (unknown joint names), first occurrence, 0.14 s "
        "ago]; not logged since this input's previous line 0.34 s ago: 2 (joint state: NaN or Inf 2)"
    ]
    assert log.flush(10.5) == [] and not log.pending  # (nothing left)
    assert log.line(garbage(rng, Fault.IMU_NON_UNIT), 11.0).endswith("[IMU: non-unit quaternion]")
    assert log.line(garbage(rng, Fault.IMU_NON_UNIT), 11.1) is None and log.pending
    assert log.flush(11.5) == []  # (its faults stopped 0.4 s ago: counts wait for a quiet second)
    assert log.flush(12.1) == [
        "bad input: IMU faults; not logged since this input's previous line 1.10 s ago: 1 (IMU: non-unit "
        "quaternion 1); none for 1.0 s"
    ]
    assert not log.pending


def test_the_log_starts_over_when_the_clock_goes_back() -> None:
    log, rng = BadInputLog(per_second=1), np.random.default_rng(3)
    assert log.line(garbage(rng, Fault.CMD_NON_FINITE), 100.0) is not None
    assert log.line(garbage(rng, Fault.CMD_NON_FINITE), 100.9) is None
    assert log.line(garbage(rng, Fault.CMD_NON_FINITE), 5.0) is not None  # (a sim clock restarted)
