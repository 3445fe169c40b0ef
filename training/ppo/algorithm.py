"""The PPO update: clipped surrogate, clipped value loss, entropy bonus, adaptive-KL step size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn

from training.ppo.model import ActorCritic
from training.ppo.storage import Batch, RolloutStorage


@dataclass
class PPOConfig:
    """PPO hyper-parameters (defaults: rsl_rl's locomotion settings, sized for 2 CPU cores)."""

    learning_rate: float = 1e-3
    schedule: Literal["adaptive", "fixed", "linear"] = "adaptive"
    """adaptive: scale the step size to keep KL near desired_kl; linear: anneal to 0 over the run."""
    desired_kl: float = 0.01
    num_epochs: int = 5
    num_minibatches: int = 4
    gamma: float = 0.99
    lam: float = 0.95
    """GAE lambda."""
    clip_param: float = 0.2
    clip_value_loss: bool = True
    value_loss_coef: float = 1.0
    entropy_coef: float = 0.01
    max_grad_norm: float = 1.0
    normalize_advantages: bool = True


def surrogate_loss(
    log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor, clip: float
) -> torch.Tensor:
    ratio = torch.exp(log_probs - old_log_probs)
    unclipped = advantages * ratio
    clipped = advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    return -torch.min(unclipped, clipped).mean()


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip: float | None
) -> torch.Tensor:
    if clip is None:
        return (returns - values).pow(2).mean()
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return torch.max((values - returns).pow(2), (clipped - returns).pow(2)).mean()


def gaussian_kl(
    mu_old: torch.Tensor, std_old: torch.Tensor, mu_new: torch.Tensor, std_new: torch.Tensor
) -> torch.Tensor:
    """KL(old || new) of diagonal Gaussians, summed over action dimensions."""
    return torch.sum(
        torch.log(std_new / std_old) + (std_old.pow(2) + (mu_old - mu_new).pow(2)) / (2.0 * std_new.pow(2)) - 0.5,
        dim=-1,
    )


def adapt_learning_rate(lr: float, kl: float, desired_kl: float, lo: float = 1e-5, hi: float = 1e-2) -> float:
    if kl > 2.0 * desired_kl:
        return max(lo, lr / 1.5)
    if 0.0 < kl < desired_kl / 2.0:
        return min(hi, lr * 1.5)
    return lr


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class PPO:
    def __init__(self, policy: ActorCritic, cfg: PPOConfig, total_iterations: int) -> None:
        self.policy = policy
        self.cfg = cfg
        self.learning_rate = cfg.learning_rate
        self.total_iterations = max(1, total_iterations)
        self.params = list(policy.parameters())
        # fused Adam: one kernel for all parameters instead of a Python loop over them
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.learning_rate, fused=True)

    def _set_lr(self, lr: float) -> None:
        self.learning_rate = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _sync_gradients(self) -> None:
        """Average gradients over ranks (every rank then takes the identical step)."""
        if not _distributed():
            return
        grads = [p.grad for p in self.params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def update(self, storage: RolloutStorage, iteration: int, generator: torch.Generator) -> dict[str, float]:
        cfg = self.cfg
        if cfg.schedule == "linear":
            self._set_lr(cfg.learning_rate * max(0.0, 1.0 - iteration / self.total_iterations))
        stats = {"loss/surrogate": 0.0, "loss/value": 0.0, "loss/entropy": 0.0, "policy/kl": 0.0}
        count = 0
        for batch in storage.minibatches(cfg.num_minibatches, cfg.num_epochs, generator):
            stats_b = self._step(batch)
            for k, v in stats_b.items():
                stats[k] += v
            count += 1
        out = {k: v / max(count, 1) for k, v in stats.items()}
        out["policy/learning_rate"] = self.learning_rate
        out["policy/action_std"] = self.policy.log_std.detach().exp().mean().item()
        return out

    def _step(self, b: Batch) -> dict[str, float]:
        cfg = self.cfg
        dist_new = self.policy.distribution(b.obs)
        log_probs = dist_new.log_prob(b.actions).sum(-1)
        entropy = dist_new.entropy().sum(-1).mean()
        values = self.policy.value(b.critic_obs)

        with torch.no_grad():
            kl = gaussian_kl(b.mean, b.std, dist_new.mean, dist_new.stddev).mean()
            if _distributed():
                dist.all_reduce(kl)
                kl /= dist.get_world_size()
        if cfg.schedule == "adaptive":
            self._set_lr(adapt_learning_rate(self.learning_rate, float(kl), cfg.desired_kl))

        surrogate = surrogate_loss(log_probs, b.log_probs, b.advantages, cfg.clip_param)
        v_loss = value_loss(values, b.values, b.returns, cfg.clip_param if cfg.clip_value_loss else None)
        loss = surrogate + cfg.value_loss_coef * v_loss - cfg.entropy_coef * entropy
        if not torch.isfinite(loss):
            raise FloatingPointError(f"PPO loss became non-finite ({float(loss)})")

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._sync_gradients()
        nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
        self.optimizer.step()
        return {
            "loss/surrogate": surrogate.item(),
            "loss/value": v_loss.item(),
            "loss/entropy": entropy.item(),
            "policy/kl": float(kl),
        }
