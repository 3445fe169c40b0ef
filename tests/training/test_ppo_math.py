"""GAE, losses, KL schedule and the normalizer against hand-computed values."""

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from trot.training.ppo.algorithm import adapt_learning_rate, gaussian_kl, surrogate_loss, value_loss
from trot.training.ppo.normalizer import EmpiricalNormalizer
from trot.training.ppo.storage import compute_gae


def test_gae_and_returns_hand_computed() -> None:
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [1.0], [1.5]])
    dones = torch.tensor([[0.0], [1.0], [0.0]])  # the episode ends at t=1
    last = torch.tensor([2.0])
    adv, ret = compute_gae(rewards, values, dones, last, gamma=0.9, lam=0.8)
    # t=2: 3 + 0.9*2.0 - 1.5 = 3.3
    # t=1: ends: 2 - 1.0 = 1.0 (nothing bootstrapped past the end)
    # t=0: delta = 1 + 0.9*1.0 - 0.5 = 1.4; adv = 1.4 + 0.9*0.8*1.0 = 2.12
    torch.testing.assert_close(adv[:, 0], torch.tensor([2.12, 1.0, 3.3]))
    torch.testing.assert_close(ret[:, 0], torch.tensor([2.62, 2.0, 4.8]))


def test_surrogate_clipping() -> None:
    old = torch.zeros(4)
    new = torch.log(torch.tensor([1.5, 1.5, 0.5, 0.5]))
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    # ratio 1.5, A>0 -> clipped to 1.2 ; ratio 1.5, A<0 -> unclipped -1.5 (pessimistic min)
    # ratio 0.5, A>0 -> unclipped 0.5 ; ratio 0.5, A<0 -> clipped -0.8
    expected = -torch.tensor([1.2, -1.5, 0.5, -0.8]).mean()
    torch.testing.assert_close(surrogate_loss(new, old, adv, clip=0.2), expected)


def test_value_loss_clipping() -> None:
    old = torch.tensor([0.0, 0.0])
    new = torch.tensor([1.0, 0.1])
    ret = torch.tensor([1.0, 1.0])
    # env 0: unclipped error 0, clipped value 0.2 -> error 0.64, max -> 0.64; env 1: both within clip: 0.81
    torch.testing.assert_close(value_loss(new, old, ret, clip=0.2), torch.tensor((0.64 + 0.81) / 2))
    torch.testing.assert_close(value_loss(new, old, ret, clip=None), torch.tensor((0.0 + 0.81) / 2))


def test_gaussian_kl_matches_torch() -> None:
    g = torch.Generator().manual_seed(0)
    mu0, mu1 = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    s0, s1 = torch.rand(8, 3, generator=g) + 0.1, torch.rand(8, 3, generator=g) + 0.1
    ref = kl_divergence(Normal(mu0, s0), Normal(mu1, s1)).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu0, s0, mu1, s1), ref)


@pytest.mark.parametrize(
    ("kl", "expected"),
    [(0.05, 1e-3 / 1.5), (0.001, 1e-3 * 1.5), (0.01, 1e-3), (0.0, 1e-3), (1.0, 1e-3 / 1.5)],
)
def test_adaptive_kl_schedule(kl: float, expected: float) -> None:
    assert adapt_learning_rate(1e-3, kl, desired_kl=0.01) == pytest.approx(expected)


def test_adaptive_kl_schedule_bounds() -> None:
    assert adapt_learning_rate(1e-5, 1.0, 0.01) == 1e-5
    assert adapt_learning_rate(1e-2, 1e-6, 0.01) == 1e-2


def test_normalizer_matches_numpy_and_freezes() -> None:
    rng = np.random.default_rng(0)
    data = [rng.normal(3.0, 2.0, size=(n, 4)) for n in (10, 50, 7)]
    norm = EmpiricalNormalizer(4)
    for batch in data:
        norm.update(torch.tensor(batch, dtype=torch.float32))
    everything = np.concatenate(data)
    np.testing.assert_allclose(norm.mean.numpy(), everything.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm.var.numpy(), everything.var(0), rtol=1e-4)
    x = torch.tensor(everything[:3], dtype=torch.float32)
    expected = (everything[:3] - everything.mean(0)) / np.sqrt(everything.var(0) + norm.eps)
    np.testing.assert_allclose(norm(x).numpy(), expected, rtol=1e-4)
    norm.freeze()
    before = norm.mean.clone()
    norm.update(torch.full((5, 4), 100.0))
    torch.testing.assert_close(norm.mean, before)


def test_gymnasium_defaults_do_not_amplify_a_rarely_nonzero_observation() -> None:
    """Ant-v5 observes 78 contact forces, each clipped to [-1, 1] and non-zero in a few percent of
    steps. Normalized to unit variance, such a dimension turns every contact into a 5-10 sigma input,
    and 78 of them among 105 inputs swamp the rest (bench/results/ppo_peers.md). Trot's Gymnasium
    defaults centre such a dimension without amplifying it, and still scale a wide one (a velocity)
    to about unit variance."""
    from trot.training.ppo.model import ActorCritic
    from trot.training.run_config import default_config

    rng = np.random.default_rng(0)
    contact = np.where(rng.random(20_000) < 0.02, rng.choice([-1.0, 1.0], 20_000), 0.0)
    velocity = rng.normal(0.0, 5.0, 20_000)
    obs = torch.tensor(np.stack([contact, velocity], axis=1), dtype=torch.float32)
    policy = ActorCritic.from_config(2, 2, 1, default_config("Ant-v5").policy)
    policy.update_normalizers(obs, obs)
    spike = policy.actor_norm(torch.tensor([[1.0, 0.0]]))[0, 0].item()
    assert 0.5 < spike <= 1.0, f"a contact of 1 became {spike:.2f} (its std is {contact.std():.2f})"
    assert 0.9 < policy.actor_norm(obs)[:, 1].std().item() < 1.1
