"""The two kinds of environment the trainer drives, behind one small interface.

- :class:`LocomotionTrainEnv`: trot's own batched locomotion tasks (asymmetric critic).
- :class:`GymTrainEnv`: any Gymnasium environment with a Box action space, stepped in worker
  processes so every core is used: one process per core, this one included, each stepping its
  share of the environments (gymnasium's ``AsyncVectorEnv`` runs one process per environment,
  which on a few cores is slower than stepping them all in-process).

Both reset ended episodes in the same step and report which endings were time-outs together
with the critic observation of the final state, so PPO can bootstrap time-outs exactly.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import gymnasium as gym
import numpy as np

from trot.sim.strict import ConfigError
from trot.training.symmetry import Mirror
from trot.training.tasks.velocity.config import EnvConfig
from trot.training.tasks.velocity.env import LocomotionEnv


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

    def mirrors(self) -> tuple[Mirror, Mirror, Mirror]:
        """Mirror maps of observation, critic observation and action (symmetry augmentation)."""
        return self.env.mirrors()

    def state_dict(self) -> dict[str, Any]:
        return self.env.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env.load_state_dict(state)

    def close(self) -> None:
        self.env.close()


StepResult = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]
"""obs (reset ones where an episode ended), rewards, terminated, truncated, final obs (or None)."""


class EnvGroup:
    """Gymnasium environments stepped in a loop, ended episodes reset in the same step.

    What a ``SyncVectorEnv`` in SAME_STEP mode does, seeds included (env i gets seed + i), less
    its per-step info merging, which cost ~15 % of a Hopper step."""

    def __init__(self, env_id: str, num_envs: int) -> None:
        self.envs = [gym.make(env_id, disable_env_checker=True) for _ in range(num_envs)]
        size = int(np.prod(self.envs[0].observation_space.shape))
        self.obs = np.zeros((num_envs, size), dtype=np.float32)

    def reset(self, seed: int) -> np.ndarray:
        for i, env in enumerate(self.envs):
            self.obs[i] = np.ravel(env.reset(seed=seed + i)[0])
        return self.obs.copy()

    def step(self, actions: np.ndarray) -> StepResult:
        n = len(self.envs)
        rewards, terminated, truncated = np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        final = None
        for i, env in enumerate(self.envs):
            obs, rewards[i], terminated[i], truncated[i], _ = env.step(actions[i])
            if terminated[i] or truncated[i]:
                if final is None:
                    final = self.obs.copy()
                final[i] = np.ravel(obs)
                obs, _ = env.reset()
            self.obs[i] = np.ravel(obs)
        if final is not None:
            final[~(terminated | truncated)] = self.obs[~(terminated | truncated)]
        return self.obs.copy(), rewards, terminated, truncated, final

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _receive(conn: Connection, spin_s: float = 0.005) -> Any:
    """Poll busily for a short while before blocking: messages come every ~1 ms during a rollout,
    and waking a process from a blocking read costs more than that poll on a small VM."""
    deadline = time.perf_counter() + spin_s
    while not conn.poll() and time.perf_counter() < deadline:
        pass
    return conn.recv()


def _worker(conn: Connection, env_id: str, num_envs: int) -> None:
    """Serves one EnvGroup: ("reset", seed) and ("step", actions) until ("close", None).

    Ctrl-C reaches the whole process group, but only the trainer decides when to stop: it finishes
    its iteration and checkpoints, which needs the workers. They end on "close" or when the
    trainer's end of the pipe closes (it was killed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        group = EnvGroup(env_id, num_envs)
        while True:
            command, data = _receive(conn)
            if command == "step":
                conn.send(group.step(data))
            elif command == "reset":
                conn.send(group.reset(data))
            else:
                group.close()
                conn.send(None)
                return
    except EOFError:  # the trainer is gone
        pass
    except Exception:
        conn.send(("error", traceback.format_exc()))


