from training.bench import EnvBenchConfig, bench_env


def test_env_bench_reports_consistent_figures() -> None:
    r = bench_env(EnvBenchConfig(num_envs=16, steps=5, warmup=1, nthread=2))
    assert r["env_steps_per_s"] > 0 and r["raw_physics_steps_per_s"] > 0
    assert (
        abs(r["raw_env_steps_per_s"] * r["decimation"] - r["raw_physics_steps_per_s"])
        < 1e-6 * r["raw_physics_steps_per_s"]
    )
    assert abs(r["ratio"] - r["env_steps_per_s"] / r["raw_env_steps_per_s"]) < 1e-9
