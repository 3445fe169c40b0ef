"""Batched, domain-randomized velocity tracking for a legged robot, stepped by ``mujoco.rollout``.

Per control step the environment does one C call that advances every environment by
``decimation`` physics steps across all cores (one randomized ``MjModel`` per environment), then
computes observations, rewards and resets with a few dozen vectorized numpy operations. The
observation is built by :class:`trot.policies.observation.ObservationBuilder` from the contract this
environment publishes: the same code the robot runs.

Resets happen in the same step (gymnasium's SAME_STEP autoreset): for environments that ended,
``info["final_obs"]`` / ``info["final_critic_obs"]`` hold the last observation of the finished
episode, and ``info["time_outs"]`` says which endings were time-outs (to bootstrap) rather than
falls.
"""

from __future__ import annotations

import copy
import os

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from mujoco import rollout

from trot.policies.contract import Contract, ObsTerm
from trot.policies.observation import ActionMapper, ObservationBuilder, projected_gravity
from trot.sim import randomization
from trot.sim.robot import RobotConfig, load_robot
from trot.sim.strict import ConfigError
from trot.sim.world import compile_model, home_qpos
from trot.training import symmetry
from trot.training.symmetry import Mirror
from trot.training.tasks.velocity.config import EnvConfig
from trot.training.tasks.velocity.rewards import StepQuantities, compute_rewards

STATE_SPEC = mujoco.mjtState.mjSTATE_FULLPHYSICS
CTRL_SPEC = mujoco.mjtState.mjSTATE_CTRL.value


def make_contract(robot: RobotConfig, cfg: EnvConfig, joint_range: np.ndarray) -> Contract:
    """The deployment contract of this task on this robot."""
    o = cfg.observation
    joints = list(robot.joints.values())
    n = len(joints)
    return Contract(
        robot=robot.name,
        joint_names=robot.joint_names,
        default_joint_pos=tuple(j.default for j in joints),
        action_scale=robot.action_scale,
        action_clip=o.action_clip,
        kp=tuple(j.kp for j in joints),
        kd=tuple(j.kd for j in joints),
        torque_limits=tuple(j.torque_limit for j in joints),
        joint_pos_lower=tuple(float(x) for x in joint_range[:, 0]),
        joint_pos_upper=tuple(float(x) for x in joint_range[:, 1]),
        control_dt=robot.sim.control_dt,
        obs_terms=(
            ObsTerm("base_ang_vel", 3, o.ang_vel_scale),
            ObsTerm("projected_gravity", 3, o.gravity_scale),
            ObsTerm("command", 3, o.command_scale),
            ObsTerm("joint_pos", n, o.joint_pos_scale),
            ObsTerm("joint_vel", n, o.joint_vel_scale),
            ObsTerm("last_action", n, o.action_scale),
        ),
        command_ranges={
            "lin_vel_x": tuple(cfg.commands.lin_vel_x),
            "lin_vel_y": tuple(cfg.commands.lin_vel_y),
            "ang_vel_yaw": tuple(cfg.commands.ang_vel_yaw),
        },
    )


