"""The ``trot`` command line. Subcommands import their heavy modules lazily."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from training.bench import EnvBenchConfig
from training.strict import ConfigError


@dataclass
class DemoConfig:
    """``trot demo``: build the Go2 task, measure its speed, and film a scripted trot in it."""

    robot: str = "go2"
    seconds: float = 6.0
    """Length of the filmed episode."""
    num_envs: int = 64
    """Environments stepped together (env 0 is filmed)."""
    out: Path = Path("out/demo")
    """Where the video and the summary go."""
    bench_envs: int = 512
    seed: int = 0


def demo(cfg: DemoConfig) -> None:
    import numpy as np
    from rich.console import Console
    from rich.progress import track
    from rich.table import Table

    from training.bench import bench_env, print_env_bench
    from training.envs.config import EnvConfig
    from training.envs.locomotion import LocomotionEnv
    from training.render import Renderer, write_mp4

    console = Console()
    env = LocomotionEnv(EnvConfig(robot=cfg.robot, num_envs=cfg.num_envs), seed=cfg.seed)
    c = env.contract
    table = Table(title=f"{c.robot}: deployment contract (observation layout)")
    table.add_column("term")
    table.add_column("slice")
    table.add_column("scale")
    for term, sl in zip(c.obs_terms, c.term_slices().values(), strict=True):
        table.add_row(term.name, f"{sl.start}:{sl.stop}", f"{term.scale:g}")
    console.print(table)
    console.print(f"joints (policy order): {', '.join(c.joint_names)}; control period {c.control_dt * 1e3:.0f} ms")

    console.rule("throughput")
    print_env_bench(bench_env(EnvBenchConfig(robot=cfg.robot, num_envs=cfg.bench_envs, steps=50)))

    console.rule("scripted trot under domain randomization and pushes")
    env.cfg.commands.zero_probability = 0.0
    env.reset(seed=cfg.seed)
    renderer = Renderer(env.robot)
    steps = int(cfg.seconds / env.dt)
    frames, totals, falls, distance = [], {}, 0, 0.0
    x0 = env.qpos[0, 0]
    for k in track(range(steps), description="simulating + rendering"):
        actions = scripted_trot(k * env.dt, env.num_envs, c.num_joints)
        _, _, fallen, _, info = env.step(actions)
        falls += int(fallen.sum())
        for name, value in info["reward_terms"].items():
            totals[name] = totals.get(name, 0.0) + value
        if k % 2 == 0:  # film at 25 fps
            frames.append(renderer.frame(env.qpos[0]))
        if fallen[0]:
            x0 = env.qpos[0, 0]
        distance = env.qpos[0, 0] - x0
    renderer.close()
    env.close()
    video = write_mp4(frames, cfg.out / "scripted_trot.mp4", fps=0.5 / env.dt)
    terms = Table(title=f"reward terms, summed over {steps} steps (mean over {env.num_envs} envs)")
    terms.add_column("term")
    terms.add_column("sum", justify="right")
    for name, value in totals.items():
        terms.add_row(name, f"{value:+.4f}")
    console.print(terms)
    console.print(f"falls: {falls} across {env.num_envs} envs; env 0 moved {distance:+.2f} m along x")
    console.print(f"video: {video} ({len(frames)} frames, {np.mean(frames[-1]):.0f} mean pixel value)")
    console.print("next: PPO training (`trot train`) arrives with the trainer issue.")


def scripted_trot(t: float, num_envs: int, num_joints: int, freq: float = 2.0):
    """Open-loop diagonal trot in action space (a stand-in policy to exercise the env)."""
    import numpy as np

    phase = 2 * np.pi * freq * t
    legs = np.array([0.0, np.pi, np.pi, 0.0])  # FL, FR, RL, RR: diagonal pairs in phase
    swing = np.sin(phase + legs)
    lift = np.clip(swing, 0.0, None)
    action = np.zeros((num_envs, num_joints))
    action[:, 1::3] = 0.6 * swing  # thigh
    action[:, 2::3] = -1.2 * lift  # calf folds during swing
    return action


def bench_env_cmd(cfg: EnvBenchConfig) -> None:
    from training.bench import bench_env, print_env_bench

    print_env_bench(bench_env(cfg))


COMMANDS = {
    "demo": demo,
    "bench-env": bench_env_cmd,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: trot {" + ",".join(COMMANDS) + "} [--help]")
        print("  demo       build the Go2 task, benchmark it, and film a scripted trot")
        print("  bench-env  env steps/s with all randomizations vs raw MuJoCo physics")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"trot: unknown command {name!r} (known: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
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
