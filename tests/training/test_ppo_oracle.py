"""PPO's loss and its full update against values written down by hand (plain floats and numpy).

Nothing here calls trot's loss to produce an expected value: the clipped surrogate, the clipped
value loss, the entropy bonus (sign and coefficient), the value-loss coefficient, the per-batch
advantage normalization, gradient-norm clipping, Adam's first step and both learning-rate
schedules are computed independently and compared with what ``ppo_loss``, ``RolloutStorage`` and
``PPO.update`` (eager) do. The compiled update is checked against the eager one in
test_ppo_compiled.py.
"""

import math

import numpy as np
import pytest
import torch

from trot.training.ppo.algorithm import PPO, ppo_loss
from trot.training.ppo.config import PPOConfig
from trot.training.ppo.model import ActorCritic
from trot.training.ppo.storage import Batch, RolloutStorage

LOG_2PI = math.log(2.0 * math.pi)
ADAM_EPS = 1e-8  # torch.optim.Adam's default


@pytest.fixture
def float64():
    """Everything in float64, so hand values and finite differences compare to ~1e-9."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def gaussian_log_prob(a: float, mu: float, sigma: float) -> float:
    return -((a - mu) ** 2) / (2.0 * sigma**2) - math.log(sigma) - 0.5 * LOG_2PI


# ---------------------------------------------------------------------------------- the loss itself


def test_ppo_loss_two_sample_batch_by_hand(float64: None) -> None:
    """Sample 0 hits the upper clip (ratio 1.5, A > 0), sample 1 the lower one (ratio 0.6, A < 0);
    the value loss takes the clipped error for sample 0 and the unclipped one for sample 1."""
    clip, c_v, c_e = 0.2, 0.7, 0.05
    cfg = PPOConfig(clip_param=clip, value_loss_coef=c_v, entropy_coef=c_e, clip_value_loss=True)
    mu = [[0.1, -0.3], [0.5, 0.2]]
    sigma = [[0.5, 1.5], [0.5, 1.5]]
    actions = [[0.4, 0.6], [-0.2, 0.9]]
    ratio = [1.5, 0.6]
    adv = [1.5, -0.8]
    v_new, v_old, ret = [1.5, -0.5], [1.0, 0.0], [2.0, 0.4]
    mu_old, sigma_old = [[0.0, -0.1], [0.4, 0.4]], [[0.6, 1.2], [0.6, 1.2]]

    log_prob = [sum(gaussian_log_prob(actions[i][d], mu[i][d], sigma[i][d]) for d in range(2)) for i in range(2)]
    old_log_prob = [log_prob[i] - math.log(ratio[i]) for i in range(2)]

    # surrogate: -mean(min(A r, A clip(r))): 1.5 * min(1.5, 1.2) = 1.8; -0.8 * 0.6 = -0.48 > -0.8 * 0.8 = -0.64
    surrogate = -(1.5 * 1.2 + (-0.8) * 0.8) / 2  # = -0.58
    # value: sample 0: (1.5-2)^2 = 0.25 < clipped (1.0+0.2-2)^2 = 0.64; sample 1: (-0.5-0.4)^2 = 0.81 > (-0.2-0.4)^2
    v_loss = (0.64 + 0.81) / 2
    # entropy of a Gaussian per dimension: 0.5 + 0.5 ln(2 pi) + ln sigma, summed over dims, mean over samples
    entropy = 2 * (0.5 + 0.5 * LOG_2PI) + math.log(0.5) + math.log(1.5)
    kl = (
        sum(
            math.log(sigma[i][d] / sigma_old[i][d])
            + (sigma_old[i][d] ** 2 + (mu_old[i][d] - mu[i][d]) ** 2) / (2 * sigma[i][d] ** 2)
            - 0.5
            for i in range(2)
            for d in range(2)
        )
        / 2
    )
    loss = surrogate + c_v * v_loss - c_e * entropy  # the entropy is a bonus: it lowers the loss

    t = torch.tensor
    mean_t, std_t, values_t = (t(x, requires_grad=True) for x in (mu, sigma, v_new))
    batch = Batch(
        obs=torch.zeros(2, 1), critic_obs=torch.zeros(2, 1), actions=t(actions), log_probs=t(old_log_prob),
        values=t(v_old), advantages=t(adv), returns=t(ret), mean=t(mu_old), std=t(sigma_old),
    )  # fmt: skip
    total, parts = ppo_loss(mean_t, std_t, values_t, batch, cfg)
    # (the last part, the mirror loss, is zero without symmetry augmentation)
    assert parts.tolist() == pytest.approx([loss, surrogate, v_loss, entropy, kl, 0.0], abs=1e-6, rel=0)
    assert float(total.detach()) == pytest.approx(loss, abs=1e-6, rel=0)

    total.backward()
    # Both surrogate terms sit on their clipped branch: no gradient reaches the means.
    np.testing.assert_allclose(mean_t.grad.numpy(), np.zeros((2, 2)), atol=1e-9)
    # d/d sigma: only the entropy bonus, -c_e * (1/sigma) / batch size
    np.testing.assert_allclose(std_t.grad.numpy(), -c_e / (2 * np.array(sigma)), atol=1e-9)
    # d/d value: sample 0 on its clipped branch (0); sample 1: c_v * 2 (v - R) / 2
    np.testing.assert_allclose(values_t.grad.numpy(), [0.0, c_v * (-0.5 - 0.4)], atol=1e-9)


# ---------------------------------------------------------------------------------- advantage normalization


def hand_gae(rewards: np.ndarray, values: np.ndarray, last: np.ndarray, gamma: float, lam: float) -> np.ndarray:
    """GAE for [T, N] arrays without episode ends."""
    adv = np.zeros_like(rewards)
    running = np.zeros_like(last)
    for t in reversed(range(rewards.shape[0])):
        nxt = last if t == rewards.shape[0] - 1 else values[t + 1]
        running = rewards[t] + gamma * nxt - values[t] + gamma * lam * running
        adv[t] = running
    return adv


def fill(storage: RolloutStorage, **arrays: np.ndarray) -> None:
    for t in range(storage.steps):
        storage.add(**{k: torch.as_tensor(v[t]) for k, v in arrays.items()})


def test_advantages_are_normalized_once_per_batch_not_per_minibatch(float64: None) -> None:
    steps, envs, gamma, lam = 4, 2, 0.9, 0.8
    rng = np.random.default_rng(3)
    rewards, values = rng.normal(0.5, 1.0, (steps, envs)), rng.normal(0.0, 1.0, (steps, envs))
    last = np.array([0.3, -0.7])
    sample_id = np.arange(steps * envs, dtype=float).reshape(steps, envs, 1)  # to find each sample again
    raw = hand_gae(rewards, values, last, gamma, lam)
    normalized = (raw - raw.mean()) / (raw.std(ddof=1) + 1e-8)  # torch's std is the unbiased one

    for normalize, expected in ((False, raw), (True, normalized)):
        storage = RolloutStorage(steps, envs, 1, 1, 1, torch.device("cpu"))
        zeros = np.zeros((steps, envs))
        fill(storage, obs=sample_id, critic_obs=sample_id, actions=sample_id, log_probs=zeros, values=values,
             rewards=rewards, dones=zeros, mean=sample_id, std=sample_id + 1)  # fmt: skip
        storage.finish(torch.as_tensor(last), gamma, lam, normalize)
        np.testing.assert_allclose(storage.advantages.numpy(), expected, rtol=0, atol=1e-9)
        np.testing.assert_allclose(storage.returns.numpy(), raw + values, rtol=0, atol=1e-9)  # never normalized

    # Minibatches carry the batch-normalized values unchanged; renormalizing each one would move them.
    flat = normalized.reshape(-1)
    minibatch_means = []
    for b in storage.minibatches(4, 2, torch.Generator().manual_seed(0)):  # the normalized storage
        ids = b.obs[:, 0].numpy().astype(int)
        np.testing.assert_allclose(b.advantages.numpy(), flat[ids], rtol=0, atol=1e-9)
        minibatch_means.append(abs(float(b.advantages.mean())))
    assert max(minibatch_means) > 0.1  # per-minibatch normalization would have made these 0


# ---------------------------------------------------------------------------------- the full update

# A linear actor and critic on 2 inputs, 1 action: every parameter by hand.
OLD = {"actor.0.weight": [[0.3, -0.2]], "actor.0.bias": [0.1], "critic.0.weight": [[0.5, 0.4]],
       "critic.0.bias": [-0.2], "log_std": [math.log(0.8)]}  # fmt: skip
NEW = {"actor.0.weight": [[0.6, -0.4]], "actor.0.bias": [0.1], "critic.0.weight": [[0.4, 0.7]],
       "critic.0.bias": [-0.2], "log_std": [math.log(0.7)]}  # fmt: skip
OBS = np.array([[[0.5, -1.0], [1.2, 0.3]], [[-0.4, 0.8], [0.9, 1.1]]])  # [T=2, N=2, 2]
ACTIONS = np.array([[1.6, -0.1], [-0.5, 0.7]])  # [T, N] (one action dimension)
REWARDS = np.array([[1.0, -0.5], [0.3, 2.0]])
LAST_OBS = np.array([[0.2, 0.2], [-1.0, 0.5]])
GAMMA, LAM = 0.95, 0.9


def heads(p: dict[str, np.ndarray], obs: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    mu = obs @ np.asarray(p["actor.0.weight"]).reshape(-1) + np.asarray(p["actor.0.bias"])[0]
    v = obs @ np.asarray(p["critic.0.weight"]).reshape(-1) + np.asarray(p["critic.0.bias"])[0]
    return mu, float(np.exp(np.asarray(p["log_std"])[0])), v


def log_prob(a: np.ndarray, mu: np.ndarray, sigma: float) -> np.ndarray:
    return -((a - mu) ** 2) / (2 * sigma**2) - math.log(sigma) - 0.5 * LOG_2PI


def rollout() -> dict[str, np.ndarray]:
    """What the old policy recorded, and the batch-normalized advantages and returns."""
    mu_old, sigma_old, v_old = heads(OLD, OBS)
    adv = hand_gae(REWARDS, v_old, heads(OLD, LAST_OBS)[2], GAMMA, LAM)
    return {
        "mu_old": mu_old, "sigma_old": sigma_old, "v_old": v_old, "logp_old": log_prob(ACTIONS, mu_old, sigma_old),
        "adv": (adv - adv.mean()) / (adv.std(ddof=1) + 1e-8), "ret": adv + v_old,
    }  # fmt: skip


def hand_loss(p: dict[str, np.ndarray], r: dict[str, np.ndarray], cfg: PPOConfig) -> tuple[float, ...]:
    """[loss, surrogate, value loss, entropy, KL(old || new)] of the whole batch."""
    mu, sigma, v = heads(p, OBS)
    ratio = np.exp(log_prob(ACTIONS, mu, sigma) - r["logp_old"])
    eps = cfg.clip_param
    surrogate = -np.mean(np.minimum(r["adv"] * ratio, r["adv"] * np.clip(ratio, 1 - eps, 1 + eps)))
    v_clipped = r["v_old"] + np.clip(v - r["v_old"], -eps, eps)
    v_loss = np.mean(np.maximum((v - r["ret"]) ** 2, (v_clipped - r["ret"]) ** 2))
    entropy = 0.5 + 0.5 * LOG_2PI + math.log(sigma)
    so = r["sigma_old"]
    kl = np.mean(math.log(sigma / so) + (so**2 + (r["mu_old"] - mu) ** 2) / (2 * sigma**2) - 0.5)
    loss = surrogate + cfg.value_loss_coef * v_loss - cfg.entropy_coef * entropy
    return float(loss), float(surrogate), float(v_loss), float(entropy), float(kl)


def hand_gradient(p: dict[str, list], r: dict[str, np.ndarray], cfg: PPOConfig) -> dict[str, np.ndarray]:
    """Central finite differences of :func:`hand_loss` (no kink lies within h of this point)."""
    h, out = 1e-6, {}
    for name, value in p.items():
        base = np.asarray(value, dtype=float)
        g = np.zeros_like(base)
        for idx in np.ndindex(base.shape):
            plus, minus = base.copy(), base.copy()
            plus[idx] += h
            minus[idx] -= h
            g[idx] = (hand_loss({**p, name: plus}, r, cfg)[0] - hand_loss({**p, name: minus}, r, cfg)[0]) / (2 * h)
        out[name] = g
    return out


def policy_with(params: dict[str, list]) -> ActorCritic:
    policy = ActorCritic(2, 2, 1, (), (), "tanh", 1.0, normalize_obs=False)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            p.copy_(torch.tensor(params[name]))
    return policy


def filled_storage(r: dict[str, np.ndarray]) -> RolloutStorage:
    """The old policy's rollout, through RolloutStorage (GAE, normalization) as the runner does it."""
    storage = RolloutStorage(2, 2, 2, 2, 1, torch.device("cpu"))
    fill(storage, obs=OBS, critic_obs=OBS, actions=ACTIONS[..., None], log_probs=r["logp_old"], values=r["v_old"],
         rewards=REWARDS, dones=np.zeros((2, 2)), mean=r["mu_old"][..., None],
         std=np.full((2, 2, 1), r["sigma_old"]))  # fmt: skip
    storage.finish(torch.as_tensor(heads(OLD, LAST_OBS)[2]), GAMMA, LAM, normalize_advantages=True)
    return storage


