"""Evaluation of a locomotion policy: velocity-tracking error, falls, a video, the training curve.

``trot eval RUN_DIR`` reruns the evaluation on a run's checkpoint. The policy is any callable
from a batch of observations to a batch of actions, so the same loop serves torch checkpoints
and exported ONNX artifacts.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from trot.sim.robot import RobotConfig
from trot.training.tasks.velocity.config import EnvConfig
from trot.training.tasks.velocity.env import LocomotionEnv

Policy = Callable[[np.ndarray], np.ndarray]


@dataclass
class EvalConfig:
    """``trot eval RUN_DIR``: commands from the training ranges, randomization on, 20 s episodes."""

    run: tyro.conf.Positional[Path]
    """A training run folder (runs/...)."""
    checkpoint: str = "last.pt"
    episodes: int = 64
    episode_length_s: float = 20.0
    randomization: bool = True
    """Keep the training domain randomization (and observation noise) on."""
    settle_s: float = 1.0
    """Tracking error is measured from this long after each new command."""
    seed: int = 12345
    mjcf_contacts: bool = True
    """Also on the robot MJCF's own contact model and every collision geom of its file
    (:func:`trot.sim.world.with_mjcf_contacts`), the same episodes: what a robot's physics is closer to."""
    video: bool = True
    video_seconds: float = 8.0


def evaluate_policy(
    env_cfg: EnvConfig,
    policy: Policy,
    episodes: int = 64,
    episode_length_s: float = 20.0,
    randomization: bool = True,
    settle_s: float = 1.0,
    seed: int = 12345,
    robot: RobotConfig | None = None,
) -> dict[str, float]:
    """One episode per environment; returns tracking errors (m/s, rad/s) and the fall share.
    ``robot`` overrides the config's robot (another physics: :func:`trot.sim.world.with_mjcf_contacts`)."""
    cfg = copy.deepcopy(env_cfg)
    cfg.num_envs, cfg.episode_length_s = episodes, episode_length_s
    if not randomization:
        cfg.randomization.disable_all()
        cfg.noise.enabled = False
    env = LocomotionEnv(cfg, seed=seed, robot=robot)
    obs, _ = env.reset()
    alive = np.ones(episodes, dtype=bool)
    fell = np.zeros(episodes, dtype=bool)
    age = np.zeros(episodes)
    errors = {"vx": [], "vy": [], "yaw": []}
    moving_vx_errors = []
    for _ in range(env.max_episode_steps):
        command = env.commands.copy()
        obs, _, terminated, truncated, _ = env.step(policy(obs))
        age += env.dt
        valid = alive & ~(terminated | truncated) & (age >= settle_s)
        lin, ang = env._linvel[valid], env._gyro[valid]
        errors["vx"].append(np.abs(command[valid, 0] - lin[:, 0]))
        errors["vy"].append(np.abs(command[valid, 1] - lin[:, 1]))
        errors["yaw"].append(np.abs(command[valid, 2] - ang[:, 2]))
        moving = np.linalg.norm(command[valid, :2], axis=1) > 0.1
        moving_vx_errors.append(errors["vx"][-1][moving])
        fell |= alive & terminated
        alive &= ~(terminated | truncated)
        age[np.any(env.commands != command, axis=1)] = 0.0
    env.close()
    out = {f"{k}_error_mean": float(np.concatenate(v).mean()) for k, v in errors.items()}
    out["vx_error_mean_moving"] = float(np.concatenate(moving_vx_errors).mean())
    out["fall_rate"] = float(fell.mean())
    out["episodes"] = episodes
    out["no_fall_share"] = 1.0 - out["fall_rate"]
    return out


def torch_policy(module) -> Policy:
    import torch

    device = next(module.parameters()).device

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()

    return act


def load_run_policy(run_dir: Path, checkpoint: str = "last.pt"):
    """The deterministic actor (normalizer + mean) of a run's checkpoint, and the run's config."""
    import torch

    from trot.training.ppo.model import ActorCritic, DeterministicActor
    from trot.training.run_config import load_config

    cfg = load_config(run_dir)
    ck = torch.load(run_dir / "checkpoints" / checkpoint, weights_only=False, map_location="cpu")
    meta = ck["meta"]
    policy = ActorCritic.from_config(meta["num_obs"], meta["num_critic_obs"], meta["num_actions"], cfg.policy)
    policy.load_state_dict(ck["model"])
    policy.eval()
    return DeterministicActor(policy), cfg, ck


