"""PNG plots of a recorded episode (base velocity, joints, actions, control-loop timing) and of the
re-simulation and shadow results."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trot.replay.episode import Episode

if TYPE_CHECKING:
    from trot.replay.resim import ResimResult
    from trot.replay.shadow import ShadowResult


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_episode(ep: Episode, out: Path) -> list[Path]:
    """PNG plots of what can be computed from the bag; notes say what cannot."""
    plt = _plt()
    written = []
    if ep.odom is not None:
        fig, axes = plt.subplots(3, 1, figsize=(9, 6), sharex=True)
        labels = ("vx m/s", "vy m/s", "yaw rate rad/s")
        achieved = np.column_stack([ep.odom.values["linvel"][:, 0], ep.odom.values["linvel"][:, 1],
                                    ep.odom.values["angvel"][:, 2]])  # fmt: skip
        for i, ax in enumerate(axes):
            ax.plot(ep.odom.t, achieved[:, i], lw=0.8, label="achieved (odom)")
            if ep.cmd_vel is not None:
                ax.step(ep.cmd_vel.t, ep.cmd_vel.values["cmd"][:, i], where="post", label="commanded")
            ax.set_ylabel(labels[i])
        axes[0].legend(fontsize=8)
        axes[-1].set_xlabel("s")
        fig.suptitle("base velocity: commanded vs achieved")
        written.append(_save(fig, out / "base_velocity.png"))
    else:
        ep.notes.append("no odom: no achieved base velocity plot")
    if ep.joint_states is not None:
        fig, axes = plt.subplots(4, 3, figsize=(12, 9), sharex=True)
        for j, ax in enumerate(axes.flat[: len(ep.joint_names)]):
            ax.plot(ep.joint_states.t, ep.joint_states.values["pos"][:, j], lw=0.8, label="measured")
            if ep.joint_commands is not None:
                ax.plot(ep.joint_commands.t, ep.joint_commands.values["target"][:, j], lw=0.8, label="target")
            ax.set_title(ep.joint_names[j], fontsize=8)
        axes.flat[0].legend(fontsize=7)
        fig.suptitle("joint position targets vs measured (rad)")
        written.append(_save(fig, out / "joints.png"))
    if ep.joint_commands is not None and ep.joint_states is not None:
        from trot.policies.artifact import read_artifact

        try:
            _, contract = read_artifact(ep.metadata.get("policy_path", "go2_flat"))
            from trot.policies.observation import ActionMapper, joint_index

            to_contract = joint_index(ep.joint_names, contract)  # replay arrays are in robot order
            actions = ActionMapper(contract).actions_of(ep.joint_commands.values["target"][:, to_contract])
            fig, ax = plt.subplots(figsize=(9, 3.5))
            ax.plot(ep.joint_commands.t, actions, lw=0.6)
            ax.set_title("actions ((target - default) / action_scale), after the node's safety limits")
            ax.set_xlabel("s")
            written.append(_save(fig, out / "actions.png"))
        except Exception as exc:
            ep.notes.append(f"no actions plot: the policy contract is unavailable ({exc})")
    if ep.joint_commands is not None and len(ep.joint_commands) > 2:
        periods = np.diff(ep.joint_commands.values["stamp"]) * 1e3
        latency = (ep.joint_commands.t - ep.joint_commands.values["stamp"]) * 1e3
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        axes[0].hist(periods, bins=60)
        axes[0].set_title("control period (command stamps), ms")
        axes[1].hist(latency, bins=60)
        axes[1].set_title("command stamp -> recorded (transport latency), ms")
        written.append(_save(fig, out / "timing.png"))
    else:
        n = 0 if ep.joint_commands is None else len(ep.joint_commands)
        ep.notes.append(f"{n} joint_commands: too few for control-loop timing" if n else "no joint_commands: no "
                        "control-loop timing")  # fmt: skip
    return written


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _plt().close(fig)
    return path


def resim_plot(r: ResimResult, out: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    axes[0].plot(r.t, np.sqrt(((r.joint_pos_sim - r.joint_pos_log) ** 2).mean(axis=1)))
    axes[0].set_ylabel("joint RMS divergence, rad")
    if r.base_vel_error is not None:
        axes[1].plot(r.t, r.base_vel_error)
    axes[1].set_ylabel("|v_xy sim - log|, m/s")
    axes[1].set_xlabel("s since the re-simulation start")
    fig.suptitle("re-simulation vs log (the reality gap, for a real robot's bag)")
    return _save(fig, out / "resim.png")


def shadow_plot(r: ShadowResult, names: list[str], out: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(4, 3, figsize=(12, 9), sharex=True)
    for j, ax in enumerate(axes.flat[: len(names)]):
        ax.plot(r.t, r.logged[:, j], lw=0.8, label="logged")
        ax.plot(r.t, r.shadow[:, j], lw=0.8, label="shadow")
        ax.set_title(f"{names[j]} (rms {r.rms[j]:.3f})", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("shadow policy targets vs logged targets (rad)")
    return _save(fig, out / "shadow.png")
