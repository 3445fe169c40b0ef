"""Actor-critic MLPs: separate networks, Gaussian policy with a state-independent log-std."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Normal

from trot.training.ppo.config import Activation, PolicyConfig
from trot.training.ppo.normalizer import EmpiricalNormalizer

_ACTIVATIONS = {"elu": nn.ELU, "tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU}


def mlp(sizes: Sequence[int], activation: Activation, out_gain: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        linear = nn.Linear(a, b)
        last = i == len(sizes) - 2
        nn.init.orthogonal_(linear.weight, gain=out_gain if last else 2**0.5)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Actor and critic each normalize their own (raw) observations."""

    def __init__(
        self,
        num_obs: int,
        num_critic_obs: int,
        num_actions: int,
        actor_hidden: Sequence[int],
        critic_hidden: Sequence[int],
        activation: Activation = "elu",
        init_noise_std: float = 1.0,
        normalize_obs: bool = True,
        obs_norm_eps: float = PolicyConfig.obs_norm_eps,
    ) -> None:
        super().__init__()
        self.actor = mlp([num_obs, *actor_hidden, num_actions], activation, out_gain=0.01)
        self.critic = mlp([num_critic_obs, *critic_hidden, 1], activation, out_gain=1.0)
        self.log_std = nn.Parameter(torch.full((num_actions,), float(torch.log(torch.tensor(init_noise_std)))))
        self.actor_norm = EmpiricalNormalizer(num_obs, obs_norm_eps) if normalize_obs else nn.Identity()
        self.critic_norm = EmpiricalNormalizer(num_critic_obs, obs_norm_eps) if normalize_obs else nn.Identity()

    @classmethod
    def from_config(cls, num_obs: int, num_critic_obs: int, num_actions: int, p: PolicyConfig) -> ActorCritic:
        return cls(
            num_obs, num_critic_obs, num_actions, p.actor_hidden, p.critic_hidden, p.activation, p.init_noise_std,
            p.normalize_obs, p.obs_norm_eps,
        )  # fmt: skip

    def forward(self, obs: torch.Tensor, critic_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the PPO update differentiates: action mean, action std and value."""
        mean = self.action_mean(obs)
        return mean, self.log_std.exp().expand_as(mean), self.value(critic_obs)

    def act(
        self, obs: torch.Tensor, critic_obs: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One rollout step: sampled actions (mean + std * noise, which is what Normal.sample draws
        from the same standard-normal numbers), their log-probability, value, mean and std."""
        mean, std, values = self(obs, critic_obs)
        actions = mean + std * noise
        log_probs = Normal(mean, std, validate_args=False).log_prob(actions).sum(-1)
        return actions, log_probs, values, mean, std

    def action_mean(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(self.actor_norm(obs))

    def value(self, critic_obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.critic_norm(critic_obs)).squeeze(-1)

    def update_normalizers(self, obs: torch.Tensor, critic_obs: torch.Tensor) -> None:
        if isinstance(self.actor_norm, EmpiricalNormalizer):
            self.actor_norm.update(obs)
            self.critic_norm.update(critic_obs)


class DeterministicActor(nn.Module):
    """What gets exported: normalizer + actor mean, no sampling."""

    def __init__(self, policy: ActorCritic) -> None:
        super().__init__()
        self.norm = policy.actor_norm
        self.actor = policy.actor

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(self.norm(obs))
