"""The evaluation's fall share counts the episodes that ended in a fall, one per environment."""

import numpy as np

from trot.training.evaluate import evaluate_policy

FOLD = 100.0  # (clipped to the contract's action clip: thighs and calves at their largest step)


def test_fall_rate_is_the_share_of_episodes_that_fell(quiet_cfg) -> None:
    """Of 4 episodes, the first 3 fold their legs under the robot (the base hits the ground) and the
    last stands: exactly 3 of 4 fell. Each environment falls once, and its later steps (the env resets
    it and keeps folding) must not count again."""
    cfg = quiet_cfg(num_envs=1)
    cfg.commands.zero_probability = cfg.commands.single_axis_probability = 0.0  # (always vx = 0.6)
    cfg.commands.lin_vel_x = (0.6, 0.6)

    def fold_three(obs: np.ndarray) -> np.ndarray:
        actions = np.zeros((obs.shape[0], 12))
        actions[:3] = np.tile([0.0, 1.0, 1.0], 4) * FOLD
        return actions

    result = evaluate_policy(cfg, fold_three, episodes=4, episode_length_s=3.0, randomization=False, settle_s=0.0)
    assert result["episodes"] == 4 and result["fall_rate"] == 0.75, result
    assert result["no_fall_share"] == 0.25
