"""Left-right symmetry: the mirror maps against MuJoCo's own mirror image of a state, the robot
files' mirror sections, and PPO's augmented minibatches."""

import dataclasses

import mujoco
import numpy as np
import pytest
import torch
from torch.distributions import Normal

from trot.sim.robot import MirrorConfig, load_robot
from trot.sim.strict import ConfigError
from trot.training.ppo.algorithm import PPO, ppo_loss
from trot.training.ppo.config import PPOConfig
from trot.training.ppo.model import ActorCritic
from trot.training.ppo.storage import Batch, RolloutStorage
from trot.training.ppo.symmetry import BatchMirror
from trot.training.symmetry import Mirror, by_name
from trot.training.tasks.velocity.env import STATE_SPEC, LocomotionEnv

REFLECT = np.array([1.0, -1.0, 1.0])  # y -> -y


def mirrored_state(env: LocomotionEnv, i: int, joints: Mirror) -> np.ndarray:
    """Env ``i``'s physics state reflected in the world's x-z plane, built from MuJoCo's conventions
    (free joint: world position, wxyz quaternion, world linear and local angular velocity) and the
    joint map under test."""
    state = env.state[i].copy()
    qpos, qvel = state[env._qpos], state[env._qvel]
    qpos[0:3] *= REFLECT
    qpos[3:7] *= [1.0, -1.0, 1.0, -1.0]  # R -> S R S
    qvel[0:3] *= REFLECT
    qvel[3:6] *= -REFLECT  # an axial vector: -S w
    adr_q, adr_v = env.index.qpos_adr, env.index.qvel_adr
    qpos[adr_q], qvel[adr_v] = joints(qpos[adr_q]), joints(qvel[adr_v])
    state[env._qpos], state[env._qvel] = qpos, qvel
    return state


@pytest.fixture(scope="module")
def two_robots() -> LocomotionEnv:
    """Env 0 in a generic state (walked with random actions, turning and sliding sideways), env 1 in
    its mirror image."""
    from trot.training.tasks.velocity.config import EnvConfig

    cfg = EnvConfig(robot="go2", num_envs=2, nthread=1)
    cfg.randomization.disable_all()
    cfg.noise.enabled = False
    env = LocomotionEnv(cfg, seed=0)
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    for _ in range(15):
        env.step(rng.normal(0.0, 0.5, (2, 12)))
    env.qvel[0, :6] += [0.3, -0.4, 0.1, 0.5, -0.7, 0.9]
    _, _, action = env.mirrors()
    env.state[1] = mirrored_state(env, 0, action)
    env.commands[0] = [0.7, 0.3, -0.6]
    env.commands[1] = [0.7, -0.3, 0.6]
    env.last_actions[0] = rng.normal(0.0, 0.5, 12)
    env.last_actions[1] = action(env.last_actions[0])
    env.dr_params[0] = rng.normal(0.0, 1.0, env.dr_params.shape[1])
    env._read_sensors_after_reset()
    yield env
    env.close()


def test_the_joint_map_mirrors_the_robot_in_mujoco(two_robots) -> None:
    """The mirrored joint angles put every body where the reflection puts it: the hips, which turn
    about the forward axis, are the joints that change sign."""
    env = two_robots
    data = mujoco.MjData(env.model)
    positions = []
    for i in range(2):
        mujoco.mj_setState(env.model, data, env.state[i], STATE_SPEC)
        mujoco.mj_kinematics(env.model, data)
        positions.append({env.model.body(b).name: data.xpos[b].copy() for b in range(1, env.model.nbody)})
    mirror = env.robot.mirror
    assert len(positions[0]) > 12
    for name, pos in positions[0].items():
        np.testing.assert_allclose(positions[1][mirror.image(name)], pos * REFLECT, atol=1e-9, err_msg=name)


