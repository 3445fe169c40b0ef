"""The PPO update: clipped surrogate, clipped value loss, entropy bonus, adaptive-KL step size."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributions import Normal
from torch.func import functional_call, grad
from torch.optim.adam import adam

from trot.training.ppo.config import PPOConfig
from trot.training.ppo.model import ActorCritic
from trot.training.ppo.storage import Batch, RolloutStorage
from trot.training.ppo.symmetry import BatchMirror


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


def ppo_loss(
    mean: torch.Tensor,
    std: torch.Tensor,
    values: torch.Tensor,
    b: Batch,
    cfg: PPOConfig,
    mirror_action: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The PPO objective and its parts [loss, surrogate, value loss, entropy, KL(old || new), mirror
    loss]. With ``mirror_action`` the batch's second half is the first's mirror image
    (:class:`~trot.training.ppo.symmetry.BatchMirror`), and the mirror loss is weighted in."""
    distribution = Normal(mean, std, validate_args=False)
    log_probs = distribution.log_prob(b.actions).sum(-1)
    entropy = distribution.entropy().sum(-1).mean()
    # The step size follows the policy's change on the samples collected: on a mirror image the
    # "old policy" is the mirror of the collecting one, as far from the current policy as the latter
    # is from symmetric, and that distance would shrink the step to nothing.
    n = mean.shape[0] // 2 if mirror_action is not None else mean.shape[0]
    kl = gaussian_kl(b.mean[:n], b.std[:n], mean[:n].detach(), std[:n].detach()).mean()
    surrogate = surrogate_loss(log_probs, b.log_probs, b.advantages, cfg.clip_param)
    v_loss = value_loss(values, b.values, b.returns, cfg.clip_param if cfg.clip_value_loss else None)
    loss = surrogate + cfg.value_loss_coef * v_loss - cfg.entropy_coef * entropy
    mirror = torch.zeros((), device=mean.device)
    if mirror_action is not None and cfg.mirror_loss_coef > 0.0:
        mirror = (mean[n:] - mirror_action(mean[:n])).pow(2).mean()
        loss = loss + cfg.mirror_loss_coef * mirror
    return loss, torch.stack([loss.detach(), surrogate.detach(), v_loss.detach(), entropy.detach(), kl,
                              mirror.detach()])  # fmt: skip