def adam_first_step(grad: np.ndarray, lr: float) -> np.ndarray:
    """Adam's first step from zero state: bias-corrected m = g, v = g^2."""
    return -lr * grad / (np.abs(grad) + ADAM_EPS)


@pytest.mark.parametrize("max_grad_norm", [0.05, 1e3], ids=["clipped", "unclipped"])
def test_full_update_step_matches_hand_loss_gradient_clipping_and_adam(float64: None, max_grad_norm: float) -> None:
    lr = 1e-3
    cfg = PPOConfig(
        learning_rate=lr, schedule="fixed", num_epochs=1, num_minibatches=1, clip_param=0.2, value_loss_coef=0.7,
        entropy_coef=0.05, max_grad_norm=max_grad_norm, gamma=GAMMA, lam=LAM,
    )  # fmt: skip
    r = rollout()
    # The batch exercises every branch: both clip sides and unclipped samples.
    mu, sigma, _ = heads(NEW, OBS)
    ratio, adv = np.exp(log_prob(ACTIONS, mu, sigma) - r["logp_old"]).ravel(), r["adv"].ravel()
    assert ((ratio > 1.2) & (adv > 0)).any() and ((ratio < 0.8) & (adv < 0)).any()
    assert ((ratio > 0.8) & (ratio < 1.2)).any() and ((ratio > 1.2) & (adv < 0)).any()
    moved = (heads(NEW, OBS)[2] - r["v_old"]).ravel()
    v_clipped = r["v_old"].ravel() + np.clip(moved, -0.2, 0.2)
    unclipped_larger = (heads(NEW, OBS)[2].ravel() - r["ret"].ravel()) ** 2 > (v_clipped - r["ret"].ravel()) ** 2
    assert (unclipped_larger & (abs(moved) > 0.2)).any() and (~unclipped_larger & (abs(moved) > 0.2)).any()
    assert (abs(moved) < 0.2).any()

    policy = policy_with(NEW)
    alg = PPO(policy, cfg, total_iterations=10)
    stats = alg.update(filled_storage(r), 0, torch.Generator().manual_seed(0))

    _, surrogate, v_loss, entropy, kl = hand_loss(NEW, r, cfg)
    assert [stats["loss/surrogate"], stats["loss/value"], stats["loss/entropy"], stats["policy/kl"]] == pytest.approx(
        [surrogate, v_loss, entropy, kl], abs=1e-9, rel=0
    )
    grads = hand_gradient(NEW, r, cfg)
    norm = math.sqrt(sum(float((g**2).sum()) for g in grads.values()))
    if max_grad_norm < norm:
        assert norm > 2 * max_grad_norm  # clipping really acts here
        expected = {n: g * max_grad_norm / (norm + 1e-6) for n, g in grads.items()}  # clip_grad_norm_'s rule
    else:
        expected = grads
    applied = {n: p.grad.numpy() for n, p in policy.named_parameters()}
    for name in grads:
        np.testing.assert_allclose(applied[name], expected[name], rtol=0, atol=1e-7, err_msg=name)
        moved = policy.get_parameter(name).detach().numpy() - np.asarray(NEW[name])
        np.testing.assert_allclose(moved, adam_first_step(expected[name], lr), rtol=0, atol=1e-9, err_msg=name)
    applied_norm = math.sqrt(sum(float((g**2).sum()) for g in applied.values()))
    assert applied_norm == pytest.approx(min(norm, max_grad_norm), rel=1e-5)  # clip_grad_norm_ divides by norm + 1e-6


