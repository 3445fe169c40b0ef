"""Where `trot train go2-flat`'s time goes, and what each physics setting costs.

Part 1, the profile: the task's training defaults (512 environments, 24 steps each per iteration,
symmetry augmentation), run for a few iterations after a warm-up, eager and with ``--compile``.
Each iteration is split into the physics (``mujoco.rollout``), the environment's own numpy work
(action mapping and latency, rewards, terminations, observations, resets), the policy's forward
pass during collection, the rest of collection (storage, tensors), the PPO update and the
observation normalizer's update.

Part 2, physics cost: the task environment's steps/s with random actions (robots fall and reset)
on variants of the physics, each timed in rounds alternating with the defaults, so drift in the
machine's speed hits both alike. What the variants change in a policy's behaviour is measured by
``bench/contact_model.py``.

    python bench/step_profile.py [--iterations 20] [--skip-physics] [--skip-profile]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # (a checkout)

from trot.sim.gl import choose_offscreen_gl  # noqa: E402

choose_offscreen_gl()  # before mujoco's first import
from trot.sim.randomization import Range  # noqa: E402
from trot.sim.robot import load_robot  # noqa: E402
from trot.sim.world import with_mjcf_contacts  # noqa: E402
from trot.training.run_config import default_config  # noqa: E402
from trot.training.tasks.velocity.env import LocomotionEnv  # noqa: E402


class Timers:
    """Wall-clock seconds per named part, accumulated by wrapping callables."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.enabled = True

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.enabled:
                    self.seconds[name] += time.perf_counter() - t0

        return timed


class _TimedRollout:
    """``mujoco.rollout.Rollout`` with its ``rollout`` call timed."""

    def __init__(self, inner: Any, timers: Timers) -> None:
        self.inner = inner
        self.rollout = timers.wrap("physics", inner.rollout)

    def close(self) -> None:
        self.inner.close()


def profile(compile: bool, warmup: int, iterations: int, seed: int) -> dict[str, float]:
    """Seconds per iteration of each part of ``trot train go2-flat``, after ``warmup`` iterations."""
    import torch

    from trot.training.ppo.runner import Runner
    from trot.training.train import build_env, run_meta

    cfg = default_config("go2-flat")
    cfg.seed, cfg.compile, cfg.save_interval = seed, compile, 10**6
    cfg.max_iterations = warmup
    env = build_env(cfg)
    timers = Timers()
    inner = env.env
    inner._rollout = _TimedRollout(inner._rollout, timers)
    env.step = timers.wrap("env step", env.step)
    with tempfile.TemporaryDirectory() as run_dir:
        runner = Runner(cfg, env, Path(run_dir), run_meta(cfg, env))
        runner._act = timers.wrap("policy forward", runner._act)
        runner.collect = timers.wrap("collection", runner.collect)
        runner.alg.update = timers.wrap("PPO update", runner.alg.update)
        runner.policy.update_normalizers = timers.wrap("normalizer update", runner.policy.update_normalizers)
        t0 = time.perf_counter()
        runner.learn(progress=False)
        warmup_s = time.perf_counter() - t0
        timers.seconds.clear()
        runner.cfg.max_iterations = warmup + iterations
        t0 = time.perf_counter()
        runner.learn(progress=False)
        total = time.perf_counter() - t0
    env.close()
    s = {k: v / iterations for k, v in timers.seconds.items()}
    out = {
        "physics": s["physics"],
        "env numpy": s["env step"] - s["physics"],
        "policy forward": s["policy forward"],
        "collection, rest": s["collection"] - s["env step"] - s["policy forward"],
        "PPO update": s["PPO update"],
        "normalizer update": s["normalizer update"],
    }
    out["iteration"] = total / iterations
    out["warm-up iteration"] = warmup_s / warmup
    out["env steps per iteration"] = cfg.env.num_envs * cfg.steps_per_env
    out["threads"] = torch.get_num_threads()
    return out


