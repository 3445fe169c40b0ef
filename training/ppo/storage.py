"""Rollout storage and generalized advantage estimation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_values: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns for [T, N] tensors.

    ``dones[t]`` marks that the episode ended at step t (fall or time-out): nothing after it is
    bootstrapped. Time-outs are bootstrapped *in the reward* beforehand (r += gamma * V(s_final)),
    so here every ending is treated alike.
    """
    steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_values)
    for t in reversed(range(steps)):
        next_values = last_values if t == steps - 1 else values[t + 1]
        not_done = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_values * not_done - values[t]
        running = delta + gamma * lam * not_done * running
        advantages[t] = running
    return advantages, advantages + values


@dataclass
class Batch:
    obs: torch.Tensor
    critic_obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


class RolloutStorage:
    """[T, N, ...] buffers filled step by step during collection."""

    def __init__(
        self, steps: int, num_envs: int, num_obs: int, num_critic_obs: int, num_actions: int, device: torch.device
    ) -> None:
        self.steps, self.num_envs = steps, num_envs

        def z(*shape: int) -> torch.Tensor:
            return torch.zeros(steps, num_envs, *shape, device=device)

        self.obs, self.critic_obs = z(num_obs), z(num_critic_obs)
        self.actions, self.mean, self.std = z(num_actions), z(num_actions), z(num_actions)
        self.rewards, self.dones, self.values, self.log_probs = z(), z(), z(), z()
        self.advantages, self.returns = z(), z()
        self.step = 0

    def add(self, **tensors: torch.Tensor) -> None:
        for name, value in tensors.items():
            getattr(self, name)[self.step].copy_(value)
        self.step += 1

    def finish(self, last_values: torch.Tensor, gamma: float, lam: float, normalize_advantages: bool) -> None:
        assert self.step == self.steps, "storage not full"
        self.advantages, self.returns = compute_gae(self.rewards, self.values, self.dones, last_values, gamma, lam)
        if normalize_advantages:
            self.advantages = (self.advantages - self.advantages.mean()) / (self.advantages.std() + 1e-8)
        self.step = 0

    def minibatches(self, num_minibatches: int, num_epochs: int, generator: torch.Generator) -> Iterator[Batch]:
        total = self.steps * self.num_envs
        size = total // num_minibatches
        # [T, N, ...] -> [T * N, ...]: per-sample scalars stay [B], vectors stay [B, size] even when
        # size is 1 (one action, one observation)
        names = ("obs", "critic_obs", "actions", "log_probs", "values", "advantages", "returns", "mean", "std")
        flat = {name: getattr(self, name).flatten(0, 1) for name in names}
        for _ in range(num_epochs):
            order = torch.randperm(total, generator=generator).to(self.rewards.device)
            shuffled = {name: t[order] for name, t in flat.items()}  # one gather per epoch; minibatches are views
            for k in range(num_minibatches):
                yield Batch(**{name: t[k * size : (k + 1) * size] for name, t in shuffled.items()})