# ---------------------------------------------------------------------------------- learning-rate schedules


def one_step(cfg: PPOConfig, iteration: int, total: int, kl_target: float = 0.0) -> tuple[PPO, dict, dict]:
    """One update (a single minibatch) of a fresh linear policy on a batch recorded by that same
    policy, except that the recorded means are shifted to give KL(old || new) = ``kl_target``."""
    policy = policy_with(NEW)
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    mu, sigma, v = heads(NEW, OBS)
    shift = sigma * math.sqrt(2 * kl_target)  # KL of N(mu + d, s) from N(mu, s) is d^2 / (2 s^2)
    storage = RolloutStorage(2, 2, 2, 2, 1, torch.device("cpu"))
    fill(storage, obs=OBS, critic_obs=OBS, actions=ACTIONS[..., None], log_probs=log_prob(ACTIONS, mu, sigma),
         values=v, rewards=REWARDS, dones=np.zeros((2, 2)), mean=(mu + shift)[..., None],
         std=np.full((2, 2, 1), sigma))  # fmt: skip
    storage.finish(torch.zeros(2), GAMMA, LAM, True)
    alg = PPO(policy, cfg, total_iterations=total)
    stats = alg.update(storage, iteration, torch.Generator().manual_seed(0))
    return alg, stats, before


