"""The ``trot`` command line. Subcommands import their heavy modules lazily."""

from __future__ import annotations

import dataclasses
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from trot.sim.gl import choose_offscreen_gl

choose_offscreen_gl()  # before mujoco's first import, which reads MUJOCO_GL (see trot.sim.gl)

from trot.policies.artifact import ArtifactError
from trot.sim.strict import ConfigError
from trot.training.bench import EnvBenchConfig


@dataclass
class DemoConfig:
    """``trot demo``: the Go2 task's contract and speed, a short PPO run, its evaluation and video."""

    robot: str = "go2"
    train_minutes: float = 3.0
    """Wall-clock budget of the demo training run (a full run: ``trot train go2-flat``, 29 min)."""
    num_envs: int = 512
    bench_envs: int = 512
    eval_episodes: int = 16
    out: Path = Path("out/demo")
    """Where the run folder, evaluation, curve and video go."""
    seed: int = 1


def demo(cfg: DemoConfig) -> None:
    from rich.console import Console
    from rich.table import Table

    from trot.training.bench import bench_env, print_env_bench
    from trot.training.evaluate import EvalConfig, eval_run
    from trot.training.tasks.velocity.env import LocomotionEnv
    from trot.training.train import default_config, train

    console = Console()
    task = f"{cfg.robot}-flat"
    train_cfg = default_config(task)
    env = LocomotionEnv(dataclasses.replace(train_cfg.env, num_envs=1))
    c = env.contract
    env.close()
    table = Table(title=f"{c.robot}: deployment contract (observation layout)")
    for column in ("term", "slice", "scale"):
        table.add_column(column)
    for term, sl in zip(c.obs_terms, c.term_slices().values(), strict=True):
        table.add_row(term.name, f"{sl.start}:{sl.stop}", f"{term.scale:g}")
    console.print(table)
    console.print(f"joints (policy order): {', '.join(c.joint_names)}; control period {c.control_dt * 1e3:.0f} ms")

    console.rule("environment throughput")
    print_env_bench(bench_env(EnvBenchConfig(robot=cfg.robot, num_envs=cfg.bench_envs, steps=50)))

    console.rule(f"PPO on {task} for {cfg.train_minutes:g} min")
    train_cfg.seed = cfg.seed
    train_cfg.env.num_envs = cfg.num_envs
    train_cfg.max_minutes = cfg.train_minutes
    train_cfg.compile = False  # a few minutes gain less than compilation costs
    train_cfg.log_dir, train_cfg.run_name = cfg.out, f"{task}_demo"
    run = cfg.out / train_cfg.run_name
    if run.exists():
        shutil.rmtree(run)
    train(train_cfg)

    console.rule("evaluation")
    eval_run(EvalConfig(run=run, episodes=cfg.eval_episodes, episode_length_s=10.0))
    console.print(f"everything is in {run}/ (TensorBoard: tensorboard --logdir {run / 'tb'})")


def bench_env_cmd(cfg: EnvBenchConfig) -> None:
    from trot.training.bench import bench_env, print_env_bench

    print_env_bench(bench_env(cfg))


def train_cmd(argv: list[str]) -> int:
    from trot.training.train import main as train_main

    return train_main(argv)


def eval_cmd(argv: list[str]) -> int:
    """A policy artifact folder (policy.onnx) gets the sim2sim suite and a card; a run folder its eval."""
    target = Path(argv[0]) if argv and not argv[0].startswith("-") else None
    if target is not None and (target / "policy.onnx").exists():
        from trot.policies.artifact import ArtifactError
        from trot.training.artifact_eval import (
            AXES,
            ContractMismatch,
            PolicyEvalConfig,
            command_response,
            dead_band,
            evaluate_artifact,
            robustness,
            write_card,
        )

        cfg = tyro.cli(PolicyEvalConfig, args=argv[1:], prog=f"trot eval {target}")
        try:
            results = evaluate_artifact(target, cfg)
            response = command_response(target, cfg) if cfg.response_s > 0 else None
            robust = robustness(target, cfg) if cfg.robust_episodes > 0 else None
        except (ArtifactError, ContractMismatch, ValueError) as exc:
            print(f"trot eval: {exc}", file=sys.stderr)
            return 2
        card = write_card(target, results, cfg, response=response, robust=robust)
        for r in results:
            print(
                f"{r['condition']:<14} vx {r['vx_error']:.3f} m/s  vy {r['vy_error']:.3f} m/s  "
                f"yaw {r['yaw_error']:.3f} rad/s"
                f"  falls {r['fall_rate']:.0%}  |tau| {r['mean_abs_torque']:.2f} Nm"
            )
        for r in robust or []:
            print(f"random commands, {r['condition']:<14} {r['no_fall_share']:.1%} of {r['episodes']} episodes "
                  f"without a fall, vx {r['vx_error_mean']:.3f} m/s")  # fmt: skip
        if response:
            print("dead band (largest command followed by less than half): " + ", ".join(
                f"{axis} {dead_band(response, axis):g}" for axis in AXES))  # fmt: skip
        print(f"policy card: {card}")
        return 0
    from trot.training.evaluate import EvalConfig, eval_run

    cfg = tyro.cli(EvalConfig, args=argv, prog="trot eval")
    if not (cfg.run / "checkpoints" / cfg.checkpoint).is_file():
        print(f"trot eval: run: no checkpoint {cfg.checkpoint} in {cfg.run} (nor a policy.onnx)", file=sys.stderr)
        return 2
    eval_run(cfg)
    return 0


