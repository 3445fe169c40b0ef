"""Re-simulation of a recorded episode: the logged joint commands applied to the simulated robot
from the logged initial state, to compare what the simulation does with what the robot did."""

from __future__ import annotations

import time
from dataclasses import dataclass

import mujoco
import numpy as np

from trot.replay.episode import Episode, interp, latest


def _quat_rotate(quat: np.ndarray, vec: np.ndarray) -> np.ndarray:
    out = np.zeros(3)
    mujoco.mju_rotVecQuat(out, vec, quat)
    return out


@dataclass
class ResimResult:
    t: np.ndarray  # the logged joint-state times within the re-simulated span
    joint_pos_sim: np.ndarray
    joint_pos_log: np.ndarray
    base_vel_sim: np.ndarray  # body-frame linear velocity [n, 3]
    base_vel_log: np.ndarray | None
    joint_rms: np.ndarray  # per joint, rad
    base_vel_error: np.ndarray | None  # |v_sim - v_log| (xy) over time
    seconds_simulated: float
    wall_s: float


def resim(ep: Episode, policy_path: str | None = None) -> ResimResult:
    """Re-simulate from the logged initial state, applying the logged joint commands at their logged
    times with the contract's PD gains (damping rows: zero stiffness, damping_kd)."""
    from trot.policies.artifact import read_artifact
    from trot.sim.robot import load_robot
    from trot.sim.world import DAMPING_KD, compile_model, home_qpos, joint_gains, set_joint_gains

    ep.require("joint_states", "joint_commands", purpose="a re-simulation (initial joint state, commands)")
    robot = load_robot(ep.metadata.get("robot", "go2"))
    model, index = compile_model(robot)
    data = mujoco.MjData(model)
    kp, kd = joint_gains(robot)
    policy_path = policy_path or ep.metadata.get("policy_path")
    if policy_path:
        try:
            _, contract = read_artifact(policy_path)
            kp, kd = joint_gains(robot, contract, ep.joint_names)
        except Exception as exc:
            ep.notes.append(f"PD gains from the robot config ({policy_path}: {exc})")
    js, cmds = ep.joint_states, ep.joint_commands
    t_start = max(js.t[0], cmds.t[0], ep.odom.t[0] if ep.odom is not None else 0.0)
    qpos = home_qpos(model, index, robot)
    k0 = latest(js, np.array([t_start]))[0]
    qpos[index.qpos_adr] = js.values["pos"][k0]
    data.qvel[index.qvel_adr] = js.values["vel"][k0]
    if ep.odom is not None:
        o = latest(ep.odom, np.array([t_start]))[0]
        qpos[0:3], qpos[3:7] = ep.odom.values["pos"][o], ep.odom.values["quat"][o]
        data.qvel[0:3] = _quat_rotate(qpos[3:7], ep.odom.values["linvel"][o])  # free joint: world linear velocity
        data.qvel[3:6] = ep.odom.values["angvel"][o]  # and body angular velocity
    else:
        ep.notes.append("no odom: the re-simulation starts from the default base pose at rest")
    data.qpos[:] = qpos
    mujoco.mj_forward(model, data)
    ids = index.actuator_ids
    # DAMPING: the simulated driver's default damping gain (the bag does not carry the driver's parameters)
    no_kp, damping_kd = np.zeros_like(kp), np.full_like(kd, DAMPING_KD)
    dt = model.opt.timestep
    t_end = min(js.t[-1], cmds.t[-1] + 0.1)
    steps = int((t_end - t_start) / dt)
    sample_t = js.t[(js.t >= t_start) & (js.t <= t_start + steps * dt)]
    out_pos, out_vel = np.zeros((len(sample_t), len(ep.joint_names))), np.zeros((len(sample_t), 3))
    next_sample, ci, mode = 0, -1, None
    t0_wall = time.perf_counter()
    for k in range(steps + 1):
        t = t_start + k * dt
        while next_sample < len(sample_t) and sample_t[next_sample] <= t + 1e-9:
            out_pos[next_sample] = data.qpos[index.qpos_adr]
            out_vel[next_sample] = data.sensordata[index.linvel]
            next_sample += 1
        while ci + 1 < len(cmds) and cmds.t[ci + 1] <= t:
            ci += 1
        if ci >= 0:
            target = cmds.values["target"][ci]
            damping = bool(np.isnan(target).any())
            if damping != mode:
                set_joint_gains(model, index, *((no_kp, damping_kd) if damping else (kp, kd)))
                mode = damping
            if not damping:
                data.ctrl[ids] = target
        elif mode is None:  # before the first command the robot's motors only damp, as the sim node does
            set_joint_gains(model, index, no_kp, damping_kd)
            mode = "before the first command"
        mujoco.mj_step(model, data)
    wall = time.perf_counter() - t0_wall
    n = next_sample
    log_pos = js.values["pos"][(js.t >= t_start)][:n]
    base_log = interp(ep.odom, "linvel", sample_t[:n]) if ep.odom is not None else None
    return ResimResult(
        t=sample_t[:n] - t_start,
        joint_pos_sim=out_pos[:n],
        joint_pos_log=log_pos,
        base_vel_sim=out_vel[:n],
        base_vel_log=base_log,
        joint_rms=np.sqrt(np.nanmean((out_pos[:n] - log_pos) ** 2, axis=0)),
        base_vel_error=np.linalg.norm(out_vel[:n, :2] - base_log[:, :2], axis=1) if base_log is not None else None,
        seconds_simulated=steps * dt,
        wall_s=wall,
    )