def assert_step_size(alg: PPO, before: dict, lr: float) -> None:
    """The rate the optimizer really applied: Adam's first step moves each parameter by ~lr."""
    for name, p in alg.policy.named_parameters():
        g = p.grad.numpy()
        assert np.abs(g).min() > 1e-4, name  # every parameter has a gradient to step along
        moved = (p.detach() - before[name]).numpy()
        np.testing.assert_allclose(moved, adam_first_step(g, lr), rtol=0, atol=1e-12, err_msg=name)


@pytest.mark.parametrize(("iteration", "factor"), [(0, 1.0), (5, 0.5), (9, 0.1)], ids=["first", "mid", "last"])
def test_linear_schedule_rate_at_first_mid_and_last_iteration(float64: None, iteration: int, factor: float) -> None:
    lr0 = 2e-3
    cfg = PPOConfig(learning_rate=lr0, schedule="linear", num_epochs=1, num_minibatches=1)
    alg, stats, before = one_step(cfg, iteration, total=10)
    assert alg.learning_rate == pytest.approx(lr0 * factor, rel=1e-12)  # lr0 * (1 - it / total)
    assert stats["policy/learning_rate"] == alg.learning_rate
    assert [g["lr"] for g in alg.optimizer.param_groups] == [alg.learning_rate]
    assert_step_size(alg, before, lr0 * factor)