def adapt_learning_rate(lr: float, kl: float, desired_kl: float, lo: float = 1e-5, hi: float = 1e-2) -> float:
    if kl > 2.0 * desired_kl:
        return max(lo, lr / 1.5)
    if 0.0 < kl < desired_kl / 2.0:
        return min(hi, lr * 1.5)
    return lr


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _average_over_ranks(tensors: list[torch.Tensor]) -> None:
    """All-reduce (mean) in place, as one flat message."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


COMPILE_ERRORS: tuple[type[Exception], ...] = (
    torch._dynamo.exc.BackendCompilerFailed,
    torch._inductor.exc.InductorError,
    torch._inductor.exc.CppCompileError,
)


def compiled(fn: Callable) -> Callable:
    """``torch.compile(fn)`` for functions of the (fixed) policy networks, falling back to ``fn``
    itself, with a warning, if compilation fails (no C++ compiler, say)."""
    # The networks' structure never changes during a run: no guards on nn.Module attributes
    # (evaluating them cost ~0.15 ms per call, as much as a whole minibatch step).
    options = {"guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe, "size_asserts": False}
    fast = torch.compile(fn, options=options)
    state = {"ok": True}

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        if state["ok"]:
            try:
                return fast(*args)
            except COMPILE_ERRORS as exc:  # raised before the compiled code ran: nothing changed
                warnings.warn(f"compile: torch.compile failed, continuing in eager PyTorch ({exc})", stacklevel=2)
                state["ok"] = False
        return fn(*args)

    return call


class PPO:
    """Minibatch updates, eager or compiled. Both use :func:`ppo_loss` and torch's Adam (the
    compiled one its functional form, on the optimizer's own state): checkpoints are the same."""

    def __init__(
        self,
        policy: ActorCritic,
        cfg: PPOConfig,
        total_iterations: int,
        compile: bool = False,
        mirror: BatchMirror | None = None,
    ) -> None:
        if cfg.symmetry_augmentation and mirror is None:
            raise ValueError("ppo.symmetry_augmentation: this task has no mirror maps")
        if cfg.mirror_loss_coef > 0.0 and not cfg.symmetry_augmentation:
            raise ValueError("ppo.mirror_loss_coef: needs ppo.symmetry_augmentation")
        self.policy = policy
        self.cfg = cfg
        self.mirror = mirror if cfg.symmetry_augmentation else None
        self._mirror_action = self.mirror.action if self.mirror is not None else None
        self.learning_rate = cfg.learning_rate
        self.total_iterations = max(1, total_iterations)
        self.named_params = dict(policy.named_parameters())
        self.params = list(self.named_params.values())
        # fused Adam: one kernel for all parameters instead of a Python loop over them
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.learning_rate, fused=True)
        self._betas, self._eps = self.optimizer.defaults["betas"], self.optimizer.defaults["eps"]
        self.compile = compile
        self._functional: tuple | None = None
        self._lr_tensor = torch.zeros(())
        if compile:
            self._compiled_gradients = compiled(self._gradients)
            self._compiled_clip_and_adam = compiled(self._clip_and_adam)

    def _set_lr(self, lr: float) -> None:
        self.learning_rate = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def update(self, storage: RolloutStorage, iteration: int, generator: torch.Generator) -> dict[str, float]:
        cfg = self.cfg
        if cfg.schedule == "linear":
            self._set_lr(cfg.learning_rate * max(0.0, 1.0 - iteration / self.total_iterations))
        sums = [0.0] * 5
        count = 0
        self._functional = None
        for batch in storage.minibatches(cfg.num_minibatches, cfg.num_epochs, generator):
            if self.mirror is not None:
                batch = self.mirror.augment(batch)
            for i, v in enumerate(self._step(batch)):
                sums[i] += v
            count += 1
        names = ("loss/surrogate", "loss/value", "loss/entropy", "policy/kl", "loss/mirror")
        out = {k: v / max(count, 1) for k, v in zip(names, sums, strict=True)}
        if cfg.mirror_loss_coef == 0.0:
            del out["loss/mirror"]
        out["policy/learning_rate"] = self.learning_rate
        out["policy/action_std"] = self.policy.log_std.detach().exp().mean().item()
        return out

    def _step(self, b: Batch) -> list[float]:
        """One minibatch step; returns [surrogate, value loss, entropy, KL, mirror loss]."""
        if self.compile:
            return self._functional_step(b)
        mean, std, values = self.policy(b.obs, b.critic_obs)
        loss, parts = ppo_loss(mean, std, values, b, self.cfg, self._mirror_action)
        stats = self._check_and_adapt(parts)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if _distributed():
            _average_over_ranks([p.grad for p in self.params if p.grad is not None])
        nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        self.optimizer.step()
        return stats

    def _check_and_adapt(self, parts: torch.Tensor) -> list[float]:
        """Stop on a non-finite loss; adapt the step size to this minibatch's KL (before the step)."""
        if _distributed():
            kl = parts[4:5].clone()
            _average_over_ranks([kl])
            parts = torch.cat([parts[:4], kl, parts[5:]])
        loss, surrogate, v_loss, entropy, kl, mirror = parts.tolist()
        if not math.isfinite(loss):
            raise FloatingPointError(f"PPO loss became non-finite ({loss})")
        if self.cfg.schedule == "adaptive":
            self._set_lr(adapt_learning_rate(self.learning_rate, kl, self.cfg.desired_kl))
        return [surrogate, v_loss, entropy, kl, mirror]

    # ------------------------------------------------------------------ compiled path
    def _functional_step(self, b: Batch) -> list[float]:
        """The same step as functions of tensors (torch.func.grad, functional Adam), which
        torch.compile turns into two fused native calls."""
        if self._functional is None:
            self._functional = self._functional_inputs()
        detached, buffers, exp_avgs, exp_avg_sqs, steps = self._functional
        grads, parts = self._compiled_gradients(detached, buffers, b)
        stats = self._check_and_adapt(parts)
        grads = [grads[n] for n in self.named_params]
        if _distributed():
            _average_over_ranks(grads)
        # lr as a tensor: a Python float would be a constant of the compiled code (a recompile per change)
        self._lr_tensor.fill_(self.learning_rate)
        self._compiled_clip_and_adam(grads, exp_avgs, exp_avg_sqs, steps, self._lr_tensor)
        return stats

    def _functional_inputs(self) -> tuple:
        """Detached views of the parameters, the buffers and the optimizer's state tensors, built
        once per update (a resume replaces the optimizer's state; in-place steps show through views)."""
        detached = {n: p.detach() for n, p in self.named_params.items()}
        states = [self._adam_state(p) for p in self.params]
        return (
            detached, dict(self.policy.named_buffers()), [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states], [s["step"] for s in states],
        )  # fmt: skip

    def _gradients(
        self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], b: Batch
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        def loss_of(p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            mean, std, values = functional_call(self.policy, (p, buffers), (b.obs, b.critic_obs))
            return ppo_loss(mean, std, values, b, self.cfg, self._mirror_action)

        return grad(loss_of, has_aux=True)(params)

    @torch.no_grad()
    def _clip_and_adam(
        self,
        grads: list[torch.Tensor],
        exp_avgs: list[torch.Tensor],
        exp_avg_sqs: list[torch.Tensor],
        steps: list[torch.Tensor],
        lr: torch.Tensor,
    ) -> None:
        """clip_grad_norm_'s rule, then torch's single-tensor Adam on the optimizer's state."""
        coef = torch.clamp(self.cfg.max_grad_norm / (nn.utils.get_total_norm(grads) + 1e-6), max=1.0)
        grads = [g * coef for g in grads]
        adam(
            self.params, grads, exp_avgs, exp_avg_sqs, [], steps, foreach=False, capturable=False, amsgrad=False,
            beta1=self._betas[0], beta2=self._betas[1], lr=lr, weight_decay=0.0, eps=self._eps, maximize=False,
        )  # fmt: skip

    def _adam_state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """The optimizer's per-parameter state, created as torch.optim.Adam would on its first step."""
        state = self.optimizer.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state
