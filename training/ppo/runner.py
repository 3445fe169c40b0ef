"""On-policy runner: collect rollouts, update, log, checkpoint, resume; one process per rank.

A checkpoint holds everything that evolves (policy, optimizer, normalizers, learning rate, every
RNG, the environments' full state including their randomized parameters and commands, the
current observations), so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist

from trot.sim.strict import ConfigError
from trot.training.ppo.algorithm import PPO, compiled
from trot.training.ppo.config import IncompatibleRun, RunnerConfig
from trot.training.ppo.envs import Step
from trot.training.ppo.model import ActorCritic
from trot.training.ppo.storage import RolloutStorage
from trot.training.ppo.symmetry import BatchMirror


class TrainEnv(Protocol):
    num_envs: int
    num_obs: int
    num_critic_obs: int
    num_actions: int

    def reset(self) -> tuple[np.ndarray, np.ndarray]: ...
    def step(self, actions: np.ndarray) -> Step: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class TrainingDiverged(RuntimeError):
    """Loss or parameters became non-finite; the message names the iteration."""


class RewardScaler:
    """Scales rewards by the running std of the discounted return (as gymnasium's NormalizeReward)."""

    def __init__(self, num_envs: int, gamma: float) -> None:
        self.gamma = gamma
        self.ret = np.zeros(num_envs)
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        self.ret = self.ret * self.gamma + rewards
        batch_mean, batch_var, n = float(self.ret.mean()), float(self.ret.var()), self.ret.size
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.count = total
        self.ret[dones] = 0.0
        return rewards / np.sqrt(self.var + 1e-8)

    def state_dict(self) -> dict[str, Any]:
        return {"ret": self.ret.copy(), "mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.ret[:] = s["ret"]
        self.mean, self.var, self.count = s["mean"], s["var"], s["count"]


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class Runner:
    def __init__(
        self,
        cfg: RunnerConfig,
        env: TrainEnv,
        run_dir: Path | None,
        meta: dict[str, Any],
        video_fn: Any = None,
    ) -> None:
        self.cfg = cfg
        self.env = env
        self.rank = dist.get_rank() if distributed() else 0
        self.world_size = dist.get_world_size() if distributed() else 1
        self.is_main = self.rank == 0
        self.run_dir = run_dir
        self.meta = {
            **meta,
            "num_obs": env.num_obs,
            "num_critic_obs": env.num_critic_obs,
            "num_actions": env.num_actions,
            "ppo": asdict(cfg.ppo),
            "policy": asdict(cfg.policy),
        }
        self.video_fn = video_fn
        torch.manual_seed(cfg.seed)
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        self.policy = ActorCritic.from_config(env.num_obs, env.num_critic_obs, env.num_actions, cfg.policy)
        if distributed():
            for tensor in [*self.policy.parameters(), *self.policy.buffers()]:
                dist.broadcast(tensor.data, src=0)
        self.device = torch.device(cfg.device)
        self.mirror = None
        if cfg.ppo.symmetry_augmentation:
            if not hasattr(env, "mirrors"):
                raise ConfigError("ppo.symmetry_augmentation: this task's environments have no mirror image")
            self.mirror = BatchMirror(*env.mirrors(), self.device)
        self.alg = PPO(self.policy, cfg.ppo, cfg.max_iterations, compile=cfg.compile, mirror=self.mirror)
        self._act = compiled(self.policy.act) if cfg.compile else self.policy.act
        self.policy.to(self.device)
        self.storage = RolloutStorage(
            cfg.steps_per_env, env.num_envs, env.num_obs, env.num_critic_obs, env.num_actions, self.device
        )
        self.generator = torch.Generator(device="cpu").manual_seed(cfg.seed + 1000 * self.rank)
        self.reward_scaler = RewardScaler(env.num_envs, cfg.ppo.gamma) if cfg.reward_normalization else None
        self.iteration = 0
        self.env_steps = 0
        self.elapsed_before = 0.0
        obs, critic_obs = env.reset()
        self.obs, self.critic_obs = self._tensor(obs), self._tensor(critic_obs)
        self.recent_returns: deque[float] = deque(maxlen=200)
        self.recent_lengths: deque[float] = deque(maxlen=200)
        self.recent_falls: deque[float] = deque(maxlen=200)
        self._stop_signal: int | None = None
        self._writer = None

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, dtype=torch.float32, device=self.device)

    # ------------------------------------------------------------------ collection
    @torch.no_grad()
    def collect(self) -> dict[str, float]:
        gamma = self.cfg.ppo.gamma
        terms: dict[str, float] = {}
        noise_shape = (self.env.num_envs, self.env.num_actions)
        for _ in range(self.cfg.steps_per_env):
            obs, critic_obs = self.obs, self.critic_obs
            noise = torch.randn(noise_shape, device=self.device)
            actions, log_probs, values, mean, std = self._act(obs, critic_obs, noise)
            actions_np = actions.cpu().numpy()
            if not np.isfinite(actions_np).all():
                raise self._diverged("the policy produced non-finite actions")
            step = self.env.step(actions_np)
            rewards = step.rewards.astype(np.float64)
            if self.reward_scaler is not None:
                rewards = self.reward_scaler(rewards, step.dones)
            rewards_t = self._tensor(rewards)
            if step.time_outs.any():
                # Bootstrap time-outs with the value of the true final state, not the reset one.
                idx = np.flatnonzero(step.time_outs)
                final = self._tensor(step.final_critic_obs[idx])
                rewards_t[idx] += gamma * self.policy.value(final)
            self.storage.add(
                obs=obs, critic_obs=critic_obs, actions=actions, log_probs=log_probs, values=values,
                rewards=rewards_t, dones=self._tensor(step.dones), mean=mean, std=std,
            )  # fmt: skip
            self.obs, self.critic_obs = self._tensor(step.obs), self._tensor(step.critic_obs)
            self.recent_returns.extend(step.episode_returns.tolist())
            self.recent_lengths.extend(step.episode_lengths.tolist())
            self.recent_falls.extend(step.episode_falls.astype(float).tolist())
            for k, v in step.reward_terms.items():
                terms[k] = terms.get(k, 0.0) + v / self.cfg.steps_per_env
        terms["_mean_step_reward"] = float(self.storage.rewards.mean())
        last_values = self.policy.value(self.critic_obs)
        self.storage.finish(last_values, gamma, self.cfg.ppo.lam, self.cfg.ppo.normalize_advantages)
        self.env_steps += self.env.num_envs * self.cfg.steps_per_env * self.world_size
        return terms

    # ------------------------------------------------------------------ main loop
    def learn(self, progress: bool = True) -> Path | None:
        """Train until max_iterations, the time budget, or SIGINT/SIGTERM; returns the last checkpoint."""
        cfg = self.cfg
        start = time.perf_counter()
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def on_signal(signum: int, frame: Any) -> None:
            self._stop_signal = signum

        for s in previous:
            signal.signal(s, on_signal)
        bar = _progress(self, progress and self.is_main)
        last_ckpt = None
        try:
            while self.iteration < cfg.max_iterations:
                t0 = time.perf_counter()
                terms = self.collect()
                t1 = time.perf_counter()
                try:
                    stats = self.alg.update(self.storage, self.iteration, self.generator)
                except FloatingPointError as exc:
                    raise self._diverged(str(exc)) from exc
                if not all(torch.isfinite(p).all() for p in self.policy.parameters()):
                    raise self._diverged("policy parameters became non-finite")
                # Normalizer statistics move only between iterations: within one, collection and
                # update see the same normalization, so the update starts at ratio 1 and KL 0.
                obs = self.storage.obs.reshape(-1, self.env.num_obs)
                critic_obs = self.storage.critic_obs.reshape(-1, self.env.num_critic_obs)
                if self.mirror is not None:  # the statistics of what the update trains on
                    obs = torch.cat([obs, self.mirror.obs(obs)])
                    critic_obs = torch.cat([critic_obs, self.mirror.critic(critic_obs)])
                self.policy.update_normalizers(obs, critic_obs)
                t2 = time.perf_counter()
                self.iteration += 1
                elapsed = self.elapsed_before + (t2 - start)
                steps = self.env.num_envs * cfg.steps_per_env * self.world_size
                stats.update(
                    {
                        "perf/env_steps_per_s": steps / (t1 - t0),
                        "perf/collection_s": t1 - t0,
                        "perf/update_s": t2 - t1,
                        "perf/total_env_steps": self.env_steps,
                        "perf/wall_clock_s": elapsed,
                    }
                )
                if self.recent_returns:
                    stats["episode/mean_return"] = float(np.mean(self.recent_returns))
                    stats["episode/mean_length"] = float(np.mean(self.recent_lengths))
                    stats["episode/fall_rate"] = float(np.mean(self.recent_falls))
                stats["reward/mean_step"] = terms.pop("_mean_step_reward")
                stats.update({f"reward_terms/{k}": v for k, v in terms.items()})
                if self.is_main:
                    self._log(stats)
                    bar.update(stats)
                interrupted = self._stop_signal is not None
                out_of_time = cfg.max_minutes > 0 and elapsed >= 60 * cfg.max_minutes
                if distributed():  # every rank must agree to stop at the same iteration
                    flags = torch.tensor([float(interrupted), float(out_of_time)])
                    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                    interrupted, out_of_time = bool(flags[0]), bool(flags[1])
                stopping = interrupted or out_of_time or self.iteration >= cfg.max_iterations
                if self.iteration % cfg.save_interval == 0 or stopping:
                    last_ckpt = self.save(elapsed)
                video_due = cfg.video_interval and self.iteration % cfg.video_interval == 0
                if video_due and self.video_fn is not None and self.is_main and self.run_dir is not None:
                    self.video_fn(self.policy, self.run_dir / "videos" / f"iter_{self.iteration:05d}.mp4")
                if interrupted or out_of_time:
                    break
        finally:
            bar.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
            if self._writer is not None:
                self._writer.flush()
        return last_ckpt

    def _diverged(self, reason: str) -> TrainingDiverged:
        last = self.run_dir / "checkpoints" / "last.pt" if self.run_dir else None
        kept = f"; the last good checkpoint is kept: {last}" if last and last.exists() else ""
        return TrainingDiverged(f"iteration {self.iteration + 1}: {reason}{kept}")

    # ------------------------------------------------------------------ logging
    def _log(self, stats: dict[str, float]) -> None:
        if self.run_dir is None:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a killed run logged after its last checkpoint
            self._writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.iteration)
        for k, v in stats.items():
            self._writer.add_scalar(k, v, self.iteration)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"iteration": self.iteration, **stats}) + "\n")

    # ------------------------------------------------------------------ checkpoints
    def _rank_state(self) -> dict[str, Any]:
        """What differs between ranks: each rank's environments, observations and RNG streams."""
        return {
            "env": self.env.state_dict(),
            "obs": self.obs.clone(),
            "critic_obs": self.critic_obs.clone(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
            "generator": self.generator.get_state(),
            "reward_scaler": self.reward_scaler.state_dict() if self.reward_scaler else None,
            "episodes": [list(self.recent_returns), list(self.recent_lengths), list(self.recent_falls)],
        }

    def checkpoint(self, elapsed: float) -> dict[str, Any]:
        """Collective when distributed: every rank must call it at the same iteration."""
        ranks = [self._rank_state()]
        if distributed():
            gathered: list[Any] | None = [None] * self.world_size if self.is_main else None
            dist.gather_object(ranks[0], gathered, dst=0)
            ranks = gathered or []
        return {
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "elapsed_s": elapsed,
            "model": self.policy.state_dict(),
            "optimizer": self.alg.optimizer.state_dict(),
            "learning_rate": self.alg.learning_rate,
            "ranks": ranks,
            "meta": {**self.meta, "world_size": self.world_size},
        }

    def save(self, elapsed: float) -> Path | None:
        checkpoint = self.checkpoint(elapsed)
        if not self.is_main or self.run_dir is None:
            return None
        folder = self.run_dir / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".last.pt.tmp"
        torch.save(checkpoint, tmp)
        os.replace(tmp, folder / "last.pt")  # atomic: a kill mid-save never leaves a broken last.pt
        shutil.copyfile(folder / "last.pt", folder / f"model_{self.iteration:05d}.pt")
        return folder / "last.pt"

    def load(self, path: Path) -> None:
        ck = torch.load(path, weights_only=False, map_location=self.device)
        check_compatible(ck["meta"], {**self.meta, "world_size": self.world_size})
        self.policy.load_state_dict(ck["model"])
        self.alg.optimizer.load_state_dict(ck["optimizer"])
        self.alg._set_lr(ck["learning_rate"])
        mine = ck["ranks"][self.rank]
        torch.set_rng_state(mine["torch_rng"].cpu())
        self.generator.set_state(mine["generator"].cpu())
        if mine.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda_rng"].cpu())
        if mine["env"]:
            self.env.load_state_dict(mine["env"])
            self.obs, self.critic_obs = mine["obs"].to(self.device), mine["critic_obs"].to(self.device)
        if self.reward_scaler is not None and mine["reward_scaler"] is not None:
            self.reward_scaler.load_state_dict(mine["reward_scaler"])
        self.iteration, self.env_steps, self.elapsed_before = ck["iteration"], ck["env_steps"], ck["elapsed_s"]
        returns, lengths, falls = mine["episodes"]
        self.recent_returns.extend(returns)
        self.recent_lengths.extend(lengths)
        self.recent_falls.extend(falls)
        if self.run_dir is not None and self.is_main:
            _truncate_metrics(self.run_dir / "metrics.jsonl", self.iteration)


def check_compatible(saved: dict[str, Any], current: dict[str, Any]) -> None:
    for key in ("task", "robot", "num_obs", "num_critic_obs", "num_actions", "policy", "world_size"):
        if saved.get(key) != current.get(key):
            raise IncompatibleRun(f"{key}: the checkpoint has {saved.get(key)!r}, this run has {current.get(key)!r}")
    for key, value in saved["ppo"].items():
        if key in ("learning_rate",):
            continue
        if current["ppo"].get(key) != value:
            raise IncompatibleRun(f"ppo.{key}: the checkpoint has {value!r}, this run has {current['ppo'].get(key)!r}")


def _truncate_metrics(path: Path, iteration: int) -> None:
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["iteration"] <= iteration]
    path.write_text("".join(ln + "\n" for ln in lines))


class _progress:
    """A rich progress bar: iterations, ETA (or the time budget left), env steps/s, return."""

    def __init__(self, runner: Runner, enabled: bool) -> None:
        self.enabled = enabled
        self.budget_s = 60.0 * runner.cfg.max_minutes
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        eta = TextColumn("{task.fields[budget]}") if self.budget_s > 0 else TimeRemainingColumn()
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), eta, TextColumn("{task.fields[info]}")
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=runner.cfg.max_iterations, completed=runner.iteration, info="", budget=""
        )

    def update(self, stats: dict[str, float]) -> None:
        if not self.enabled:
            return
        info = f"{stats['perf/env_steps_per_s']:,.0f} steps/s"
        if "episode/mean_return" in stats:
            info += f"  return {stats['episode/mean_return']:.2f}  len {stats['episode/mean_length']:.0f}"
        budget = ""
        if self.budget_s > 0:
            left = max(0.0, self.budget_s - stats["perf/wall_clock_s"])
            budget = f"{left / 60:4.1f} of {self.budget_s / 60:g} min left"
        self.progress.update(self.task, advance=1, info=info, budget=budget)

    def close(self) -> None:
        if self.enabled:
            self.progress.stop()
