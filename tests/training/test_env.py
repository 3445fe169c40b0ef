import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, VectorEnv

from trot.training.tasks import TASKS, make_task_config
from trot.training.tasks.velocity.config import EnvConfig
from trot.training.tasks.velocity.env import LocomotionEnv


@pytest.mark.parametrize("task", sorted(TASKS))
def test_smoke_shapes_and_finiteness(task: str) -> None:
    cfg = make_task_config(task)
    cfg.num_envs = 8
    env = LocomotionEnv(cfg, seed=1)
    assert isinstance(env, VectorEnv)
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    obs, info = env.reset()
    assert obs.shape == (8, env.contract.num_obs) == env.observation_space.shape
    assert info["critic_obs"].shape == (8, env.num_critic_obs)
    rng = np.random.default_rng(0)
    for _ in range(30):
        obs, reward, terminated, truncated, info = env.step(rng.normal(0, 0.5, env.action_space.shape))
        assert obs.shape == (8, env.contract.num_obs) and obs.dtype == np.float32
        assert reward.shape == (8,) and terminated.dtype == bool and truncated.dtype == bool
        assert np.isfinite(obs).all() and np.isfinite(reward).all() and np.isfinite(info["critic_obs"]).all()
    env.close()


def _run(seed: int, steps: int = 120):
    cfg = EnvConfig(num_envs=6, episode_length_s=1.0, nthread=2)  # every randomization on
    env = LocomotionEnv(cfg, seed=seed)
    obs, _ = env.reset()
    rng = np.random.default_rng(123)
    trace = [obs]
    rewards, dones = [], []
    for _ in range(steps):
        obs, r, term, trunc, _ = env.step(rng.normal(0, 0.8, env.action_space.shape))
        trace.append(obs)
        rewards.append(r)
        dones.append(term | trunc)
    env.close()
    return np.array(trace), np.array(rewards), np.array(dones)


def test_seed_reproduces_episodes_exactly() -> None:
    a_obs, a_rew, a_done = _run(seed=7)
    b_obs, b_rew, b_done = _run(seed=7)
    np.testing.assert_array_equal(a_done, b_done)
    assert a_done.sum() >= 6, "the run should include resets (1 s episodes)"
    np.testing.assert_array_equal(a_obs, b_obs)
    np.testing.assert_array_equal(a_rew, b_rew)
    c_obs, _, _ = _run(seed=8)
    assert not np.array_equal(a_obs, c_obs)


def test_time_out_is_not_a_termination(quiet_cfg) -> None:
    cfg = quiet_cfg(num_envs=3)
    cfg.episode_length_s = 0.5  # 25 steps
    env = LocomotionEnv(cfg)
    env.reset(seed=0)
    for k in range(25):
        _, _, terminated, truncated, info = env.step(np.zeros((3, 12)))
        assert not terminated.any()
        if k < 24:
            assert not truncated.any()
    assert truncated.all() and info["time_outs"].all()
    assert info["final_obs"].shape == (3, env.contract.num_obs)
    np.testing.assert_array_equal(info["episode"]["l"], [25, 25, 25])
    assert (env.episode_step == 0).all(), "ended envs restart in the same step"
    env.close()


def test_fall_terminates_and_is_not_a_time_out(quiet_cfg) -> None:
    env = LocomotionEnv(quiet_cfg(num_envs=2))
    env.reset(seed=0)
    # env 1 starts upside down just above the floor: base contact and tilt
    env.state[1, env._qpos.start + 2] = 0.15
    env.state[1, env._qpos.start + 3 : env._qpos.start + 7] = [0.0, 1.0, 0.0, 0.0]
    _, _, terminated, truncated, info = env.step(np.zeros((2, 12)))
    assert terminated.tolist() == [False, True]
    assert not truncated.any() and not info["time_outs"].any()
    assert info["episode"]["fallen"].tolist() == [True]
    # the final observation shows the fall (gravity points up in the body frame)
    assert info["final_obs"][1, 5] > 0.9
    env.close()


