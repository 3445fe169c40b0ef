"""``trot train``: PPO on a trot locomotion task or on any Gymnasium Box-action environment.

trot train go2-flat --seed 1 --env.num-envs 512 --ppo.learning-rate 3e-4
trot train --env Hopper-v5
trot train --resume runs/go2-flat_20261126-130000_s1 [--max-iterations 600]
torchrun --nproc_per_node 2 -m trot.training.train go2-flat     # data-parallel ranks
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import tyro

from trot.sim.strict import ConfigError
from trot.training.ppo.config import IncompatibleRun
from trot.training.run_config import TrainConfig, default_config, is_gym_task, load_config, save_config
from trot.training.tasks import TASKS, make_task_config


def build_env(cfg: TrainConfig, rank: int = 0, local_world: int = 1):
    from trot.training.ppo.envs import GymTrainEnv, LocomotionTrainEnv

    seed = cfg.seed + rank
    if is_gym_task(cfg.task):
        return GymTrainEnv(cfg.task, cfg.env.num_envs, seed, workers=cfg.gym_workers if cfg.gym_async else 1)
    env_cfg = dataclasses.replace(cfg.env)
    if local_world > 1 and env_cfg.nthread == 0:
        env_cfg.nthread = max(1, (os.cpu_count() or 1) // local_world)
    return LocomotionTrainEnv(env_cfg, seed)


def run_meta(cfg: TrainConfig, env: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"task": cfg.task, "robot": None}
    if hasattr(env, "env") and hasattr(env.env, "contract"):
        meta["robot"] = env.env.contract.robot
        meta["contract"] = env.env.contract.to_json()
    return meta


def locomotion_video_fn(cfg: TrainConfig):
    def record(policy, path: Path) -> None:
        from trot.training.evaluate import record_video

        record_video(cfg.env, policy, path, seconds=cfg.video_seconds, seed=cfg.seed)

    return record


def machine_info() -> dict[str, Any]:
    import platform

    import mujoco
    import torch

    return {
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mujoco": mujoco.__version__,
    }


def train(cfg: TrainConfig, resume: Path | None = None, progress: bool = True, command: str = "") -> Path:
    """Run (or resume) training; returns the run folder."""
    import torch.distributed as dist

    from trot.training.ppo.runner import Runner, distributed

    rank, world, local_world = 0, 1, 1
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not distributed():
        dist.init_process_group(backend="nccl" if cfg.device == "cuda" else "gloo")
    if distributed():
        rank, world = dist.get_rank(), dist.get_world_size()
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))

    if resume is not None:
        run_dir = resume
    else:
        name = cfg.run_name or f"{cfg.task}_{datetime.now():%Y%m%d-%H%M%S}_s{cfg.seed}"
        run_dir = cfg.log_dir / name
    if distributed():
        holder = [str(run_dir)]
        dist.broadcast_object_list(holder, src=0)
        run_dir = Path(holder[0])

    env = build_env(cfg, rank, local_world)
    try:
        if cfg.ppo.symmetry_augmentation and not is_gym_task(cfg.task) and env.env.robot.mirror is None:
            # a default of the locomotion tasks, not a requirement: a new robot trains without it
            if rank == 0:
                print(f"trot train: robot {env.env.robot.name!r} has no 'mirror' section: training without "
                      "symmetry augmentation (docs/robots.md says how to add one)", file=sys.stderr)  # fmt: skip
            cfg.ppo.symmetry_augmentation, cfg.ppo.mirror_loss_coef = False, 0.0
        video = locomotion_video_fn(cfg) if not is_gym_task(cfg.task) and cfg.video_interval else None
        runner = Runner(cfg, env, run_dir, run_meta(cfg, env), video_fn=video)
        if resume is not None:
            checkpoint = run_dir / "checkpoints" / "last.pt"
            if not checkpoint.is_file():
                raise ConfigError(f"resume: no checkpoint at {checkpoint}")
            runner.load(checkpoint)  # raises IncompatibleRun before anything is written
        if rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir)
            if resume is None:
                info = {"command": command, "world_size": world, "machine": machine_info()}
            else:  # a resume is part of how the policy was made: the export's provenance lists it
                info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
                info.setdefault("resumes", []).append(
                    {"command": command, "from_iteration": runner.iteration, "machine": machine_info()}
                )
            (run_dir / "run.json").write_text(json.dumps(info, indent=2))
            print(f"run folder: {run_dir}" + (f" (resuming at iteration {runner.iteration})" if resume else ""))
        runner.learn(progress=progress)
    finally:
        env.close()
    return run_dir


def parse_args(argv: list[str]) -> tuple[TrainConfig, Path | None]:
    """Positional task or ``--env ID`` (a Gymnasium id) or ``--resume RUN_DIR``, then overrides."""
    rest = list(argv)
    task, resume = None, None
    if "--resume" in rest:
        i = rest.index("--resume")
        if i + 1 >= len(rest):
            raise ConfigError("resume: --resume needs a run folder")
        resume = Path(rest[i + 1])
        del rest[i : i + 2]
    if "--env" in rest:
        i = rest.index("--env")
        if i + 1 >= len(rest):
            raise ConfigError("env: --env needs a Gymnasium environment id")
        task = rest[i + 1]
        del rest[i : i + 2]
    elif rest and not rest[0].startswith("-"):
        task = rest.pop(0)
        if task not in TASKS:
            raise ConfigError(f"task: unknown task {task!r} (trot tasks: {sorted(TASKS)}; Gymnasium: --env ID)")
    if resume is not None:
        default = load_config(resume, complete=True)
        if task is not None and task != default.task:
            raise IncompatibleRun(f"task: the run in {resume} trains {default.task!r}, not {task!r}")
    else:
        default = default_config(task or "go2-flat")
    cfg = tyro.cli(TrainConfig, default=default, args=rest, prog="trot train")
    if resume is not None:
        check_resume_overrides(default, cfg)
    return cfg, resume


def check_resume_overrides(saved: TrainConfig, new: TrainConfig) -> None:
    """A resumed run may run longer or log differently, not change what it learns."""
    allowed = {"max_iterations", "max_minutes", "save_interval", "video_interval", "torch_threads", "device",
               "compile", "gym_async", "gym_workers"}  # fmt: skip
    for f in dataclasses.fields(TrainConfig):
        if f.name not in allowed and getattr(saved, f.name) != getattr(new, f.name):
            raise IncompatibleRun(f"{f.name}: cannot be changed when resuming (it would change what the run learns)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg, resume = parse_args(argv)  # torch is not imported yet: a bad argument is refused at once
        if not is_gym_task(cfg.task):
            make_task_config(cfg.task)
        return _train_until_done_or_diverged(cfg, resume, command=" ".join(["trot", "train", *argv]))
    except (ConfigError, IncompatibleRun) as exc:
        print(f"trot train: {exc}", file=sys.stderr)
        return 2


def _train_until_done_or_diverged(cfg: TrainConfig, resume: Path | None, command: str) -> int:
    from trot.training.ppo.runner import TrainingDiverged

    try:
        train(cfg, resume, command=command)
    except TrainingDiverged as exc:
        print(f"trot train: training diverged at {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