def export_cmd(argv: list[str]) -> int:
    from trot.policies.artifact import ArtifactError
    from trot.training.export import ExportConfig, ParityError, export

    cfg = tyro.cli(ExportConfig, args=argv, prog="trot export")
    if not (cfg.run / "checkpoints" / cfg.checkpoint).is_file():
        print(f"trot export: run: no checkpoint {cfg.checkpoint} in {cfg.run}", file=sys.stderr)
        return 2
    try:
        out = export(cfg)
    except (ParityError, ArtifactError, ValueError) as exc:
        print(f"trot export: {exc}", file=sys.stderr)
        return 1
    parity = (out / "parity.json").read_text()
    print(f"exported {out / 'policy.onnx'} (+ policy.yaml); parity: {parity.strip()}")
    return 0


def deploy_cmd(argv: list[str]) -> int:
    from trot.ros_nodes.deploy import DeployConfig, DeployInterrupted, deploy, print_summary

    cfg = tyro.cli(DeployConfig, args=argv, prog="trot deploy")
    try:
        summary = deploy(cfg)
    except DeployInterrupted as exc:
        print(f"trot deploy: {exc}", file=sys.stderr)
        return 130
    except (ArtifactError, ValueError, RuntimeError, OSError) as exc:  # (OSError: an unreadable policy, --out)
        print(f"trot deploy: {exc}", file=sys.stderr)
        return 2
    print_summary(summary)
    if summary["interrupted"] or summary.get("replay_interrupted"):
        return 130
    return 1 if "replay_error" in summary else 0


def bag_cmd(argv: list[str]) -> int:
    """``trot bag info BAG`` | ``trot bag recover BAG``."""
    if len(argv) != 2 or argv[0] not in ("info", "recover"):
        print("usage: trot bag {info,recover} BAG", file=sys.stderr)
        return 2
    from trot.replay.bag import read_metadata, recover, topic_counts
    from trot.replay.sources import SOURCES_TOPIC, sources_timeline

    action, bag = argv[0], Path(argv[1])
    try:
        counts = recover(bag) if action == "recover" else topic_counts(bag)
    except (FileNotFoundError, ValueError) as exc:
        print(f"trot bag {action}: {exc}", file=sys.stderr)
        return 2
    for key, value in read_metadata(bag).items():
        print(f"{key}: {value}")
    for topic, n in counts.items():
        print(f"{topic:<24} {n:>8} messages")
    if action == "info" and (lines := sources_timeline(bag)[0]):
        print(f"sources ({SOURCES_TOPIC}: each topic's publishers from the bag's start, then each change; "
              "! more than one):")  # fmt: skip
        print("\n".join(lines))
    return 0


@dataclass
class ReplayConfig:
    """``trot replay {render,resim,shadow,play} BAG``: look at, re-simulate, shadow-test or re-publish an episode."""

    action: tyro.conf.Positional[Literal["render", "resim", "shadow", "play"]]
    bag: tyro.conf.Positional[Path]
    out: Path | None = None
    """Report folder (default: BAG_replay/ next to the bag)."""
    policy: str | None = None
    """shadow: the policy to vet (folder, policy.onnx or shipped name); resim: PD gains from this artifact."""
    fps: float = 30.0
    """render: video frame rate."""
    video: bool = True
    """render: the video too (--no-video: plots and report only)."""
    threshold: float = 0.2
    """shadow: a target difference (rad) beyond this counts as divergence."""
    rate: float = 1.0
    """play: speed factor (0 = as fast as possible)."""
    loop: bool = False
    """play: start over at the end."""
    topics: list[str] = dataclasses.field(default_factory=list)
    """play: only these topics ([] = all)."""
    exclude: list[str] = dataclasses.field(default_factory=list)
    """play: not these topics."""
    start_offset: float = 0.0
    """play: skip this many seconds of the bag."""


