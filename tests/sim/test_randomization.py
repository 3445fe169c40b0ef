"""Each randomization, switched on alone, gives different parameters to different environments
AND makes the same action sequence produce different trajectories."""

import mujoco
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
    "impratio": lambda env, m: m.opt.impratio,
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
    "elliptic_cone": Range(0, 1),
    "impratio": Range(1.0, 200.0),
}


def _env_with_only(quiet_cfg, name: str) -> LocomotionEnv:
    cfg = quiet_cfg(num_envs=N)
    cfg.commands.zero_probability = 1.0
    setattr(cfg.randomization, name, WIDE[name])
    if name == "push_velocity":  # pushes need both interval and strength
        cfg.randomization.push_interval_s = WIDE["push_interval_s"]
    if name == "impratio":  # (the elliptic cone's: every environment on one)
        cfg.randomization.elliptic_cone = Range(1, 1)
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


# ---------------------------------------------------------------- draws, fields and latency, measured

# Each drawn parameter's range in RandomizationConfig, and its value with the randomization off.
DRAWN = {
    "friction": ("friction", 1.0),
    "added_base_mass": ("added_base_mass", 0.0),
    "com_offset_x": ("com_offset", 0.0),
    "com_offset_y": ("com_offset", 0.0),
    "com_offset_z": ("com_offset", 0.0),
    "motor_strength": ("motor_strength", 1.0),
    "kp_scale": ("kp_scale", 1.0),
    "kd_scale": ("kd_scale", 1.0),
    "action_delay_steps": ("action_delay_steps", 0.0),
    "action_delay_substeps": ("action_delay_substeps", 0.0),
    "joint_damping_scale": ("joint_damping_scale", 1.0),
    "armature_scale": ("armature_scale", 1.0),
    "frictionloss_scale": ("frictionloss_scale", 1.0),
    "elliptic_cone": ("elliptic_cone", 0.0),
    "impratio": ("impratio", 1.0),
}
INTEGER = ("action_delay_steps", "action_delay_substeps", "elliptic_cone")


def test_every_draw_lies_in_its_range_and_fills_it() -> None:
    """20 000 draws of the shipped ranges: inside [low, high], spread to within 2 % of both ends (a
    narrower or shifted range fails), the delays whole numbers taking every value of their range."""
    assert set(DRAWN) == set(randomization.PARAMS)
    cfg = RandomizationConfig()
    draws = randomization.sample(np.random.default_rng(3), cfg, 20_000)
    for column, param in enumerate(randomization.PARAMS):
        r = getattr(cfg, DRAWN[param][0])
        x = draws[:, column]
        assert r.low <= x.min() and x.max() <= r.high, (param, x.min(), x.max(), r)
        if param in INTEGER:
            assert set(np.unique(x)) == set(np.arange(int(r.low), int(r.high) + 1, dtype=float)), param
        else:
            width = r.high - r.low
            assert x.min() < r.low + 0.02 * width and x.max() > r.high - 0.02 * width, (param, x.min(), x.max())
            assert abs(x.mean() - (r.low + r.high) / 2) < 0.02 * width, (param, x.mean())  # uniform, not skewed
    off = randomization.sample(np.random.default_rng(3), RandomizationConfig().disable_all(), 5)
    np.testing.assert_array_equal(off, np.tile([DRAWN[p][1] for p in randomization.PARAMS], (5, 1)))


def test_each_env_model_equals_nominal_times_its_drawn_parameters(quiet_cfg) -> None:
    """After a reset with every randomization on, each environment's model holds the base model's value
    x (or +) the parameters it reports in dr_params (the critic's privileged observation), field by
    field, computed here from the MJCF model; every other field is the base model's."""
    cfg = quiet_cfg(num_envs=N)
    cfg.randomization = RandomizationConfig()
    env = LocomotionEnv(cfg, seed=5)
    env.reset()
    base, idx = env.model, env.index
    assert len(idx.ground_geoms) and base.nu == 12
    for i, m in enumerate(env.models):
        p = dict(zip(randomization.PARAMS, env.dr_params[i], strict=True))
        for name, (range_name, _) in DRAWN.items():
            r = getattr(cfg.randomization, range_name)
            assert r.low <= p[name] <= r.high, (name, p[name])
        s, base_body = p["motor_strength"], idx.base_body
        com = [p["com_offset_x"], p["com_offset_y"], p["com_offset_z"]]
        kp = base.actuator_gainprm[:, 0] * p["kp_scale"] * s
        expected = {
            "geom_friction[:, 0]": (m.geom_friction[:, 0], base.geom_friction[:, 0] * p["friction"]),
            "geom_friction[:, 1:]": (m.geom_friction[:, 1:], base.geom_friction[:, 1:]),
            "body_mass": (m.body_mass, base.body_mass + p["added_base_mass"] * (np.arange(base.nbody) == base_body)),
            "body_ipos": (m.body_ipos, base.body_ipos + np.outer(np.arange(base.nbody) == base_body, com)),
            "actuator_gainprm kp": (m.actuator_gainprm[:, 0], kp),
            "actuator_biasprm -kp": (m.actuator_biasprm[:, 1], -kp),
            "actuator_biasprm -kd": (m.actuator_biasprm[:, 2], base.actuator_biasprm[:, 2] * p["kd_scale"] * s),
            "actuator_forcerange": (m.actuator_forcerange, base.actuator_forcerange * s),
            "dof_damping": (m.dof_damping, base.dof_damping * p["joint_damping_scale"]),
            "dof_armature": (m.dof_armature, base.dof_armature * p["armature_scale"]),
            "dof_frictionloss": (m.dof_frictionloss, base.dof_frictionloss * p["frictionloss_scale"]),
        }  # fmt: skip
        elliptic = bool(p["elliptic_cone"])  # the elliptic cone with its drawn impratio, or the model's own
        expected["opt cone, impratio, iterations"] = (
            [int(m.opt.cone), m.opt.impratio, m.opt.iterations, m.opt.ls_iterations],
            [int(mujoco.mjtCone.mjCONE_ELLIPTIC), p["impratio"], 10, 20] if elliptic
            else [int(base.opt.cone), base.opt.impratio, base.opt.iterations, base.opt.ls_iterations],
        )  # fmt: skip
        for field_name, (actual, want) in expected.items():
            np.testing.assert_allclose(actual, want, rtol=1e-12, atol=1e-15, err_msg=f"env {i}: {field_name}")
        # the fields scaled are not zero in the MJCF (a scale on zeros would be no randomization at all)
        for nominal in (base.actuator_gainprm[:, 0], base.actuator_biasprm[:, 2], base.actuator_forcerange[:, 1],
                        base.dof_damping[6:], base.dof_armature[6:], base.dof_frictionloss[6:]):  # fmt: skip
            assert np.all(np.abs(nominal) > 0)
    env.close()


