"""Symmetry augmentation of PPO minibatches (rsl_rl's symmetry extension, in trot's terms): each
minibatch is trained on together with its mirror image, built from the task's mirror maps
(:mod:`trot.training.symmetry`)."""

from __future__ import annotations

import torch

from trot.training.ppo.storage import Batch
from trot.training.symmetry import Mirror


class TensorMirror:
    """A :class:`Mirror` applied to tensors' last axis."""

    def __init__(self, mirror: Mirror, device: torch.device) -> None:
        self.index = torch.as_tensor(mirror.index, dtype=torch.long, device=device)
        self.sign = torch.as_tensor(mirror.sign, dtype=torch.float32, device=device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., self.index] * self.sign


class BatchMirror:
    """Mirror images of observations, critic observations and actions, and of whole minibatches."""

    def __init__(self, obs: Mirror, critic: Mirror, action: Mirror, device: torch.device) -> None:
        self.obs, self.critic, self.action = (TensorMirror(m, device) for m in (obs, critic, action))
        self._std_index = self.action.index

    def augment(self, b: Batch) -> Batch:
        """The minibatch followed by its mirror image. A mirrored action's log-probability under
        the mirrored old policy (mean mirrored, per-joint std permuted) equals the original's, and
        its advantage is the original's: the mirrored episode is as good as the one it mirrors."""
        return Batch(
            obs=torch.cat([b.obs, self.obs(b.obs)]),
            critic_obs=torch.cat([b.critic_obs, self.critic(b.critic_obs)]),
            actions=torch.cat([b.actions, self.action(b.actions)]),
            log_probs=b.log_probs.repeat(2),
            values=b.values.repeat(2),
            advantages=b.advantages.repeat(2),
            returns=b.returns.repeat(2),
            mean=torch.cat([b.mean, self.action(b.mean)]),
            std=torch.cat([b.std, b.std[..., self._std_index]]),
        )
