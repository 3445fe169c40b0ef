"""The compiled PPO paths (rollout step, minibatch step) against eager PyTorch, and the fallback."""

import copy
import warnings

import numpy as np
import pytest
import torch

from trot.training.ppo.algorithm import PPO, PPOConfig, compiled
from trot.training.ppo.model import ActorCritic
from trot.training.ppo.storage import RolloutStorage
from trot.training.ppo.symmetry import BatchMirror
from trot.training.symmetry import Mirror

STEPS, ENVS, OBS, ACTIONS = 16, 8, 11, 3


def small_policy() -> ActorCritic:
    torch.manual_seed(0)
    return ActorCritic(OBS, OBS, ACTIONS, (32, 32), (32, 32), "tanh", 1.0, True)


def filled_storage(policy: ActorCritic) -> RolloutStorage:
    storage = RolloutStorage(STEPS, ENVS, OBS, OBS, ACTIONS, torch.device("cpu"))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(STEPS):
            obs = 3.0 * torch.randn(ENVS, OBS, generator=gen)
            actions, log_probs, values, mean, std = policy.act(obs, obs, torch.randn(ENVS, ACTIONS, generator=gen))
            storage.add(obs=obs, critic_obs=obs, actions=actions, log_probs=log_probs, values=values,
                        rewards=torch.randn(ENVS, generator=gen), dones=(torch.rand(ENVS, generator=gen) < 0.1).float(),
                        mean=mean, std=std)  # fmt: skip
        storage.finish(policy.value(obs), 0.99, 0.95, True)
    policy.update_normalizers(storage.obs.reshape(-1, OBS), storage.critic_obs.reshape(-1, OBS))
    return storage


def swap_and_negate(size: int) -> Mirror:
    """A left-right map for the test's sizes: swap the first two entries, negate the third."""
    index, sign = np.arange(size), np.ones(size)
    index[:2], sign[2] = [1, 0], -1.0
    return Mirror(index, sign)


# adaptive: the locomotion tasks' path (symmetry augmentation, here with a mirror loss too); linear:
# the Gymnasium tasks'.
@pytest.mark.parametrize("schedule, symmetric", [("adaptive", True), ("linear", False)])
def test_compiled_minibatch_steps_match_eager(schedule: str, symmetric: bool) -> None:
    eager_policy = small_policy()
    storage = filled_storage(eager_policy)
    compiled_policy = copy.deepcopy(eager_policy)
    cfg = PPOConfig(learning_rate=1e-3, schedule=schedule, num_epochs=3, num_minibatches=4, max_grad_norm=0.5,
                    symmetry_augmentation=symmetric, mirror_loss_coef=0.5 if symmetric else 0.0)  # fmt: skip
    maps = (swap_and_negate(OBS), swap_and_negate(OBS), swap_and_negate(ACTIONS))
    mirror = BatchMirror(*maps, torch.device("cpu")) if symmetric else None
    algs = {"eager": PPO(eager_policy, cfg, 10, mirror=mirror),
            "compiled": PPO(compiled_policy, cfg, 10, compile=True, mirror=mirror)}  # fmt: skip
    stats = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to eager would warn: this must really be compiled
        for name, alg in algs.items():
            stats[name] = [alg.update(storage, it, torch.Generator().manual_seed(it)) for it in range(2)]
    moved = 0.0
    for (name, a), b in zip(eager_policy.named_parameters(), compiled_policy.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
        moved = max(moved, float((a - small_policy().get_parameter(name)).detach().abs().max()))
    assert moved > 1e-3  # the updates did something
    for a, b in zip(stats["eager"], stats["compiled"], strict=True):
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-3, abs=1e-6), key
    # the optimizer's state is torch's Adam state either way: checkpoints do not depend on compile
    eager_state, compiled_state = algs["eager"].optimizer.state_dict(), algs["compiled"].optimizer.state_dict()
    for i, s in eager_state["state"].items():
        assert float(compiled_state["state"][i]["step"]) == float(s["step"]) == 2 * 3 * 4
        torch.testing.assert_close(compiled_state["state"][i]["exp_avg_sq"], s["exp_avg_sq"], rtol=1e-3, atol=1e-9)


def test_compiled_rollout_step_matches_eager_and_follows_normalizer_updates() -> None:
    policy = small_policy()
    act = compiled(policy.act)
    obs, noise = 2.0 * torch.randn(ENVS, OBS), torch.randn(ENVS, ACTIONS)
    with torch.no_grad():
        for round_ in range(2):
            fast, slow = act(obs, obs, noise), policy.act(obs, obs, noise)
            for a, b in zip(fast, slow, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"round {round_}")
            if round_ == 0:
                first_values = slow[2].clone()
            policy.update_normalizers(5.0 + obs, 5.0 + obs)  # buffers change in place between iterations
        assert (policy.act(obs, obs, noise)[2] - first_values).abs().max() > 1e-2  # the update mattered


def test_compile_failure_falls_back_to_eager_with_a_warning() -> None:
    import torch._inductor.config as inductor

    policy = small_policy()
    obs, noise = torch.randn(ENVS, OBS), torch.randn(ENVS, ACTIONS)

    def rollout_step(o: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return policy.act(o * 1.5, o, n)  # a function of its own: no cached compilation to reuse

    with inductor.patch({"cpp.cxx": ("no-such-c++-compiler",), "force_disable_caches": True}):
        act = compiled(rollout_step)
        with pytest.warns(UserWarning, match="torch.compile failed, continuing in eager"):
            out = act(obs, noise)
    torch.testing.assert_close(out[0], rollout_step(obs, noise)[0])
