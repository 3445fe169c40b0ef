"""Empirical observation normalization: running mean/variance, synchronized across ranks.

The normalizer is part of the policy module, so exporting the policy bakes it in; ``freeze()``
stops updates (evaluation, export, fine-tuning without drift).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class EmpiricalNormalizer(nn.Module):
    def __init__(self, size: int, eps: float = 1e-2, clip: float = 10.0) -> None:
        super().__init__()
        self.eps = eps
        self.clip = clip
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("var", torch.ones(size))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp((x - self.mean) / torch.sqrt(self.var + self.eps), -self.clip, self.clip)

    def freeze(self) -> None:
        self.frozen.fill_(True)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge the moments of batch ``x`` [B, size] (of every rank, when distributed)."""
        if bool(self.frozen):
            return
        x = x.reshape(-1, self.mean.numel()).to(torch.float64)
        stats = torch.cat([x.new_tensor([x.shape[0]]), x.sum(0), (x * x).sum(0)])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
        n = stats[0]
        if n == 0:
            return
        size = self.mean.numel()
        batch_mean = stats[1 : 1 + size] / n
        batch_var = torch.clamp(stats[1 + size :] / n - batch_mean**2, min=0.0)
        total = self.count + n
        delta = batch_mean - self.mean.to(torch.float64)
        new_mean = self.mean + (delta * n / total).to(self.mean.dtype)
        m2 = self.var.to(torch.float64) * self.count + batch_var * n + delta**2 * self.count * n / total
        self.mean.copy_(new_mean)
        self.var.copy_((m2 / total).to(self.var.dtype))
        self.count.copy_(total)
