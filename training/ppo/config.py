"""Run settings, kept free of torch so that the command line checks them (and refuses a bad
one, naming the field) in a second rather than after importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Activation = Literal["elu", "tanh", "relu", "silu"]


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
    symmetry_augmentation: bool = False
    """Train each minibatch together with its left-right mirror image (twice the samples per update,
    for tasks whose robot has a mirror section; trot.training.symmetry)."""
    mirror_loss_coef: float = 0.0
    """Weight of a loss pulling the actor's mean on a mirrored observation to the mirror of its mean
    on the original: a symmetric gait (needs symmetry_augmentation)."""


@dataclass
class PolicyConfig:
    """Network shapes. Small enough that the update costs no more than simulating on 2 cores."""

    actor_hidden: tuple[int, ...] = (256, 128, 64)
    critic_hidden: tuple[int, ...] = (256, 128, 64)
    activation: Activation = "elu"
    init_noise_std: float = 1.0
    normalize_obs: bool = True
    """Empirical observation normalization (frozen and baked into exported policies)."""
    obs_norm_eps: float = 1e-2
    """Added to each observation dimension's running variance before dividing by its square root:
    a dimension whose std is well below sqrt(obs_norm_eps) is centred but not amplified, so a
    rarely non-zero one (a contact force) cannot turn its rare events into many-sigma inputs."""


@dataclass
class RunnerConfig:
    """How long and how a run goes."""

    seed: int = 1
    steps_per_env: int = 24
    """Rollout length per environment and iteration."""
    max_iterations: int = 400
    max_minutes: float = 0.0
    """Wall-clock budget (0: none). The run stops, checkpointed, when it is spent."""
    save_interval: int = 25
    """Checkpoint every this many iterations (and at the end, and on SIGINT/SIGTERM)."""
    reward_normalization: bool = False
    """Divide rewards by a running std of the discounted return (helps Gymnasium tasks)."""
    device: Literal["cpu", "cuda"] = "cpu"
    torch_threads: int = 0
    """Threads for torch (0: all cores of this rank)."""
    compile: bool = False
    """torch.compile the rollout policy step and each PPO minibatch step: ~4x faster for small
    networks, where Python and op dispatch dominate. Needs a C++ compiler and ~15-30 s once;
    falls back to eager PyTorch with a warning if compilation fails."""
    video_interval: int = 0
    """Record an evaluation video every this many iterations (0: never; locomotion tasks)."""
    video_seconds: float = 5.0
    ppo: PPOConfig = field(default_factory=PPOConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)


class IncompatibleRun(ValueError):
    """Resuming a run whose checkpoint does not fit the requested task/config."""
