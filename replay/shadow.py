"""Shadow evaluation: another policy run on a recorded episode's inputs, tick by tick, through the
policy node's own controller, and its targets compared with the logged ones."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from trot.replay.episode import Episode, ReplayError, latest


@dataclass
class ShadowResult:
    t: np.ndarray
    logged: np.ndarray  # logged position targets [n, J]
    shadow: np.ndarray  # the other policy's targets [n, J]
    rms: np.ndarray
    max_abs: np.ndarray
    first_divergence_s: float | None
    threshold: float


def shadow(ep: Episode, policy_path: str, threshold: float = 0.2) -> ShadowResult:
    """Run ``policy_path`` on the logged inputs at each logged RUNNING tick and compare. The inputs go
    through the policy node's own controller (trot.policies.controller), with the safety settings the
    node logged: the same command clipping and decay, quaternion normalization, joint-limit margin
    and target rate limit, so that a difference is the policy's, not the replay's."""
    from trot.policies.controller import Mode, PolicyController
    from trot.policies.runtime import PolicyRuntime
    from trot.policies.settings import SafetyConfig

    ep.require("joint_states", "imu", "joint_commands", purpose="shadow actions (observation inputs)")
    runtime = PolicyRuntime(policy_path)
    cmds = ep.joint_commands
    running = ~np.isnan(cmds.values["target"]).any(axis=1)
    if ep.state is not None:  # only the policy's own ticks: not the stand-up interpolation
        running &= ep.state.values["mode"][latest(ep.state, cmds.t)] == "running"
        running &= cmds.t >= ep.state.t[0]
    else:
        ep.notes.append("no policy state topic: stand-up ticks are compared as if they were the policy's")
    # the command's header stamp is when its tick sampled the inputs; use the inputs received by then
    ticks = np.where(running)[0]
    if not len(ticks):
        raise ReplayError(f"{ep.path}: the policy never ran in this episode (no RUNNING command): nothing to shadow")
    t_in = cmds.values["stamp"][ticks]
    js = latest(ep.joint_states, t_in)
    imu = latest(ep.imu, t_in)
    cv = latest(ep.cmd_vel, t_in) if ep.cmd_vel is not None else None
    if ep.cmd_vel is None:
        ep.notes.append("no cmd_vel: the shadow policy sees a zero command")
    if (params := ep.policy_parameters) is not None:
        known = {f.name for f in dataclasses.fields(SafetyConfig)}  # (a bag from another version of trot)
        safety = SafetyConfig(**{k: v for k, v in params["safety"].items() if k in known})
        period = params["control_period_s"]
    else:
        safety, period = SafetyConfig(), None
        ep.notes.append("no trot_policy/parameters: the shadow's controller has the default safety settings")
    faults: list[str] = []
    controller = PolicyController(runtime, safety, period, log=lambda line: None, warn=faults.append)
    order = [ep.joint_names.index(n) for n in runtime.joint_names]  # contract joint -> column of the logs
    state = ep.joint_states.values
    out = np.zeros((len(ticks), len(ep.joint_names)))
    for i, (k, now) in enumerate(zip(ticks, t_in, strict=True)):
        j, u = js[i], imu[i]
        # stamped now: the logged node ran on these samples (it was RUNNING), so they were fresh; their
        # bag times carry the recorder's lag, which is no fault of the policy under test
        controller.set_joint_state(ep.joint_names, state["pos"][j], state["vel"][j], now, now)
        controller.set_imu(ep.imu.values["quat"][u], ep.imu.values["gyro"][u], now, now)
        if cv is not None and ep.cmd_vel.t[cv[i]] <= now:
            controller.set_command(*ep.cmd_vel.values["cmd"][cv[i]], now=ep.cmd_vel.t[cv[i]])
        if i == 0 or ticks[i - 1] != k - 1 or controller.mode is not Mode.RUNNING:  # a RUNNING stretch begins
            before = cmds.values["target"][k - 1][order] if k > 0 else np.full(len(order), np.nan)
            controller.take_over(before if np.isfinite(before).all() else controller.joint_pos, now)
        out[i, order] = controller.tick(now).position
    if damped := [line for line in faults if "-> damping" in line]:
        ep.notes.append(f"the shadow's controller fell to damping {len(damped)} times (taken over again at the "
                        f"next tick); first: {faults[0]}")  # fmt: skip
    logged = cmds.values["target"][ticks]
    diff = np.abs(out - logged)
    over = np.where(diff.max(axis=1) > threshold)[0]
    return ShadowResult(
        t=cmds.t[ticks] - (cmds.t[ticks][0] if len(ticks) else 0.0),
        logged=logged,
        shadow=out,
        rms=np.sqrt((diff**2).mean(axis=0)),
        max_abs=diff.max(axis=0),
        first_divergence_s=float(cmds.t[ticks][over[0]] - cmds.t[ticks][0]) if len(over) else None,
        threshold=threshold,
    )
