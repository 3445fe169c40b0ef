"""Gymnasium environments for training: EnvGroup and WorkerPool against gymnasium's own vector env."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from trot.training.ppo.envs import EnvGroup, GymTrainEnv, WorkerPool

ENV_ID, N, STEPS = "Hopper-v5", 5, 150  # random actions: Hopper falls every ~20-40 steps


def reference_rollout(actions: np.ndarray, seed: int) -> list[tuple]:
    vec = SyncVectorEnv([lambda: gym.make(ENV_ID) for _ in range(N)], autoreset_mode=AutoresetMode.SAME_STEP)
    out = [vec.reset(seed=seed)[0]]
    for a in actions:
        obs, rewards, terminated, truncated, info = vec.step(a)
        final = obs.copy()
        for i in np.flatnonzero(terminated | truncated):
            final[i] = info["final_obs"][i]
        out.append((obs, rewards, terminated, truncated, final))
    vec.close()
    return out


@pytest.mark.parametrize("workers", [1, 3])
def test_env_group_and_worker_pool_step_exactly_like_sync_vector_env(workers: int) -> None:
    actions = np.random.default_rng(0).uniform(-1, 1, (STEPS, N, 3))
    expected = reference_rollout(actions, seed=7)
    envs = EnvGroup(ENV_ID, N) if workers == 1 else WorkerPool(ENV_ID, N, workers)
    try:
        np.testing.assert_allclose(envs.reset(7), expected[0], rtol=0, atol=1e-6)  # float32 here
        endings = 0
        for t, a in enumerate(actions):
            obs, rewards, terminated, truncated, final = envs.step(a)
            e_obs, e_rewards, e_terminated, e_truncated, e_final = expected[t + 1]
            np.testing.assert_allclose(obs, e_obs, rtol=0, atol=1e-6, err_msg=f"step {t}")
            np.testing.assert_array_equal(rewards, e_rewards)
            np.testing.assert_array_equal(terminated, e_terminated)
            np.testing.assert_array_equal(truncated, e_truncated)
            done = terminated | truncated
            assert (final is None) == (not done.any())
            if final is not None:
                np.testing.assert_allclose(final, e_final, rtol=0, atol=1e-6, err_msg=f"final obs, step {t}")
                endings += int(done.sum())
        assert endings >= N  # the episode endings (and resets) were exercised
    finally:
        envs.close()


def test_a_failing_worker_is_reported_with_its_traceback() -> None:
    env = GymTrainEnv(ENV_ID, 4, seed=0, workers=2)
    try:
        env.reset()
        actions = np.empty(4, dtype=object)  # rows 0-1 (this process) fine; rows 2-3 (the worker) too short
        actions[:] = [np.zeros(3), np.zeros(3), np.zeros(2), np.zeros(2)]
        with pytest.raises(RuntimeError, match=r"(?s)worker process failed.*Traceback"):
            env.envs.step(actions)
    finally:
        env.close()
