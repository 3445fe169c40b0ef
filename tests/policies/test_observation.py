import mujoco
import numpy as np
import pytest

from trot.policies.observation import ActionMapper, ObservationBuilder, joint_index, projected_gravity
from trot.policies.terms import OBS_TERMS
from trot.training.tasks.velocity.env import LocomotionEnv


def test_projected_gravity_matches_mujoco_rotation() -> None:
    rng = np.random.default_rng(0)
    quats = rng.normal(size=(200, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    ours = projected_gravity(quats)
    for q, g in zip(quats, ours, strict=True):
        inv = np.zeros(4)
        mujoco.mju_negQuat(inv, q)
        ref = np.zeros(3)
        mujoco.mju_rotVecQuat(ref, np.array([0.0, 0.0, -1.0]), inv)
        np.testing.assert_allclose(g, ref, atol=1e-12)


def test_projected_gravity_is_its_definition() -> None:
    """The term the contract defines (R(q)^T world_vector, q in the stated component order) is what
    projected_gravity computes; the rotation is MuJoCo's."""
    definition = OBS_TERMS["projected_gravity"]
    assert definition.quaternion_order == ("w", "x", "y", "z")  # MuJoCo's order, and projected_gravity's
    rng = np.random.default_rng(5)
    quats = rng.normal(size=(100, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    for q, g in zip(quats, projected_gravity(quats), strict=True):
        rotation = np.zeros(9)
        mujoco.mju_quat2Mat(rotation, q)
        np.testing.assert_allclose(g, rotation.reshape(3, 3).T @ np.array(definition.world_vector), atol=1e-12)


def test_projected_gravity_is_the_textbook_expression_bit_for_bit() -> None:
    """The quadratic-form evaluation changes no bit of the usual formula, in float64 and float32,
    and the builder's gravity term is that function times its scale."""
    rng = np.random.default_rng(1)
    for dtype in (np.float64, np.float32):
        q = rng.normal(size=(4096, 4)).astype(dtype)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        w, x, y, z = q.T
        textbook = np.stack([2 * (w * y - x * z), -2 * (y * z + w * x), 2 * (x * x + y * y) - 1], axis=1)
        ours = projected_gravity(q)
        assert ours.dtype == dtype
        np.testing.assert_array_equal(ours, textbook)


def test_builder_gravity_term_is_projected_gravity(quiet_cfg) -> None:
    env = LocomotionEnv(quiet_cfg(num_envs=1))
    c = env.contract
    env.close()
    rng = np.random.default_rng(2)
    q = rng.normal(size=(256, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    builder = ObservationBuilder(c, batch_size=256)
    zeros3, zeros12, pose = np.zeros((256, 3)), np.zeros((256, 12)), np.tile(c.default_joint_pos, (256, 1))
    obs = builder.build(base_ang_vel=zeros3, base_quat_wxyz=q, command=zeros3,
                        joint_pos=pose, joint_vel=zeros12, last_action=zeros12)  # fmt: skip
    term = next(t for t in c.obs_terms if t.name == "projected_gravity")
    expected = (projected_gravity(q) * term.scale).astype(np.float32)
    np.testing.assert_array_equal(obs[:, c.term_slices()["projected_gravity"]], expected)


def test_env_observation_equals_hand_computed_reference(quiet_cfg) -> None:
    env = LocomotionEnv(quiet_cfg(num_envs=2))
    env.reset(seed=0)
    c = env.contract
    roll = np.deg2rad(30.0)
    joint_offsets = np.linspace(-0.2, 0.2, 12)
    joint_vel = np.linspace(-3.0, 3.0, 12)
    base_ang_vel = np.array([0.4, -0.2, 0.8])
    qpos = env.qpos[1].copy()
    qpos[2] = 0.5  # in the air: nothing touches
    qpos[3:7] = [np.cos(roll / 2), np.sin(roll / 2), 0.0, 0.0]
    qpos[env.index.qpos_adr] = np.asarray(c.default_joint_pos) + joint_offsets
    qvel = np.zeros(env.model.nv)
    qvel[3:6] = base_ang_vel  # free-joint angular velocity is in the body frame
    qvel[env.index.qvel_adr] = joint_vel
    env.state[1, env._qpos] = qpos
    env.state[1, env._qvel] = qvel
    env._read_sensors_after_reset(np.array([1]))
    env.commands[1] = [0.5, -0.3, 0.7]
    env.last_actions[1] = np.arange(12) / 10.0
    obs, critic = env._observe()

    expected = np.concatenate(
        [
            0.25 * base_ang_vel,
            [0.0, -np.sin(roll), -np.cos(roll)],
            [0.5, -0.3, 0.7],
            joint_offsets,
            0.05 * joint_vel,
            np.arange(12) / 10.0,
        ]
    )
    np.testing.assert_allclose(obs[1], expected, atol=1e-5)
    np.testing.assert_allclose(critic[1, : c.num_obs], expected, atol=1e-5)
    env.close()


def test_builder_reuses_its_buffer_and_mapper_clips(quiet_cfg) -> None:
    env = LocomotionEnv(quiet_cfg(num_envs=1))
    c = env.contract
    builder = ObservationBuilder(c, batch_size=1)
    kwargs = dict(
        base_ang_vel=np.zeros((1, 3)),
        base_quat_wxyz=np.array([[1.0, 0, 0, 0]]),
        command=np.zeros((1, 3)),
        joint_pos=np.array([c.default_joint_pos]),
        joint_vel=np.zeros((1, 12)),
        last_action=np.zeros((1, 12)),
    )
    first = builder.build(**kwargs)
    second = builder.build(**kwargs)
    assert first is second and first.dtype == np.float32
    np.testing.assert_allclose(first[0, 3:6], [0, 0, -1])
    mapper = ActionMapper(c)
    targets = mapper(np.full((1, 12), 1e9))
    np.testing.assert_allclose(targets[0], np.asarray(c.default_joint_pos) + c.action_scale * c.action_clip)
    env.close()


def test_joint_index_reorders_by_name_and_reports_missing(quiet_cfg) -> None:
    env = LocomotionEnv(quiet_cfg(num_envs=1))
    c = env.contract
    shuffled = list(reversed(c.joint_names))
    idx = joint_index(shuffled, c)
    assert [shuffled[i] for i in idx] == list(c.joint_names)
    with pytest.raises(KeyError, match="FL_hip_joint"):
        joint_index(shuffled[:-1], c)
    with pytest.raises(ValueError, match=r"\['RR_calf_joint'\] more than once"):
        joint_index([*shuffled[:-1], "RR_calf_joint"], c)
    env.close()


def test_actions_of_inverts_the_mapping_inside_the_clip() -> None:
    from trot.policies.observation import ActionMapper
    from trot.policies.runtime import PolicyRuntime

    mapper = ActionMapper(PolicyRuntime("go2_flat").contract)
    action = np.linspace(-3.0, 3.0, 12)
    np.testing.assert_allclose(mapper.actions_of(mapper(action)[0].copy()), action, atol=1e-12)
