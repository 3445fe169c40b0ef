"""Env throughput vs the raw MuJoCo physics limit. Same as ``trot bench-env``."""

import tyro

from trot.sim.gl import choose_offscreen_gl

choose_offscreen_gl()  # before mujoco's first import, which reads MUJOCO_GL (see trot.sim.gl)
from trot.training.bench import EnvBenchConfig, bench_env, print_env_bench

if __name__ == "__main__":
    print_env_bench(bench_env(tyro.cli(EnvBenchConfig)))