def test_observation_maps_match_the_mirrored_robots_sensors(two_robots) -> None:
    """What the robot in the mirrored state observes is the mirror map of what the first observes:
    gyro, gravity, command, joints and last action for the actor; base velocity, foot contacts and
    the model parameters for the critic."""
    env = two_robots
    env.dr_params[1] = 0.0
    obs_map, critic_map, _ = env.mirrors()
    obs, critic = env._observe()
    assert np.abs(obs[0]).min() < np.abs(obs[0]).max()  # (a generic state: nothing all zero)
    np.testing.assert_allclose(obs[1], obs_map(obs[0]), atol=2e-5)
    n_obs = obs.shape[1]
    n_params = env.dr_params.shape[1]
    np.testing.assert_allclose(critic[1, : critic.shape[1] - n_params], critic_map(critic[0])[: -n_params], atol=2e-5)
    assert env._foot_contact[0].any() and not env._foot_contact[0].all(), "a state with some feet down"
    params = critic_map(critic[0])[-n_params:]
    from trot.sim.randomization import PARAMS

    y = PARAMS.index("com_offset_y")
    np.testing.assert_allclose(params[y], -env.dr_params[0, y])
    np.testing.assert_allclose(np.delete(params, y), np.delete(env.dr_params[0], y), rtol=1e-6)
    assert n_obs == env.contract.num_obs


def test_maps_are_their_own_inverse(two_robots) -> None:
    for m in two_robots.mirrors():
        x = np.random.default_rng(0).normal(size=(3, m.size))
        np.testing.assert_array_equal(m(m(x)), x)
        assert not np.array_equal(m(x), x)


@pytest.mark.parametrize("robot", ["go2", "go1"])
def test_shipped_robots_have_consistent_mirror_sections(robot) -> None:
    config = load_robot(robot)
    config.mirror.check(config)
    names = config.joint_names
    m = by_name(names, config.mirror)
    assert [names[k] for k in m.index[:3]] == ["FR_hip_joint", "FR_thigh_joint", "FR_calf_joint"]
    assert m.sign.tolist().count(-1.0) == 4


def test_mirror_section_errors_name_the_part() -> None:
    robot = load_robot("go2")
    wrong = [
        (MirrorConfig(swap={"FL_": "FX_"}), "mirror images of joints"),
        (MirrorConfig(swap={"FL_": "FR_", "RL_": "RR_"}, negate=("FL_hip_joint",)), "FR_hip_joint"),
        (MirrorConfig(swap={"FL_": "FR_", "RL_": "RR_"}, negate=("FL_hip",)), "not joints"),
    ]
    for mirror, message in wrong:
        with pytest.raises(ConfigError, match=message):
            mirror.check(robot)
    lopsided = dict(robot.joints)
    lopsided["FL_thigh_joint"] = dataclasses.replace(lopsided["FL_thigh_joint"], default=1.0)
    with pytest.raises(ConfigError, match="FL_thigh_joint's default"):
        robot.mirror.check(dataclasses.replace(robot, joints=lopsided))
    with pytest.raises(ConfigError, match="no 'mirror' section"):
        LocomotionEnv.mirrors(type("E", (), {"robot": dataclasses.replace(robot, mirror=None)})())


def _batch(n: int, mirror: BatchMirror) -> Batch:
    g = torch.Generator().manual_seed(0)
    obs, critic = torch.randn(n, 45, generator=g), torch.randn(n, 67, generator=g)
    mean, std = torch.randn(n, 12, generator=g), torch.rand(12, generator=g).repeat(n, 1) + 0.3
    actions = mean + std * torch.randn(n, 12, generator=g)
    log_probs = Normal(mean, std).log_prob(actions).sum(-1)
    values, adv, ret = (torch.randn(n, generator=g) for _ in range(3))
    return Batch(obs, critic, actions, log_probs, values, adv, ret, mean, std)


def test_augmented_batch_keeps_each_mirrored_sample_as_likely(two_robots) -> None:
    mirror = BatchMirror(*two_robots.mirrors(), torch.device("cpu"))
    b = mirror.augment(_batch(8, mirror))
    assert b.obs.shape == (16, 45) and b.critic_obs.shape[0] == 16
    recomputed = Normal(b.mean, b.std).log_prob(b.actions).sum(-1)
    torch.testing.assert_close(recomputed, b.log_probs)
    torch.testing.assert_close(b.obs[8:], mirror.obs(b.obs[:8]))
    torch.testing.assert_close(b.advantages[8:], b.advantages[:8])


