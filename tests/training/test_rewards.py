import numpy as np
import pytest

from trot.training.tasks.velocity.config import RewardConfig
from trot.training.tasks.velocity.rewards import REWARD_TERMS, StepQuantities, compute_rewards


def quantities(**over) -> StepQuantities:
    base = dict(
        command=np.array([[1.0, 0.0, 0.5], [0.0, 0.0, 0.0]]),
        base_lin_vel=np.array([[0.5, 0.2, 0.1], [0.0, 0.0, 0.0]]),
        base_ang_vel=np.array([[0.1, -0.2, 0.3], [0.0, 0.0, 0.0]]),
        gravity=np.array([[0.1, 0.2, -0.97], [0.0, 0.0, -1.0]]),
        torques=np.array([[1.0, -2.0], [0.0, 0.0]]),
        joint_pos=np.array([[0.5, -1.0], [0.1, -0.9]]),
        joint_vel=np.zeros((2, 2)),
        joint_acc=np.array([[10.0, 0.0], [0.0, 0.0]]),
        action=np.array([[0.5, 0.5], [0.0, 0.0]]),
        last_action=np.array([[0.0, 1.0], [0.0, 0.0]]),
        default_joint_pos=np.array([0.0, -1.0]),
        soft_lower=np.array([-0.4, -1.5]),
        soft_upper=np.array([0.4, -0.5]),
        first_contact=np.array([[True, False], [True, False]]),
        air_time_at_touchdown=np.array([[0.8, 0.3], [0.9, 0.0]]),
        undesired_contact=np.array([[True, True], [False, False]]),
    )
    base.update(over)
    return StepQuantities(**base)


CFG = RewardConfig()
EXPECTED = {
    # env 0 by hand, env 1 by hand
    "tracking_lin_vel": [np.exp(-(0.25 + 0.04) / CFG.tracking_sigma), 1.0],
    "tracking_ang_vel": [np.exp(-0.04 / CFG.tracking_sigma), 1.0],
    "lin_vel_z": [0.01, 0.0],
    "ang_vel_xy": [0.05, 0.0],
    "orientation": [0.05, 0.0],
    "torques": [5.0, 0.0],
    "joint_acc": [100.0, 0.0],
    "action_rate": [0.5, 0.0],
    "feet_air_time": [0.3, 0.0],  # (0.8 - 0.5) at touchdown; env 1 is not commanded to move
    "collision": [2.0, 0.0],
    "joint_limits": [0.1, 0.0],  # hip at 0.5 is 0.1 past the soft upper limit 0.4
    "stand_still": [0.0, 0.2],  # only env 1 (zero command): |0.1| + |0.1|
}


def test_every_term_has_a_hand_computed_case() -> None:
    assert set(EXPECTED) == set(REWARD_TERMS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_term_matches_hand_computation(name: str) -> None:
    np.testing.assert_allclose(REWARD_TERMS[name](quantities(), CFG), EXPECTED[name], rtol=1e-9, atol=1e-12)


def test_short_steps_are_penalised_only_without_air_time_bonus_only() -> None:
    short = quantities(first_contact=np.array([[True, True], [False, False]]))  # 0.8 s and 0.3 s in the air
    np.testing.assert_allclose(REWARD_TERMS["feet_air_time"](short, CFG), [0.3, 0.0])  # the 0.3 s step: 0
    legged_gym = RewardConfig(air_time_bonus_only=False)
    np.testing.assert_allclose(REWARD_TERMS["feet_air_time"](short, legged_gym), [0.3 - 0.2, 0.0])


def test_total_is_weighted_sum_times_dt_and_zero_weights_are_skipped() -> None:
    cfg = RewardConfig(collision=0.0, only_positive=False)
    total, terms = compute_rewards(quantities(), cfg, dt=0.02)
    assert "collision" not in terms
    expected = sum(np.asarray(EXPECTED[n]) * getattr(cfg, n) * 0.02 for n in EXPECTED if n != "collision")
    np.testing.assert_allclose(total, expected)
    np.testing.assert_allclose(sum(terms.values()), expected)


def test_only_positive_clips_the_total_not_the_terms() -> None:
    cfg = RewardConfig(tracking_lin_vel=0.0, tracking_ang_vel=0.0)  # only penalties left: total < 0
    total, terms = compute_rewards(quantities(), cfg, dt=0.02)
    assert sum(terms.values())[0] < 0
    np.testing.assert_array_equal(total, [0.0, 0.0])