class LocomotionEnv(VectorEnv):
    """``num_envs`` legged robots tracking velocity commands on the configured terrain."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, cfg: EnvConfig | None = None, *, seed: int = 0, robot: RobotConfig | None = None) -> None:
        """``robot`` overrides the robot named in ``cfg`` (e.g. another physics timestep for sim2sim)."""
        self.cfg = cfg = cfg or EnvConfig()
        self.robot = robot or load_robot(cfg.robot)
        self.num_envs = n = cfg.num_envs
        if n < 1:
            raise ValueError(f"env.num_envs: must be >= 1, got {n}")
        self.model, self.index = compile_model(self.robot, terrain=cfg.terrain)
        self.contract = make_contract(self.robot, cfg, self.index.joint_range)
        self.dt = self.robot.sim.control_dt
        self.decimation = self.robot.sim.decimation
        self.max_episode_steps = round(cfg.episode_length_s / self.dt)
        c = cfg.commands
        if not 0.0 <= c.resample_spread_s < c.resample_interval_s:
            raise ValueError(f"env.commands.resample_spread_s: must be in [0, resample_interval_s = "
                             f"{c.resample_interval_s}), got {c.resample_spread_s}")  # fmt: skip
        nj = self.contract.num_joints

        # One model per environment (randomized in place), one MjData per thread.
        self.nominal = randomization.Nominal.read(self.model, self.index)
        self.models = [copy.copy(self.model) for _ in range(n)]
        nthread = cfg.nthread or os.cpu_count() or 1
        self._datas = [mujoco.MjData(self.model) for _ in range(nthread)]
        self._rollout = rollout.Rollout(nthread=nthread)
        self._home = home_qpos(self.model, self.index, self.robot)

        nq, nv = self.model.nq, self.model.nv
        self._nstate = mujoco.mj_stateSize(self.model, STATE_SPEC)
        qpos0 = mujoco.mj_stateSize(self.model, mujoco.mjtState.mjSTATE_TIME)
        self._qpos = slice(qpos0, qpos0 + nq)
        self._qvel = slice(qpos0 + nq, qpos0 + nq + nv)
        self.state = np.zeros((n, self._nstate))
        self._state_out = np.zeros((n, self.decimation, self._nstate))
        self._sensor_out = np.zeros((n, self.decimation, self.model.nsensordata))
        self._ctrl = np.zeros((n, self.decimation, self.model.nu))
        self._substep = np.arange(self.decimation)[None, :, None]

        # Contract code: the same observation builder and action mapping the robot uses.
        self.obs_builder = ObservationBuilder(self.contract, n)
        self.action_mapper = ActionMapper(self.contract, n)
        self.default_joint_pos = np.asarray(self.contract.default_joint_pos)
        mid = self.index.joint_range.mean(axis=1)
        half = 0.5 * np.diff(self.index.joint_range, axis=1)[:, 0] * cfg.rewards.soft_joint_limit
        self.soft_lower, self.soft_upper = mid - half, mid + half
        noise = cfg.noise
        levels = {
            "base_ang_vel": noise.ang_vel,
            "projected_gravity": noise.gravity,
            "command": 0.0,
            "joint_pos": noise.joint_pos,
            "joint_vel": noise.joint_vel,
            "last_action": 0.0,
        }
        self._noise = np.concatenate(
            [np.full(t.size, levels[t.name] * t.scale) for t in self.contract.obs_terms]
        ).astype(np.float32)

        # Per-environment task state.
        max_delay = (
            int(cfg.randomization.action_delay_steps.high) if cfg.randomization.action_delay_steps.enabled else 0
        )
        self._action_history = np.zeros((max_delay + 1, n, nj))
        self.actions = np.zeros((n, nj))
        self.last_actions = np.zeros((n, nj))
        self._last_targets = np.zeros((n, nj))
        self._last_joint_vel = np.zeros((n, nj))
        self.commands = np.zeros((n, 3))
        self.episode_step = np.zeros(n, dtype=np.int64)
        self.feet_air_time = np.zeros((n, len(self.robot.feet)))
        self._last_foot_contact = np.zeros((n, len(self.robot.feet)), dtype=bool)
        self.push_countdown = np.zeros(n, dtype=np.int64)
        self.command_countdown = np.zeros(n, dtype=np.int64)
        self.dr_params = np.zeros((n, len(randomization.PARAMS)))
        self.episode_return = np.zeros(n)
        self._rng = np.random.default_rng(seed)

        n_obs = self.contract.num_obs
        self.num_critic_obs = n_obs + 3 + len(self.robot.feet) + len(randomization.PARAMS)
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (n_obs,), np.float32)
        self.single_action_space = gym.spaces.Box(-np.inf, np.inf, (nj,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (n, n_obs), np.float32)
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (n, nj), np.float32)
        self.single_critic_observation_space = gym.spaces.Box(-np.inf, np.inf, (self.num_critic_obs,), np.float32)

    # ------------------------------------------------------------------ views into the state
    @property
    def qpos(self) -> np.ndarray:
        return self.state[:, self._qpos]

    @property
    def qvel(self) -> np.ndarray:
        return self.state[:, self._qvel]

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._reset_envs(np.arange(self.num_envs))
        self._read_sensors_after_reset()
        obs, critic = self._observe()
        return obs.copy(), {"critic_obs": critic}

    def step(self, actions: np.ndarray):
        cfg = self.cfg
        n = self.num_envs
        a = np.asarray(actions, dtype=np.float64).reshape(n, -1)
        if not np.all(np.isfinite(a)):
            raise ValueError("actions contain NaN or Inf")
        self.action_mapper.clip(a, out=self.actions)  # (the next observation's last_action, as on the robot)

        # Latency: whole control steps from a ring buffer, then sub-steps within the step.
        self._action_history = np.roll(self._action_history, 1, axis=0)
        self._action_history[0] = self.actions
        delay = self.dr_params[:, randomization.PARAMS.index("action_delay_steps")].astype(np.intp)
        applied = self._action_history[delay, np.arange(n)]
        targets = self.action_mapper.targets_of(applied)  # (clipped above, when they were taken)
        sub_delay = self.dr_params[:, randomization.PARAMS.index("action_delay_substeps")][:, None, None]
        self._ctrl[:, :, self.index.actuator_ids] = np.where(
            self._substep < sub_delay, self._last_targets[:, None, :], targets[:, None, :]
        )
        self._last_targets[:] = targets

        self._apply_pushes()
        # Shapes and dtypes are fixed at construction, so the wrapper's per-call checks
        # (which cost ~4 ms per step for 1024 models) are skipped.
        self._rollout.rollout(
            self.models,
            self._datas,
            self.state,
            self._ctrl,
            control_spec=CTRL_SPEC,
            skip_checks=True,
            nstep=self.decimation,
            state=self._state_out,
            sensordata=self._sensor_out,
        )
        self.state[:] = self._state_out[:, -1]
        self.episode_step += 1

        # Quantities the rewards, terminations and observations read.
        self._read()
        q = self._measure()
        reward, terms = compute_rewards(q, cfg.rewards, self.dt)
        self.episode_return += reward
        tilted = self._gravity[:, 2] > -np.cos(cfg.termination.max_tilt_rad)
        fallen = self._base_contact | tilted
        if cfg.termination.thigh_contact:
            fallen |= self._undesired_contact.any(axis=1)
        time_out = (self.episode_step >= self.max_episode_steps) & ~fallen
        done = fallen | time_out
        self.last_actions[:] = self.actions

        self.command_countdown -= 1
        resample = (self.command_countdown <= 0) & ~done
        if resample.any():
            k = int(resample.sum())
            self.commands[resample] = self._sample_commands(k)
            self.command_countdown[resample] = self._command_interval_steps(k)

        obs, critic = self._observe()
        info: dict = {
            "critic_obs": critic,
            "time_outs": time_out,
            "reward_terms": {k: float(v.mean()) for k, v in terms.items()},
        }
        if done.any():
            ids = np.flatnonzero(done)
            info["final_obs"] = obs.copy()
            info["final_critic_obs"] = critic.copy()
            info["episode"] = {
                "r": self.episode_return[ids].copy(),
                "l": self.episode_step[ids].copy(),
                "fallen": fallen[ids].copy(),
            }
            self._reset_envs(ids)
            self._read_sensors_after_reset(ids)
            obs, critic = self._observe()
            info["critic_obs"] = critic
        info["done_mask"] = done
        return obs.copy(), reward.astype(np.float32), fallen, time_out, info

    def mirrors(self) -> tuple[Mirror, Mirror, Mirror]:
        """The mirror maps of the observation, the critic's observation and the action (see
        :mod:`trot.training.symmetry`), for a robot with a ``mirror`` section."""
        mirror = self.robot.mirror
        if mirror is None:
            raise ConfigError(f"robot {self.robot.name}: no 'mirror' section, so no symmetry augmentation "
                              "(say which name parts are left and right, and which joints change sign)")  # fmt: skip
        mirror.check(self.robot)
        obs = symmetry.observation_mirror(self.contract, mirror)
        critic = symmetry.concat(
            obs,
            symmetry.signs(symmetry.VECTOR_REFLECTIONS["base_lin_vel"]),
            symmetry.by_name(self.robot.feet, mirror, negate=False),
            symmetry.params_mirror(randomization.PARAMS),
        )
        assert critic.size == self.num_critic_obs, "the critic's layout changed: update mirrors()"
        return obs, critic, symmetry.action_mirror(self.contract, mirror)

    def set_commands(self, commands: np.ndarray) -> np.ndarray:
        """Override every env's command (a fixed evaluation schedule); returns the refreshed observation."""
        self.commands[:] = commands
        obs, _ = self._observe()
        return obs.copy()

    # ------------------------------------------------------------------ checkpointing
    _STATE_ARRAYS = (
        "state", "_sensor_out", "_action_history", "actions", "last_actions", "_last_targets",
        "_last_joint_vel", "commands", "episode_step", "feet_air_time", "_last_foot_contact",
        "push_countdown", "command_countdown", "dr_params", "episode_return",
    )  # fmt: skip

    def state_dict(self) -> dict:
        """Everything that evolves, so a resumed training run continues the very same episodes."""
        out = {name: getattr(self, name).copy() for name in self._STATE_ARRAYS}
        out["rng"] = self._rng.bit_generator.state
        return out

    def load_state_dict(self, state: dict) -> None:
        missing = [name for name in self._STATE_ARRAYS if name not in state]
        if missing:
            raise ValueError(f"env state {missing[0]}: missing from the checkpoint (an older version of trot wrote it)")
        for name in self._STATE_ARRAYS:
            current = getattr(self, name)
            if state[name].shape != current.shape:
                raise ValueError(f"env state {name}: shape {state[name].shape} does not match {current.shape}")
            current[...] = state[name]
        self._rng.bit_generator.state = state["rng"]
        for i, model in enumerate(self.models):
            randomization.apply(model, self.nominal, self.index, self.dr_params[i])
        self._read()

    def close(self, **kwargs) -> None:
        rollout_obj = getattr(self, "_rollout", None)
        if rollout_obj is not None:
            rollout_obj.close()
            self._rollout = None

    # ------------------------------------------------------------------ internals
    def _read(self) -> None:
        """Read the robot state of every env from the rollout output (no side effects)."""
        idx = self.index
        sensors = self._sensor_out[:, -1]
        self._gyro = sensors[:, idx.gyro]
        self._quat = sensors[:, idx.orientation]
        self._gravity = projected_gravity(self._quat)
        self._linvel = sensors[:, idx.linvel]
        self._torques = sensors[:, idx.torque]
        self._joint_pos = self.qpos[:, idx.qpos_adr]
        self._joint_vel = self.qvel[:, idx.qvel_adr]
        self._foot_contact = (self._sensor_out[:, :, idx.foot_contact] > 0).any(axis=1)
        self._undesired_contact = (self._sensor_out[:, :, idx.undesired_contact] > 0).any(axis=1)
        self._base_contact = (self._sensor_out[:, :, idx.base_contact] > 0).any(axis=1)

    def _measure(self) -> StepQuantities:
        """Quantities for rewards after a step; advances the air-time and acceleration trackers."""
        joint_acc = (self._joint_vel - self._last_joint_vel) / self.dt
        self._last_joint_vel[:] = self._joint_vel
        contact_filt = self._foot_contact | self._last_foot_contact
        self._last_foot_contact[:] = self._foot_contact
        first_contact = (self.feet_air_time > 0) & contact_filt
        self.feet_air_time += self.dt
        air_at_touchdown = self.feet_air_time.copy()
        self.feet_air_time *= ~contact_filt
        return StepQuantities(
            command=self.commands,
            base_lin_vel=self._linvel,
            base_ang_vel=self._gyro,
            gravity=self._gravity,
            torques=self._torques,
            joint_pos=self._joint_pos,
            joint_vel=self._joint_vel,
            joint_acc=joint_acc,
            action=self.actions,
            last_action=self.last_actions,
            default_joint_pos=self.default_joint_pos,
            soft_lower=self.soft_lower,
            soft_upper=self.soft_upper,
            first_contact=first_contact,
            air_time_at_touchdown=air_at_touchdown,
            undesired_contact=self._undesired_contact,
        )

    def _observe(self) -> tuple[np.ndarray, np.ndarray]:
        clean = self.obs_builder.build(
            base_ang_vel=self._gyro,
            base_quat_wxyz=self._quat,
            command=self.commands,
            joint_pos=self._joint_pos,
            joint_vel=self._joint_vel,
            last_action=self.last_actions,
        )
        critic = np.concatenate([clean, self._linvel, self._foot_contact, self.dr_params], axis=1, dtype=np.float32)
        if self.cfg.noise.enabled:
            obs = clean + self._rng.uniform(-1.0, 1.0, clean.shape).astype(np.float32) * self._noise
        else:
            obs = clean
        return obs, critic

    def _read_sensors_after_reset(self, ids: np.ndarray | None = None) -> None:
        """Refresh sensor-derived quantities of freshly reset envs (a forward pass each)."""
        ids = np.arange(self.num_envs) if ids is None else ids
        data = self._datas[0]
        for i in ids:
            mujoco.mj_setState(self.models[i], data, self.state[i], STATE_SPEC)
            mujoco.mj_forward(self.models[i], data)
            self._sensor_out[i, :] = data.sensordata
        self._read()
        self._last_joint_vel[ids] = self._joint_vel[ids]

    def _sample_commands(self, count: int) -> np.ndarray:
        c = self.cfg.commands
        lo = np.array([c.lin_vel_x[0], c.lin_vel_y[0], c.ang_vel_yaw[0]])
        hi = np.array([c.lin_vel_x[1], c.lin_vel_y[1], c.ang_vel_yaw[1]])
        cmd = self._rng.uniform(lo, hi, size=(count, 3))
        single = self._rng.random(count) < c.single_axis_probability
        kept_axis = self._rng.integers(0, 3, count)
        cmd[single[:, None] & (np.arange(3) != kept_axis[:, None])] = 0.0
        cmd[self._rng.random(count) < c.zero_probability] = 0.0
        return cmd

    def _command_interval_steps(self, count: int) -> np.ndarray:
        c = self.cfg.commands
        seconds = c.resample_interval_s + self._rng.uniform(-c.resample_spread_s, c.resample_spread_s, count)
        return np.maximum(1, np.round(seconds / self.dt)).astype(np.int64)

    def _push_interval_steps(self, count: int) -> np.ndarray:
        r = self.cfg.randomization.push_interval_s
        return np.round(self._rng.uniform(r.low, r.high, count) / self.dt).astype(np.int64)

    def _apply_pushes(self) -> None:
        r = self.cfg.randomization.push_velocity
        if not r.enabled:
            return
        self.push_countdown -= 1
        push = np.flatnonzero(self.push_countdown <= 0)
        if push.size == 0:
            return
        angle = self._rng.uniform(0, 2 * np.pi, push.size)
        speed = self._rng.uniform(r.low, r.high, push.size)
        vel = self.qvel  # a view: writes go into the state the rollout starts from
        vel[push, 0] += speed * np.cos(angle)
        vel[push, 1] += speed * np.sin(angle)
        self.push_countdown[push] = self._push_interval_steps(push.size)

    def _reset_envs(self, ids: np.ndarray) -> None:
        cfg = self.cfg.randomization
        k = ids.size
        self.dr_params[ids] = randomization.sample(self._rng, cfg, k)
        for row, i in enumerate(ids):
            randomization.apply(self.models[i], self.nominal, self.index, self.dr_params[ids[row]])

        qpos = np.tile(self._home, (k, 1))
        qvel = np.zeros((k, self.model.nv))
        if cfg.init_joint_pos.enabled:
            qpos[:, self.index.qpos_adr] += self._rng.uniform(
                cfg.init_joint_pos.low, cfg.init_joint_pos.high, (k, self.contract.num_joints)
            )
        if cfg.init_base_vel.enabled:
            qvel[:, :6] = self._rng.uniform(cfg.init_base_vel.low, cfg.init_base_vel.high, (k, 6))
        self.state[ids] = 0.0
        self.state[np.ix_(ids, np.arange(self._qpos.start, self._qpos.stop))] = qpos
        self.state[np.ix_(ids, np.arange(self._qvel.start, self._qvel.stop))] = qvel

        self.commands[ids] = self._sample_commands(k)
        self.command_countdown[ids] = self._command_interval_steps(k)
        self._action_history[:, ids] = 0.0
        self.actions[ids] = 0.0
        self.last_actions[ids] = 0.0
        self._last_targets[ids] = self.default_joint_pos
        self.episode_step[ids] = 0
        self.episode_return[ids] = 0.0
        self.feet_air_time[ids] = 0.0
        self._last_foot_contact[ids] = False
        self.push_countdown[ids] = (
            self._push_interval_steps(k) if self.cfg.randomization.push_velocity.enabled else np.iinfo(np.int64).max
        )