def record_video(env_cfg: EnvConfig, policy, path: Path, seconds: float = 5.0, seed: int = 0) -> Path:
    """Film environment 0 driven by ``policy`` (an ActorCritic, a module or a callable)."""
    from trot.sim.render import Renderer, write_mp4
    from trot.training.ppo.model import ActorCritic, DeterministicActor

    if isinstance(policy, ActorCritic):
        policy = DeterministicActor(policy)
    act = policy if not hasattr(policy, "parameters") else torch_policy(policy)
    cfg = copy.deepcopy(env_cfg)
    cfg.num_envs, cfg.commands.zero_probability = 1, 0.0
    env = LocomotionEnv(cfg, seed=seed)
    obs, _ = env.reset()
    renderer = Renderer(env.robot, terrain=env.cfg.terrain)
    frames = []
    for k in range(int(seconds / env.dt)):
        obs, *_ = env.step(act(obs))
        if k % 2 == 0:
            frames.append(renderer.frame(env.qpos[0]))
    renderer.close()
    env.close()
    return write_mp4(frames, path, fps=0.5 / env.dt)


def plot_curve(run_dir: Path) -> Path | None:
    """Mean episode return and fall share against wall-clock minutes (PNG beside the run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = run_dir / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []
    if not rows:
        return None
    minutes = [r["perf/wall_clock_s"] / 60 for r in rows]
    nan = float("nan")
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(7, 6.5), sharex=True)
    ax1.plot(minutes, [r.get("episode/mean_return", nan) for r in rows])
    ax1.set_ylabel("mean episode return")
    ax2.plot(minutes, [r.get("episode/fall_rate", nan) for r in rows], color="tab:red")
    ax2.set_ylabel("fall share")
    ax3.plot(minutes, [r.get("reward/mean_step", nan) for r in rows], color="tab:green")
    ax3.set_ylabel("mean reward per step")
    ax3.set_xlabel("wall-clock minutes")
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    out = run_dir / "curve.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def eval_run(cfg: EvalConfig) -> dict[str, float]:
    from rich.console import Console
    from rich.table import Table

    actor, train_cfg, ck = load_run_policy(cfg.run, cfg.checkpoint)
    result = evaluate_policy(
        train_cfg.env, torch_policy(actor), cfg.episodes, cfg.episode_length_s, cfg.randomization, cfg.settle_s,
        cfg.seed,
    )  # fmt: skip
    if cfg.mjcf_contacts:
        from trot.sim.robot import load_robot
        from trot.sim.world import with_mjcf_contacts

        own = copy.deepcopy(train_cfg.env)  # the file's contact model is the condition: not randomized
        own.randomization.elliptic_cone.enabled = own.randomization.impratio.enabled = False
        result["mjcf_contacts"] = evaluate_policy(
            own, torch_policy(actor), cfg.episodes, cfg.episode_length_s, cfg.randomization,
            cfg.settle_s, cfg.seed, robot=with_mjcf_contacts(load_robot(train_cfg.env.robot)),
        )  # fmt: skip
    result["iteration"] = ck["iteration"]
    result["env_steps"] = ck["env_steps"]
    result["train_wall_clock_s"] = ck["elapsed_s"]
    (cfg.run / "eval.json").write_text(json.dumps(result, indent=2))
    table = Table(title=f"{cfg.run.name} @ iteration {ck['iteration']} ({ck['elapsed_s'] / 60:.1f} min of training)")
    table.add_column("metric")
    table.add_column("training model", justify="right")
    if cfg.mjcf_contacts:
        table.add_column("MJCF's own contacts", justify="right")
    own = result.get("mjcf_contacts", {})
    for k, v in result.items():
        if k == "mjcf_contacts":
            continue
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v)]
        if cfg.mjcf_contacts:
            cells.append(f"{own[k]:.4f}" if isinstance(own.get(k), float) else str(own.get(k, "")))
        table.add_row(k, *cells)
    console = Console()
    console.print(table)
    curve = plot_curve(cfg.run)
    if curve:
        console.print(f"training curve: {curve}")
    if cfg.video:
        video = record_video(train_cfg.env, actor, cfg.run / "eval.mp4", seconds=cfg.video_seconds, seed=cfg.seed)
        console.print(f"video: {video}")
    return result
