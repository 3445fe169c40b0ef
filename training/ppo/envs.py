"""The two kinds of environment the trainer drives, behind one small interface.

- :class:`LocomotionTrainEnv`: trot's own batched locomotion tasks (asymmetric critic).
- :class:`GymTrainEnv`: any Gymnasium environment with a Box action space, stepped in worker
  processes (``AsyncVectorEnv``) so every core is used.

Both reset ended episodes in the same step and report which endings were time-outs together
with the critic observation of the final state, so PPO can bootstrap time-outs exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from training.envs.config import EnvConfig
from training.envs.locomotion import LocomotionEnv
from training.strict import ConfigError


@dataclass
class Step:
    obs: np.ndarray
    critic_obs: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    time_outs: np.ndarray
    final_critic_obs: np.ndarray | None
    """Critic observation of the last state of each ended episode (rows where ``dones``)."""
    episode_returns: np.ndarray = field(default_factory=lambda: np.zeros(0))
    episode_lengths: np.ndarray = field(default_factory=lambda: np.zeros(0))
    episode_falls: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    reward_terms: dict[str, float] = field(default_factory=dict)


class LocomotionTrainEnv:
    def __init__(self, cfg: EnvConfig, seed: int) -> None:
        self.env = LocomotionEnv(cfg, seed=seed)
        self.seed = seed
        self.num_envs = self.env.num_envs
        self.num_obs = self.env.contract.num_obs
        self.num_critic_obs = self.env.num_critic_obs
        self.num_actions = self.env.contract.num_joints
        self.control_dt = self.env.dt

    def reset(self) -> tuple[np.ndarray, np.ndarray]:
        obs, info = self.env.reset(seed=self.seed)
        return obs, info["critic_obs"]

    def step(self, actions: np.ndarray) -> Step:
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        ep = info.get("episode")
        return Step(
            obs=obs,
            critic_obs=info["critic_obs"],
            rewards=rewards,
            dones=terminated | truncated,
            time_outs=info["time_outs"],
            final_critic_obs=info.get("final_critic_obs"),
            episode_returns=ep["r"] if ep else np.zeros(0),
            episode_lengths=ep["l"] if ep else np.zeros(0),
            episode_falls=ep["fallen"] if ep else np.zeros(0, dtype=bool),
            reward_terms=info["reward_terms"],
        )

    def state_dict(self) -> dict[str, Any]:
        return self.env.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env.load_state_dict(state)

    def close(self) -> None:
        self.env.close()


class GymTrainEnv:
    def __init__(self, env_id: str, num_envs: int, seed: int, asynchronous: bool = True) -> None:
        try:
            probe = gym.make(env_id)
        except gym.error.Error as exc:
            raise ConfigError(f"env: unknown Gymnasium environment {env_id!r} ({exc})") from exc
        if not isinstance(probe.action_space, gym.spaces.Box):
            raise ConfigError(
                f"env: {env_id} has a {type(probe.action_space).__name__} action space; PPO here needs Box"
            )
        probe.close()
        makers = [partial(gym.make, env_id) for _ in range(num_envs)]
        vec = AsyncVectorEnv if asynchronous and num_envs > 1 else SyncVectorEnv
        self.env = vec(makers, autoreset_mode=AutoresetMode.SAME_STEP)
        self.seed = seed
        self.num_envs = num_envs
        self.num_obs = self.num_critic_obs = int(np.prod(self.env.single_observation_space.shape))
        self.num_actions = int(np.prod(self.env.single_action_space.shape))
        self.low = self.env.single_action_space.low
        self.high = self.env.single_action_space.high
        self._returns = np.zeros(num_envs)
        self._lengths = np.zeros(num_envs, dtype=np.int64)

    def reset(self) -> tuple[np.ndarray, np.ndarray]:
        obs, _ = self.env.reset(seed=self.seed)
        obs = obs.reshape(self.num_envs, -1).astype(np.float32)
        return obs, obs

    def step(self, actions: np.ndarray) -> Step:
        obs, rewards, terminated, truncated, info = self.env.step(np.clip(actions, self.low, self.high))
        obs = obs.reshape(self.num_envs, -1).astype(np.float32)
        dones = terminated | truncated
        self._returns += rewards
        self._lengths += 1
        final = None
        if dones.any():
            final = obs.copy()
            for i in np.flatnonzero(dones):
                final[i] = np.asarray(info["final_obs"][i], dtype=np.float32).reshape(-1)
        ended = np.flatnonzero(dones)
        step = Step(
            obs=obs,
            critic_obs=obs,
            rewards=rewards.astype(np.float32),
            dones=dones,
            time_outs=truncated & ~terminated,
            final_critic_obs=final,
            episode_returns=self._returns[ended].copy(),
            episode_lengths=self._lengths[ended].copy(),
            episode_falls=terminated[ended].copy(),
        )
        self._returns[ended] = 0.0
        self._lengths[ended] = 0
        return step

    def state_dict(self) -> dict[str, Any]:
        return {}  # worker processes' simulator states cannot be captured; resume restarts episodes

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        self.env.close()