def test_commands_in_range_with_zero_share(quiet_cfg) -> None:
    cfg = quiet_cfg(num_envs=4000)
    cfg.commands.zero_probability = 0.25
    env = LocomotionEnv(cfg)
    env.reset(seed=3)
    cmd = env.commands
    zero = (cmd == 0).all(axis=1)
    assert 0.2 < zero.mean() < 0.3
    c = cfg.commands
    for axis, (lo, hi) in enumerate([c.lin_vel_x, c.lin_vel_y, c.ang_vel_yaw]):
        assert lo <= cmd[:, axis].min() and cmd[:, axis].max() <= hi
        assert cmd[~zero, axis].std() > 0.2 * (hi - lo) / np.sqrt(12) * 2
    env.close()


def test_a_share_of_commands_moves_along_one_axis_only(quiet_cfg) -> None:
    cfg = quiet_cfg(num_envs=4000)
    cfg.commands.zero_probability = 0.0
    cfg.commands.single_axis_probability = 0.3
    env = LocomotionEnv(cfg)
    env.reset(seed=5)
    moving_axes = (env.commands != 0).sum(axis=1)
    assert set(np.unique(moving_axes)) == {1, 3}  # one axis, or all three (a uniform draw)
    single = env.commands[moving_axes == 1]
    assert 0.25 < len(single) / 4000 < 0.35
    for axis in range(3):  # each axis about a third of them, over its whole range
        share = (single[:, axis] != 0).mean()
        assert 0.25 < share < 0.42, (axis, share)
    env.close()


def test_command_intervals_are_drawn_within_the_spread(quiet_cfg) -> None:
    """Each env's command holds for an interval drawn in [interval - spread, interval + spread]:
    changes fall at different moments in different envs, none sooner or later than the spread."""
    cfg = quiet_cfg(num_envs=16)
    cfg.commands.resample_interval_s, cfg.commands.resample_spread_s = 0.3, 0.1  # 10 to 20 control steps
    cfg.commands.zero_probability = 0.0
    env = LocomotionEnv(cfg)
    env.reset(seed=0)
    last = env.commands.copy()
    held = np.zeros(16, dtype=int)
    intervals: list[int] = []
    for _ in range(120):
        env.step(np.zeros((16, 12)))
        held += 1
        changed = np.any(env.commands != last, axis=1) & (env.episode_step > 0)
        intervals += held[changed].tolist()
        held[changed] = 0
        last = env.commands.copy()
    env.close()
    assert len(intervals) > 50
    assert min(intervals) >= 10 and max(intervals) <= 20, (min(intervals), max(intervals))
    assert len(set(intervals)) >= 6  # drawn, not one fixed period


def test_commands_resample_during_episode(quiet_cfg) -> None:
    cfg = quiet_cfg(num_envs=4)
    cfg.commands.resample_interval_s, cfg.commands.resample_spread_s = 0.1, 0.0  # every 5 steps
    env = LocomotionEnv(cfg)
    env.reset(seed=0)
    before = env.commands.copy()
    for _ in range(5):
        env.step(np.zeros((4, 12)))
    assert not np.array_equal(before, env.commands)
    env.close()


def test_standing_still_with_zero_actions_is_stable(quiet_cfg) -> None:
    env = LocomotionEnv(quiet_cfg(num_envs=2))
    env.reset(seed=0)
    for _ in range(100):
        _, _, terminated, _, _ = env.step(np.zeros((2, 12)))
        assert not terminated.any()
    assert (env.qpos[:, 2] > 0.22).all()
    assert env._foot_contact.all() and not env._undesired_contact.any()
    env.close()


def test_bad_actions_are_refused(quiet_cfg) -> None:
    env = LocomotionEnv(quiet_cfg(num_envs=2))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.full((2, 12), np.nan))
    env.close()