@pytest.mark.parametrize(("steps", "substeps"), [(0, 0), (1, 0), (0, 2), (1, 2), (2, 4)])
def test_a_step_in_the_action_reaches_the_actuators_exactly_the_configured_delay_later(
    quiet_cfg, steps: int, substeps: int
) -> None:
    """Two identical environments, one given a step in its action at control step K: the first physics
    sub-step at which their states differ is (K + delay steps) x decimation + delay sub-steps."""
    cfg = quiet_cfg(num_envs=2)
    cfg.commands.zero_probability = 1.0
    cfg.randomization.action_delay_steps = Range(steps, steps)
    cfg.randomization.action_delay_substeps = Range(substeps, substeps)
    env = LocomotionEnv(cfg, seed=0)
    env.reset()
    decimation, k = env.decimation, 3
    assert substeps < decimation
    assert np.all(env.dr_params[:, randomization.PARAMS.index("action_delay_steps")] == steps)
    states = []
    for step in range(k + steps + 2):
        actions = np.zeros((2, 12))
        if step >= k:
            actions[0] = 0.5
        env.step(actions)
        states.append(env._state_out.copy())  # [env, sub-step, state]: the state after each physics sub-step
    per_substep = np.concatenate(states, axis=1)
    differs = np.abs(per_substep[0] - per_substep[1]).max(axis=1) > 0
    first = int(np.argmax(differs))
    assert differs.any() and first == (k + steps) * decimation + substeps, (first, np.flatnonzero(differs)[:3])
    assert np.abs(per_substep[0, first] - per_substep[1, first]).max() > 1e-6  # the step itself, not rounding
    env.close()


@pytest.mark.parametrize(("steps", "substeps"), [(0, 0), (1, 0), (0, 2), (1, 2), (2, 4)])
def test_each_sub_step_drives_the_actuators_with_the_target_of_the_action_that_delay_earlier(
    quiet_cfg, steps: int, substeps: int
) -> None:
    """The target each actuator worked to at every physics sub-step, read back from its force sensor
    (force = kp x (target - q) - kd x qdot, with the state the sub-step started from), is the
    target of the action taken `steps` control steps earlier from sub-step `substeps` of the control
    step on, and of the one before it until then: a pulse of actions shows each boundary."""
    cfg = quiet_cfg(num_envs=1)
    cfg.commands.zero_probability = 1.0
    cfg.randomization.action_delay_steps = Range(steps, steps)
    cfg.randomization.action_delay_substeps = Range(substeps, substeps)
    env = LocomotionEnv(cfg, seed=0)
    env.reset()
    m, dec = env.models[0], env.decimation
    actions = np.zeros((8, 12))
    actions[2], actions[3], actions[4] = 0.4, -0.3, 0.2  # (distinct consecutive actions)
    before, states, sensors = env.state[0].copy(), [], []
    for a in actions:
        env.step(a[None, :])
        states.append(env._state_out[0].copy())  # [sub-step, state]: the state after each physics sub-step
        sensors.append(env._sensor_out[0].copy())
    states, sensors = np.concatenate(states), np.concatenate(sensors)
    started_from = np.vstack([before, states[:-1]])  # the state each sub-step started from
    act = env.index.actuator_ids
    joint = m.actuator_trnid[act, 0]
    adr = [int(m.sensor_adr[(m.sensor_type == mujoco.mjtSensor.mjSENS_ACTUATORFRC) & (m.sensor_objid == a)][0])
           for a in act]  # fmt: skip
    q = started_from[:, env._qpos][:, m.jnt_qposadr[joint]]
    qd = started_from[:, env._qvel][:, m.jnt_dofadr[joint]]
    force = sensors[:, adr]
    assert np.all(np.abs(force) < m.actuator_forcerange[act, 1]), "a clamped force would hide the target"
    target = (force - m.actuator_biasprm[act, 1] * q - m.actuator_biasprm[act, 2] * qd) / m.actuator_gainprm[act, 0]
    expected = []
    for g in range(len(actions) * dec):
        source = g // dec - steps - (g % dec < substeps)  # the control step whose action is in force
        a = actions[source] if source >= 0 else np.zeros(12)
        expected.append(env.action_mapper.targets_of(a, out=np.empty(12)))
    np.testing.assert_allclose(target, np.array(expected), atol=1e-6)
    env.close()