def replay_cmd(argv: list[str]) -> int:
    from trot.policies.artifact import ArtifactError
    from trot.replay.episode import ReplayError
    from trot.replay.report import render_cmd, resim_cmd, shadow_cmd

    cfg = tyro.cli(ReplayConfig, args=argv, prog="trot replay")
    out = cfg.out or cfg.bag.with_name(cfg.bag.name + "_replay")
    if cfg.action == "play":  # a ROS node re-publishing the bag, like `ros2 bag play`
        from trot.ros_nodes.play_node import main as play_main

        params = {"bag": str(cfg.bag), "rate": cfg.rate, "loop": cfg.loop, "start_offset_s": cfg.start_offset}
        args = [a for k, v in params.items() for a in ("-p", f"{k}:={str(v).lower() if isinstance(v, bool) else v}")]
        for key, values in (("topics", cfg.topics), ("exclude", cfg.exclude)):
            if values:
                args += ["-p", f"{key}:=[{','.join(values)}]"]
        return play_main(["trot_play", "--ros-args", *args])
    try:
        if cfg.action == "render":
            result = render_cmd(cfg.bag, out, fps=cfg.fps, video=cfg.video)
            print(f"rendered in {result['seconds']:.1f} s")
        elif cfg.action == "resim":
            result = resim_cmd(cfg.bag, out, cfg.policy)
            print(f"re-simulated {result['seconds_simulated']:.1f} s at {result['real_time_factor']:.0f}x real time; "
                  f"joint RMS divergence {result['joint_rms_mean_rad']:.4f} rad, base velocity divergence "
                  f"{result['base_vel_error_mean_mps']} m/s")  # fmt: skip
        else:
            if not cfg.policy:
                print("trot replay shadow: --policy is required (the policy to vet)", file=sys.stderr)
                return 2
            result = shadow_cmd(cfg.bag, out, cfg.policy, cfg.threshold)
            print(f"shadow {cfg.policy}: {result['ticks']} ticks, first divergence {result['first_divergence_s']} s")
    except (ReplayError, ArtifactError) as exc:
        print(f"trot replay {cfg.action}: {exc}", file=sys.stderr)
        return 2
    for note in dict.fromkeys(result.get("notes", [])):
        print(f"note: {note}")
    print(f"report: {out / 'report.md'}")
    return 0


COMMANDS = {
    "demo": demo,
    "replay": replay_cmd,
    "deploy": deploy_cmd,
    "bag": bag_cmd,
    "bench-env": bench_env_cmd,
    "train": train_cmd,
    "eval": eval_cmd,
    "export": export_cmd,
}
HELP = {
    "demo": "the Go2 task's contract and speed, a short PPO run, its evaluation and video",
    "deploy": "--sim: MuJoCo robot node + policy node + recorder over ROS 2, scripted commands, one bag",
    "bag": "info BAG | recover BAG (a bag whose recorder was killed)",
    "replay": "render | resim | shadow | play BAG: video + plots, re-simulation, another policy on the log, re-publish",
    "bench-env": "env steps/s with all randomizations vs raw MuJoCo physics",
    "train": "PPO: trot train go2-flat | --env Hopper-v5 | --resume RUN_DIR  [overrides]",
    "eval": "evaluate a run's checkpoint: tracking error, falls, video, training curve",
    "export": "export a run as an ONNX policy artifact with its contract: trot export RUN -o policies/NAME",
}
RAW_ARGV = {
    "train": train_cmd,
    "eval": eval_cmd,
    "export": export_cmd,
    "deploy": deploy_cmd,
    "bag": bag_cmd,
    "replay": replay_cmd,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: trot {" + ",".join(COMMANDS) + "} [--help]")
        for cmd, text in HELP.items():
            print(f"  {cmd:<10} {text}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"trot: unknown command {name!r} (known: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    if name in RAW_ARGV:
        return RAW_ARGV[name](rest)
    fn = COMMANDS[name]
    config_type = {"demo": DemoConfig, "bench-env": EnvBenchConfig}[name]
    cfg = tyro.cli(config_type, args=rest, prog=f"trot {name}")
    try:
        fn(cfg)
    except ConfigError as exc:
        print(f"trot {name}: config error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
