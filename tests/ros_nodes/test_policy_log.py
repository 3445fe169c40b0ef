"""The policy node's log under garbage (a real node process over real DDS): a few WARN lines a
second whatever the variety, every fault counted in it (the limiter alone, ROS-free:
tests/policies/test_input_checks.py)."""

from collections import Counter

from trot.testing.requires import require

require("rclpy")

from trot.policies.inputs import Fault  # noqa: E402
from trot.testing.faults.garbage import garbage_run  # noqa: E402


def test_two_seconds_of_varied_garbage_at_2_khz_log_at_most_10_warn_lines_a_second_and_count_every_fault() -> None:
    run = garbage_run(seconds=2.0, rate_hz=2000.0)
    texts = "\n".join(text for _, text in run.warnings)
    assert run.alive and run.violations == 0, texts
    assert run.damped_after_s is not None, "the node did not damp"
    # the bound: a few lines a second per input (3), so <= 10 for joint states and IMU with the
    # transition to DAMPING; before, every distinct joint list was a kind of its own (~90 a second)
    assert run.worst_second <= 10, texts
    # every fault the node counted is in the log: a line of its own or in a line's count
    assert run.counted > 0 and run.logged == run.counted, (run.logged, run.counted, texts)
    # the first occurrence of each category it met, logged once, marked
    firsts = Counter(line.fault for line in run.lines if line.first)
    met = {line.fault for line in run.lines if line.fault} | {f for line in run.lines for f in line.unlogged}
    assert set(firsts) == met and set(firsts.values()) == {1}, firsts
    assert {f.input for f in met} == {"joint state", "IMU"} and len(met) >= 10, met  # (the catalogue's variety)
    assert Fault.JOINT_STATE_MISSING in met and Fault.IMU_NON_UNIT in met
