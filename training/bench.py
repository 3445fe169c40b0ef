"""Environment throughput benchmark: the task against the raw physics of the same models."""

from __future__ import annotations

import time
from dataclasses import dataclass

import mujoco
import numpy as np
from mujoco import rollout

from trot.training.tasks.velocity.config import EnvConfig
from trot.training.tasks.velocity.env import CTRL_SPEC, LocomotionEnv


@dataclass
class EnvBenchConfig:
    """``trot bench-env``: env steps/s with every randomization on vs. raw MuJoCo stepping."""

    robot: str = "go2"
    num_envs: int = 1024
    steps: int = 200
    """Control steps timed (after warm-up), 4 s of simulated time; robots fall and reset."""
    warmup: int = 10
    nthread: int = 0
    """Physics threads; 0 = all cores."""
    action_std: float = 0.5
    """Std of the random actions (they make robots fall, so resets are part of the figure)."""
    seed: int = 0


def bench_env(cfg: EnvBenchConfig, rounds: int = 5) -> dict[str, float]:
    """Task and raw physics timed in alternating rounds, so machine-speed drift hits both alike."""
    env = LocomotionEnv(EnvConfig(robot=cfg.robot, num_envs=cfg.num_envs, nthread=cfg.nthread), seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    n, nj = env.num_envs, env.contract.num_joints
    env.reset()
    actions = rng.normal(0.0, cfg.action_std, (cfg.warmup + cfg.steps, n, nj))
    for k in range(cfg.warmup):
        env.step(actions[k])

    # Raw physics: the same (randomized) models, the same thread count and number of physics
    # steps per call, nothing but mujoco.rollout in the loop.
    state = env.state.copy()
    ctrl = env._ctrl.copy()
    state_out = np.zeros_like(env._state_out)
    sensor_out = np.zeros_like(env._sensor_out)
    datas = [mujoco.MjData(env.model) for _ in env._datas]
    pool = rollout.Rollout(nthread=len(datas))

    def raw_step() -> None:
        pool.rollout(env.models, datas, state, ctrl, control_spec=CTRL_SPEC, skip_checks=True,
                     nstep=env.decimation, state=state_out, sensordata=sensor_out)  # fmt: skip
        state[:] = state_out[:, -1]

    for _ in range(cfg.warmup):
        raw_step()
    task_time = raw_time = 0.0
    resets = 0
    per_round = max(1, cfg.steps // rounds)
    done_steps = 0
    for r in range(rounds):
        count = per_round if r < rounds - 1 else cfg.steps - done_steps
        t0 = time.perf_counter()
        for k in range(done_steps, done_steps + count):
            _, _, term, trunc, _ = env.step(actions[cfg.warmup + k])
            resets += int(term.sum() + trunc.sum())
        task_time += time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(count):
            raw_step()
        raw_time += time.perf_counter() - t0
        done_steps += count
    pool.close()
    env.close()
    env_sps = cfg.steps * n / task_time
    physics_sps = cfg.steps * n * env.decimation / raw_time
    raw_env_sps = physics_sps / env.decimation
    return {
        "num_envs": n,
        "threads": len(datas),
        "decimation": env.decimation,
        "env_steps_per_s": env_sps,
        "raw_physics_steps_per_s": physics_sps,
        "raw_env_steps_per_s": raw_env_sps,
        "ratio": env_sps / raw_env_sps,
        "resets_during_timing": resets,
    }


def print_env_bench(result: dict[str, float]) -> None:
    print(
        f"go2-flat, {result['num_envs']} envs, {result['threads']} threads, decimation {result['decimation']}, "
        f"all randomizations on ({result['resets_during_timing']} resets during timing)"
    )
    print(f"  task env steps/s        : {result['env_steps_per_s']:10.0f}")
    print(f"  raw physics steps/s     : {result['raw_physics_steps_per_s']:10.0f}")
    print(f"  raw limit env steps/s   : {result['raw_env_steps_per_s']:10.0f}  (physics / decimation)")
    print(f"  ratio task / raw        : {result['ratio']:10.3f}  (target >= 0.75)")