def test_step_size_follows_the_collected_samples_only(two_robots) -> None:
    """An asymmetric policy, unchanged since collection: its KL to the collecting policy is zero, and
    so is what the adaptive step size sees, although the mirrored half's "old policy" (the mirror of
    the collecting one) is far from it. Counting that half cut the learning rate to its floor."""
    mirror = BatchMirror(*two_robots.mirrors(), torch.device("cpu"))
    torch.manual_seed(0)
    policy = ActorCritic(45, 67, 12, (64,), (64,), "elu", 1.0, normalize_obs=False)
    with torch.no_grad():
        policy.actor[-1].weight.normal_(0.0, 0.3)
    b = _batch(64, mirror)
    with torch.no_grad():
        b.mean[:], b.std[:] = policy.action_mean(b.obs), policy.log_std.exp()
        b.log_probs[:] = Normal(b.mean, b.std).log_prob(b.actions).sum(-1)
        augmented = mirror.augment(b)
        mean, std, values = policy(augmented.obs, augmented.critic_obs)
    _, parts = ppo_loss(mean, std, values, augmented, PPOConfig(symmetry_augmentation=True), mirror.action)
    assert parts[4].abs() < 1e-6
    whole = (Normal(augmented.mean, augmented.std).log_prob(augmented.actions).sum(-1) -
             Normal(mean, std).log_prob(augmented.actions).sum(-1)).abs()  # fmt: skip
    assert whole[64:].mean() > 0.1  # (the mirrored half's old policy is not the current one)


def test_mirror_loss_makes_the_actor_symmetric(two_robots) -> None:
    """With a large mirror-loss weight and no advantage to chase, updates drive the actor towards
    mirror-equivariance: its asymmetry falls to a quarter."""
    torch.manual_seed(0)
    obs_map, critic_map, action_map = two_robots.mirrors()
    mirror = BatchMirror(obs_map, critic_map, action_map, torch.device("cpu"))
    policy = ActorCritic(45, 67, 12, (64, 64), (64, 64), "elu", 1.0, normalize_obs=False)
    with torch.no_grad():  # an actor far from symmetric (the initial output layer is near zero)
        policy.actor[-1].weight.normal_(0.0, 0.3)
    cfg = PPOConfig(symmetry_augmentation=True, mirror_loss_coef=50.0, num_epochs=8, num_minibatches=1,
                    entropy_coef=0.0, value_loss_coef=0.0, learning_rate=1e-3, schedule="fixed")  # fmt: skip
    alg = PPO(policy, cfg, total_iterations=100, mirror=mirror)
    probe = torch.randn(256, 45)

    def asymmetry() -> float:
        with torch.no_grad():
            gap = policy.action_mean(mirror.obs(probe)) - mirror.action(policy.action_mean(probe))
            return gap.abs().mean().item()

    storage = RolloutStorage(4, 64, 45, 67, 12, torch.device("cpu"))
    before = asymmetry()
    for _ in range(20):
        b = _batch(256, mirror)
        with torch.no_grad():  # samples of the current policy, as a rollout would give
            b.mean[:], b.std[:] = policy.action_mean(b.obs), policy.log_std.exp()
            b.actions[:] = b.mean + b.std * torch.randn_like(b.mean)
            b.log_probs[:] = Normal(b.mean, b.std).log_prob(b.actions).sum(-1)
        b.advantages.zero_()
        for name in ("obs", "critic_obs", "actions", "log_probs", "values", "advantages", "returns", "mean", "std"):
            setattr(storage, name, getattr(b, name).reshape(4, 64, *getattr(b, name).shape[1:]))
        stats = alg.update(storage, 0, torch.Generator().manual_seed(0))
    assert stats["loss/mirror"] >= 0.0
    assert asymmetry() < before / 4, (before, asymmetry())


def test_symmetry_needs_a_task_with_a_mirror() -> None:
    policy = ActorCritic(4, 4, 2, (8,), (8,), "elu", 1.0, normalize_obs=False)
    with pytest.raises(ValueError, match="no mirror maps"):
        PPO(policy, PPOConfig(symmetry_augmentation=True), 10)
    with pytest.raises(ValueError, match=r"needs ppo\.symmetry_augmentation"):
        PPO(policy, PPOConfig(mirror_loss_coef=1.0), 10)