@pytest.mark.parametrize(
    ("kl", "factor"),
    [
        (0.045, 1 / 1.5), (0.02002, 1 / 1.5),  # above 2 x desired_kl: down
        (0.01998, 1.0), (0.01, 1.0), (0.005005, 1.0),  # within [desired/2, 2 desired]: unchanged
        (0.004995, 1.5), (0.001, 1.5),  # below desired_kl / 2: up
    ],
)  # fmt: skip
def test_adaptive_schedule_moves_the_rate_on_the_kl_thresholds_before_the_step(
    float64: None, kl: float, factor: float
) -> None:
    lr0 = 1e-3
    cfg = PPOConfig(learning_rate=lr0, schedule="adaptive", desired_kl=0.01, num_epochs=1, num_minibatches=1)
    alg, stats, before = one_step(cfg, 0, total=10, kl_target=kl)
    assert stats["policy/kl"] == pytest.approx(kl, rel=1e-9)
    assert alg.learning_rate == pytest.approx(lr0 * factor, rel=1e-12)
    assert_step_size(alg, before, lr0 * factor)  # the adapted rate is the one this minibatch used


def test_adaptive_rate_stays_within_its_bounds(float64: None) -> None:
    for lr0, kl, bound in ((1.2e-5, 0.5, 1e-5), (8e-3, 1e-4, 1e-2)):
        cfg = PPOConfig(learning_rate=lr0, schedule="adaptive", desired_kl=0.01, num_epochs=1, num_minibatches=1)
        alg, _, before = one_step(cfg, 0, total=10, kl_target=kl)
        assert alg.learning_rate == bound
        assert_step_size(alg, before, bound)
