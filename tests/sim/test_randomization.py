"""Each randomization, switched on alone, gives different parameters to different environments
AND makes the same action sequence produce different trajectories."""

import numpy as np
import pytest

from trot.sim import randomization
from trot.sim.randomization import RandomizationConfig, Range
from trot.training.tasks.velocity.env import LocomotionEnv

N = 6
# Which model field (or env array) each randomization writes, to check the parameter itself.
MODEL_FIELD = {
    "friction": lambda env, m: m.geom_friction[env.index.ground_geoms[0], 0],
    "added_base_mass": lambda env, m: m.body_mass[env.index.base_body],
    "com_offset": lambda env, m: tuple(m.body_ipos[env.index.base_body]),
    "motor_strength": lambda env, m: tuple(m.actuator_forcerange[:, 1]),
    "kp_scale": lambda env, m: m.actuator_gainprm[0, 0],
    "kd_scale": lambda env, m: m.actuator_biasprm[0, 2],
    "joint_damping_scale": lambda env, m: m.dof_damping[6],
    "armature_scale": lambda env, m: m.dof_armature[6],
    "frictionloss_scale": lambda env, m: m.dof_frictionloss[6],
}
# Ranges wide enough that the effect on a short trajectory is unmistakable.
WIDE = {
    "friction": Range(0.05, 2.0),
    "added_base_mass": Range(-2.0, 4.0),
    "com_offset": Range(-0.08, 0.08),
    "motor_strength": Range(0.3, 1.5),
    "kp_scale": Range(0.3, 1.5),
    "kd_scale": Range(0.2, 3.0),
    "action_delay_steps": Range(0, 3),
    "action_delay_substeps": Range(0, 4),
    "joint_damping_scale": Range(0.0, 20.0),
    "armature_scale": Range(0.0, 20.0),
    "frictionloss_scale": Range(0.0, 5.0),
    "push_interval_s": Range(0.1, 0.3),
    "push_velocity": Range(0.2, 1.0),
    "init_joint_pos": Range(-0.2, 0.2),
    "init_base_vel": Range(-0.5, 0.5),
}


def _env_with_only(quiet_cfg, name: str) -> LocomotionEnv:
    cfg = quiet_cfg(num_envs=N)
    cfg.commands.zero_probability = 1.0
    setattr(cfg.randomization, name, WIDE[name])
    if name == "push_velocity":  # pushes need both interval and strength
        cfg.randomization.push_interval_s = WIDE["push_interval_s"]
    return LocomotionEnv(cfg, seed=11)


def _trajectory(env: LocomotionEnv, steps: int = 40) -> np.ndarray:
    t = np.arange(steps)[:, None] * env.dt
    phase = np.sin(2 * np.pi * 2.0 * t + np.arange(12)[None, :])  # same open-loop actions for all envs
    out = []
    for k in range(steps):
        env.step(np.repeat(phase[k][None, :], env.num_envs, axis=0))
        out.append(env.qpos.copy())
    return np.array(out)


def test_every_randomization_has_a_test() -> None:
    assert set(RandomizationConfig().names()) == set(WIDE)


def test_all_off_gives_identical_envs(quiet_cfg) -> None:
    env = LocomotionEnv(quiet_cfg(num_envs=N), seed=11)
    env.reset()
    traj = _trajectory(env)
    assert np.allclose(traj, traj[:, :1], atol=1e-9)
    env.close()


@pytest.mark.parametrize("name", [n for n in WIDE if n != "push_interval_s"])
def test_randomization_changes_parameters_and_trajectories(quiet_cfg, name: str) -> None:
    env = _env_with_only(quiet_cfg, name)
    env.reset()
    if name in MODEL_FIELD:
        values = {MODEL_FIELD[name](env, m) for m in env.models}
        assert len(values) == N, f"{name}: every env should have its own value, got {values}"
    params = [p for p in randomization.PARAMS if p.startswith(name.replace("_scale", ""))]
    if params:
        column = env.dr_params[:, randomization.PARAMS.index(params[0])]
        assert len(np.unique(column)) > 1, f"{name}: all envs drew the same value"
    traj = _trajectory(env)
    spread = np.abs(traj[-1] - traj[-1, :1]).max()
    assert spread > 1e-3, f"{name}: trajectories barely differ between envs (max diff {spread:.2e})"
    env.close()


def test_observation_noise_differs_from_clean_observation(quiet_cfg) -> None:
    cfg = quiet_cfg(num_envs=N)
    cfg.noise.enabled = True
    env = LocomotionEnv(cfg, seed=0)
    obs, info = env.reset()
    clean = info["critic_obs"][:, : env.contract.num_obs]
    diff = obs - clean
    sl = env.contract.term_slices()
    assert np.abs(diff[:, sl["joint_vel"]]).max() > 0.01  # 1.5 rad/s * 0.05 scale
    assert np.abs(diff[:, sl["joint_vel"]]).max() <= 1.5 * 0.05 + 1e-6
    np.testing.assert_array_equal(diff[:, sl["command"]], 0.0)
    env.close()