class WorkerPool:
    """Environments split over this process and ``workers - 1`` child processes, stepped in parallel.

    This process steps the first share itself while the children step theirs: it would otherwise
    sleep in ``recv``, and on a few cores every wake-up from such a sleep costs more than stepping
    a few MuJoCo environments.
    """

    def __init__(self, env_id: str, num_envs: int, workers: int) -> None:
        sizes = [len(part) for part in np.array_split(np.arange(num_envs), workers)]
        self.offsets = np.cumsum([0, *sizes])
        ctx = mp.get_context("fork")  # as AsyncVectorEnv on Linux; workers never touch torch
        self.conns: list[Connection] = []
        self.procs = []
        for size in sizes[1:]:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, env_id, size), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
        self.local = EnvGroup(env_id, sizes[0])

    def _gather(self) -> list[Any]:
        replies = []
        for conn, proc in zip(self.conns, self.procs, strict=True):
            try:
                replies.append(_receive(conn))
            except EOFError:
                raise RuntimeError(f"a Gymnasium worker process exited (exit code {proc.exitcode})") from None
        for reply in replies:
            if isinstance(reply, tuple) and len(reply) == 2 and reply[0] == "error":
                raise RuntimeError(f"a Gymnasium worker process failed:\n{reply[1]}")
        return replies

    def reset(self, seed: int) -> np.ndarray:
        for conn, offset in zip(self.conns, self.offsets[1:], strict=False):
            conn.send(("reset", seed + int(offset)))  # env i gets seed + i, as in one SyncVectorEnv
        return np.concatenate([self.local.reset(seed), *self._gather()])

    def step(self, actions: np.ndarray) -> StepResult:
        for k, conn in enumerate(self.conns, start=1):
            conn.send(("step", actions[self.offsets[k] : self.offsets[k + 1]]))
        parts = [self.local.step(actions[: self.offsets[1]]), *self._gather()]
        obs, rewards, terminated, truncated = (np.concatenate([p[i] for p in parts]) for i in range(4))
        if all(p[4] is None for p in parts):
            return obs, rewards, terminated, truncated, None
        return obs, rewards, terminated, truncated, np.concatenate([p[0] if p[4] is None else p[4] for p in parts])

    def close(self) -> None:
        self.local.close()
        for conn in self.conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(("close", None))
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()


class GymTrainEnv:
    def __init__(self, env_id: str, num_envs: int, seed: int, workers: int = 0) -> None:
        """``workers``: processes stepping the environments, this one included (0: one per CPU core)."""
        try:
            probe = gym.make(env_id)
        except gym.error.Error as exc:
            raise ConfigError(f"env: unknown Gymnasium environment {env_id!r} ({exc})") from exc
        if not isinstance(probe.action_space, gym.spaces.Box):
            raise ConfigError(
                f"env: {env_id} has a {type(probe.action_space).__name__} action space; PPO here needs Box"
            )
        self.num_obs = self.num_critic_obs = int(np.prod(probe.observation_space.shape))
        self.num_actions = int(np.prod(probe.action_space.shape))
        self.low, self.high = probe.action_space.low, probe.action_space.high
        probe.close()
        workers = min(num_envs, workers or os.cpu_count() or 1)
        self.envs: WorkerPool | EnvGroup = (
            WorkerPool(env_id, num_envs, workers) if workers > 1 else EnvGroup(env_id, num_envs)
        )
        self.seed = seed
        self.num_envs = num_envs
        self._returns = np.zeros(num_envs)
        self._lengths = np.zeros(num_envs, dtype=np.int64)

    def reset(self) -> tuple[np.ndarray, np.ndarray]:
        obs = self.envs.reset(self.seed)
        return obs, obs

    def step(self, actions: np.ndarray) -> Step:
        obs, rewards, terminated, truncated, final = self.envs.step(np.clip(actions, self.low, self.high))
        dones = terminated | truncated
        self._returns += rewards
        self._lengths += 1
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
        self.envs.close()
