"""Env throughput vs the raw MuJoCo physics limit. Same as ``trot bench-env``."""

import tyro

import training  # noqa: F401  (sets MUJOCO_GL before mujoco loads)
from training.bench import EnvBenchConfig, bench_env, print_env_bench

if __name__ == "__main__":
    print_env_bench(bench_env(tyro.cli(EnvBenchConfig)))