def print_profile(eager: dict[str, float], compiled: dict[str, float] | None) -> None:
    print(f"\n## A training iteration ({eager['env steps per iteration']:,.0f} env steps, "
          f"torch threads {eager['threads']:.0f}), seconds per iteration")  # fmt: skip
    cols = ["eager"] + (["--compile"] if compiled else [])
    print("| part | " + " | ".join(cols) + " |")
    print("| --- |" + " --- |" * len(cols))
    parts = ["physics", "env numpy", "policy forward", "collection, rest", "PPO update", "normalizer update",
             "iteration", "warm-up iteration"]  # fmt: skip
    for part in parts:
        row = [eager] + ([compiled] if compiled else [])
        cells = []
        for r in row:
            share = f" ({r[part] / r['iteration']:.0%})" if part not in ("iteration", "warm-up iteration") else ""
            cells.append(f"{r[part]:.3f}{share}")
        print(f"| {part} | " + " | ".join(cells) + " |")
    for name, r in [("eager", eager)] + ([("--compile", compiled)] if compiled else []):
        print(f"{name}: {r['env steps per iteration'] / r['iteration']:,.0f} env steps/s of training")


# Variants of the physics: name -> (robot config change, randomization change). Each is timed with
# the training's randomizations on and random actions.
def _timestep(robot: Any, dt: float) -> Any:
    sim = dataclasses.replace(robot.sim, timestep=dt, decimation=round(robot.sim.control_dt / dt))
    return dataclasses.replace(robot, sim=sim)


def _iterations(robot: Any, n: int) -> Any:
    return dataclasses.replace(robot, sim=dataclasses.replace(robot.sim, iterations=n, ls_iterations=2 * n))


def _cone(low: int, high: int) -> Callable:
    def change(r: Any) -> None:
        r.elliptic_cone = Range(low, high)

    return change


VARIANTS: dict[str, tuple[Callable | None, Callable | None]] = {
    "all environments pyramidal (4 iterations)": (None, _cone(0, 0)),
    "all environments elliptic (10 iterations)": (None, _cone(1, 1)),
    "pyramidal, 10 iterations": (lambda r: _iterations(r, 10), _cone(0, 0)),
    "2 ms step (decimation 10)": (lambda r: _timestep(r, 0.002), None),
    "the MJCF's own contact model (all collision geoms, its solver, 2 ms)": (with_mjcf_contacts, _cone(0, 0)),
}


def physics_cost(num_envs: int, steps: int, rounds: int, seed: int) -> list[tuple[str, float, float]]:
    """(variant, its env steps/s, the defaults' env steps/s in the same rounds)."""
    base_cfg = default_config("go2-flat").env
    base_cfg.num_envs = num_envs
    robot = load_robot(base_cfg.robot)
    rng = np.random.default_rng(seed)

    def make(robot_change: Callable | None, dr_change: Callable | None) -> LocomotionEnv:
        cfg = dataclasses.replace(base_cfg, randomization=dataclasses.replace(base_cfg.randomization))
        if dr_change is not None:
            dr_change(cfg.randomization)
        env = LocomotionEnv(cfg, seed=seed, robot=robot_change(robot) if robot_change else robot)
        env.reset()
        return env

    def run(env: LocomotionEnv, count: int) -> float:
        actions = rng.normal(0.0, 0.5, (count, env.num_envs, env.contract.num_joints))
        t0 = time.perf_counter()
        for a in actions:
            env.step(a)
        return time.perf_counter() - t0

    base = make(None, None)
    run(base, 10)
    results = []
    for name, (robot_change, dr_change) in VARIANTS.items():
        env = make(robot_change, dr_change)
        run(env, 10)
        t_var = t_base = 0.0
        for _ in range(rounds):
            t_var += run(env, steps // rounds)
            t_base += run(base, steps // rounds)
        env.close()
        n = (steps // rounds) * rounds * num_envs
        results.append((name, n / t_var, n / t_base))
        print(f"  {name}: {n / t_var:,.0f} env steps/s (defaults {n / t_base:,.0f})", flush=True)
    base.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=20, help="iterations timed, after the warm-up")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="profile eager PyTorch only")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--skip-physics", action="store_true")
    parser.add_argument("--num-envs", type=int, default=512, help="environments in the physics-cost part")
    parser.add_argument("--steps", type=int, default=100, help="control steps per variant in the physics part")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not args.skip_profile:
        eager = profile(False, args.warmup, args.iterations, args.seed)
        compiled = None if args.no_compile else profile(True, args.warmup, args.iterations, args.seed)
        print_profile(eager, compiled)
    if not args.skip_physics:
        print(f"\n## Physics variants ({args.num_envs} environments, random actions, the training's randomizations)")
        results = physics_cost(args.num_envs, args.steps, 4, args.seed)
        print("| variant | env steps/s | against the defaults |")
        print("| --- | --- | --- |")
        for name, sps, base in results:
            print(f"| {name} | {sps:,.0f} | {sps / base:.2f} |")


if __name__ == "__main__":
    main()
