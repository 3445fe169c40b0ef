"""Real short training runs: smoke, resume continuity, bootstrapping, bad input, divergence."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from trot.policies.runtime import PolicyRuntime
from trot.sim.strict import ConfigError
from trot.testing.faults.training import SMALL_RUN as SMALL
from trot.testing.faults.training import interrupted_and_resumed_run
from trot.testing.faults.training import training_metrics as metrics
from trot.training.ppo.envs import LocomotionTrainEnv
from trot.training.ppo.runner import Runner, TrainingDiverged
from trot.training.train import IncompatibleRun, TrainConfig, build_env, parse_args, run_meta

ROOT = Path(__file__).resolve().parents[2]


def trot(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trot.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kw
    )


def params(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=False)["model"]


def test_cli_overrides_are_typed() -> None:
    cfg, resume = parse_args(["go2-flat", "--seed", "3", "--env.num-envs", "512", "--ppo.learning-rate", "3e-4"])
    assert (cfg.task, cfg.seed, cfg.env.num_envs, cfg.ppo.learning_rate, resume) == ("go2-flat", 3, 512, 3e-4, None)
    gym_cfg, _ = parse_args(["--env", "Hopper-v5"])
    assert gym_cfg.task == "Hopper-v5" and gym_cfg.reward_normalization and gym_cfg.ppo.schedule == "linear"


def test_smoke_go2_training_logs_everything(tmp_path: Path) -> None:
    r = trot("train", "go2-flat", *SMALL, "--max-iterations", "2", "--log-dir", str(tmp_path), "--run-name", "s",
             "--video-interval", "2", "--video-seconds", "0.2")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "s"
    assert (run / "videos" / "iter_00002.mp4").stat().st_size > 1000
    rows = metrics(run)
    assert [row["iteration"] for row in rows] == [1, 2]
    keys = set(rows[-1])
    for key in ("loss/surrogate", "loss/value", "loss/entropy", "policy/kl", "policy/learning_rate",
                "policy/action_std", "perf/env_steps_per_s", "perf/update_s", "reward_terms/tracking_lin_vel",
                "reward_terms/feet_air_time"):  # fmt: skip
        assert key in keys
    assert all(np.isfinite(v) for v in rows[-1].values())
    assert (run / "config.yaml").is_file() and list((run / "tb").iterdir())
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert ck["iteration"] == 2 and ck["meta"]["robot"] == "go2" and "contract" in ck["meta"]


def test_smoke_gymnasium_training_in_worker_processes(tmp_path: Path) -> None:
    r = trot(
        "train", "--env", "Pendulum-v1", "--env.num-envs", "2", "--steps-per-env", "64", "--max-iterations", "2",
        "--ppo.num-minibatches", "4", "--no-compile", "--log-dir", str(tmp_path), "--run-name", "g",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    rows = metrics(tmp_path / "g")
    assert rows[-1]["perf/total_env_steps"] == 2 * 64 * 2
    assert all(np.isfinite(rows[-1][k]) for k in ("loss/value", "loss/surrogate"))


def test_ctrl_c_on_a_gymnasium_run_checkpoints_and_stops_its_worker_processes(tmp_path: Path) -> None:
    """Ctrl-C signals the whole process group: the worker processes must keep serving the
    trainer until it has finished its iteration and saved, then exit with it."""
    run = tmp_path / "g"
    proc = subprocess.Popen(
        [sys.executable, "-m", "trot.cli", "train", "--env", "Hopper-v5", "--env.num-envs", "4", "--steps-per-env",
         "64", "--max-iterations", "1000", "--save-interval", "1000", "--no-compile", "--log-dir", str(tmp_path),
         "--run-name", "g"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while not (run / "metrics.jsonl").exists() or len((run / "metrics.jsonl").read_text().splitlines()) < 3:
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.time() < deadline, "no third iteration within 120 s"
            time.sleep(0.05)
        workers = [int(pid) for pid in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                      text=True).stdout.split()]  # fmt: skip
        assert workers, "a Gymnasium run on this machine should have a worker process"
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert 3 <= ck["iteration"] < 1000
    assert ck["iteration"] == len(metrics(run))
    for pid in workers:  # the workers ended with the trainer
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_resume_after_sigterm_continues_exactly_like_an_uninterrupted_run(tmp_path: Path) -> None:
    """(SIGKILL: tests/bench/test_faults.py, the same procedure as a row of the reliability table.)"""
    iterations = 6
    r = trot("train", "go2-flat", *SMALL, "--max-iterations", str(iterations), "--log-dir", str(tmp_path),
             "--run-name", "straight")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    resumed = interrupted_and_resumed_run(tmp_path, "resumed", signal.SIGTERM, iterations)
    straight_rows, resumed_rows = metrics(tmp_path / "straight"), metrics(resumed)
    assert [row["iteration"] for row in resumed_rows] == list(range(1, iterations + 1))
    for a, b in zip(straight_rows, resumed_rows, strict=True):
        for key in ("loss/value", "loss/surrogate", "policy/learning_rate", "perf/total_env_steps"):
            assert a[key] == b[key], (a["iteration"], key)
        assert a.get("episode/mean_return") == b.get("episode/mean_return")
    straight, again = params(tmp_path / "straight"), params(resumed)
    for name in straight:
        torch.testing.assert_close(straight[name], again[name], rtol=0, atol=0, msg=name)
    info = json.loads((resumed / "run.json").read_text())
    assert info["command"].startswith("trot train go2-flat")
    [resume] = info["resumes"]  # how the run was made includes its resume
    assert resume["command"] == f"trot train --resume {resumed}" and 1 <= resume["from_iteration"] < iterations
    from trot.training.export import ExportConfig, export

    artifact = export(ExportConfig(run=resumed, out=tmp_path / "policy", parity_samples=100))
    provenance = PolicyRuntime(artifact).contract.provenance
    assert provenance["training_resumed"] == f"at iteration {resume['from_iteration']}: {resume['command']}"


def test_time_outs_are_bootstrapped_with_the_final_state_value(quiet_cfg) -> None:
    cfg = TrainConfig(task="go2-flat", steps_per_env=12, max_iterations=1)
    cfg.env = quiet_cfg(num_envs=4)
    cfg.env.episode_length_s = 0.1  # time-out every 5 steps
    cfg.policy.normalize_obs = False  # keep V fixed during collection so it can be recomputed here
    env = LocomotionTrainEnv(cfg.env, seed=0)
    steps = []
    real_step = env.step

    def recording_step(actions):
        out = real_step(actions)
        steps.append(out)
        return out

    env.step = recording_step
    runner = Runner(cfg, env, None, run_meta(cfg, env))
    runner.collect()
    storage = runner.storage
    n_timeouts = 0
    for t, step in enumerate(steps):
        expected = torch.from_numpy(step.rewards).float()
        if step.time_outs.any():
            idx = np.flatnonzero(step.time_outs)
            n_timeouts += idx.size
            with torch.no_grad():
                expected[idx] += cfg.ppo.gamma * runner.policy.value(torch.from_numpy(step.final_critic_obs[idx]))
        torch.testing.assert_close(storage.rewards[t], expected)
        torch.testing.assert_close(storage.dones[t], torch.from_numpy(step.dones).float())
    assert n_timeouts == 8  # steps 5 and 10, 4 envs each
    env.close()


def test_non_finite_parameters_stop_with_the_iteration_and_keep_the_checkpoint(tmp_path: Path, quiet_cfg) -> None:
    cfg = TrainConfig(task="go2-flat", steps_per_env=8, max_iterations=5, save_interval=1)
    cfg.env = quiet_cfg(num_envs=8)
    env = build_env(cfg)
    runner = Runner(cfg, env, tmp_path, run_meta(cfg, env))
    cfg.max_iterations = 2
    runner.learn(progress=False)
    good = hashlib.sha256((tmp_path / "checkpoints" / "last.pt").read_bytes()).hexdigest()
    with torch.no_grad():
        runner.policy.critic[-1].bias.fill_(float("nan"))
    cfg.max_iterations = 5
    with pytest.raises(TrainingDiverged, match=r"iteration 3: .*non-finite.*last good checkpoint is kept"):
        runner.learn(progress=False)
    assert hashlib.sha256((tmp_path / "checkpoints" / "last.pt").read_bytes()).hexdigest() == good
    env.close()


def test_bad_input_is_refused_with_the_field(tmp_path: Path) -> None:
    r = trot("train", "go3-flat")
    assert r.returncode == 2 and "unknown task 'go3-flat'" in r.stderr
    r = trot("train", "--env", "NoSuchEnv-v9", "--max-iterations", "1", "--log-dir", str(tmp_path))
    assert r.returncode == 2 and "NoSuchEnv-v9" in r.stderr
    r = trot("train", "go2-flat", "--ppo.learning-rate", "fast")
    assert r.returncode != 0 and "learning-rate" in r.stderr
    assert not list(tmp_path.iterdir()), "nothing may be written for refused runs"


def test_a_refused_argument_is_refused_before_torch_is_imported(tmp_path: Path) -> None:
    """Checking the settings needs no torch, whose import costs seconds: a typo is answered at once."""
    script = ("import sys; from trot.training.train import main; "
              f"rc = main(['--resume', {str(tmp_path / 'nope')!r}]); print(rc, 'torch' in sys.modules)")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "config.yaml not found" in r.stderr, r.stderr
    assert r.stdout.split() == ["2", "False"], (r.stdout, r.stderr)


def test_incompatible_resume_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    r = trot("train", "go2-flat", *SMALL, "--max-iterations", "1", "--log-dir", str(tmp_path), "--run-name", "r")
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "r"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for args, message in [
        (["go1-flat", "--resume", str(run)], "task"),
        (["--resume", str(run), "--ppo.clip-param", "0.3"], "ppo: cannot be changed"),
        (["--resume", str(run), "--env.num-envs", "64"], "env: cannot be changed"),
        (["--resume", str(tmp_path / "nope")], "config.yaml not found"),
    ]:
        r = trot("train", *args)
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr, (args, r.stderr)
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert before == after
    # A run written before a setting existed would resume with today's default for it: refused.
    old = tmp_path / "old"
    shutil.copytree(run, old)
    config = yaml.safe_load((old / "config.yaml").read_text())
    del config["env"]["commands"]["resample_spread_s"]
    (old / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    r = trot("train", "--resume", str(old))
    assert r.returncode == 2 and "config.env.commands.resample_spread_s: missing" in r.stderr, r.stderr


def test_checkpoint_from_a_different_observation_layout_is_refused(tmp_path: Path, quiet_cfg) -> None:
    cfg = TrainConfig(task="go2-flat", steps_per_env=4, max_iterations=1, save_interval=1)
    cfg.env = quiet_cfg(num_envs=4)
    env = build_env(cfg)
    Runner(cfg, env, tmp_path, run_meta(cfg, env)).learn(progress=False)
    env.close()
    cfg.policy.actor_hidden = (32,)
    env = build_env(cfg)
    other = Runner(cfg, env, None, run_meta(cfg, env))
    with pytest.raises(IncompatibleRun, match="policy"):
        other.load(tmp_path / "checkpoints" / "last.pt")
    env.close()
    assert ConfigError  # imported for the CLI tests above
    assert os.path.exists(tmp_path / "checkpoints" / "last.pt")


def test_eval_of_a_standing_policy_measures_the_commanded_speed(quiet_cfg) -> None:
    """A robot that only stands has a forward error equal to the mean |commanded vx|."""
    from trot.training.evaluate import evaluate_policy

    cfg = quiet_cfg(num_envs=1)
    cfg.commands.zero_probability = cfg.commands.single_axis_probability = 0.0  # (always vx = 0.6)
    cfg.commands.lin_vel_x = (0.6, 0.6)
    result = evaluate_policy(cfg, lambda obs: np.zeros((obs.shape[0], 12)), episodes=4, episode_length_s=3.0,
                             randomization=False)  # fmt: skip
    assert result["fall_rate"] == 0.0
    assert result["vx_error_mean"] == pytest.approx(0.6, abs=0.05)


def test_eval_command_on_a_run(tmp_path: Path) -> None:
    r = trot("train", "go2-flat", *SMALL, "--max-iterations", "2", "--log-dir", str(tmp_path), "--run-name", "e")
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "e"
    r = trot("eval", str(run), "--episodes", "3", "--episode-length-s", "1.5", "--video-seconds", "0.4")
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((run / "eval.json").read_text())
    assert result["episodes"] == 3 and result["iteration"] == 2
    falls = result["fall_rate"] * 3  # a share of the 3 episodes counted: 0, 1, 2 or 3 of them fell
    assert falls in (0.0, 1.0, 2.0, 3.0) and result["no_fall_share"] == 1.0 - result["fall_rate"], result
    own = result["mjcf_contacts"]  # the same episodes on the robot MJCF's own contact model
    assert own["episodes"] == 3 and 0.0 <= own["fall_rate"] <= 1.0 and "MJCF's own contacts" in r.stdout, own
    assert (run / "curve.png").stat().st_size > 1000 and (run / "eval.mp4").stat().st_size > 1000
    r = trot("eval", str(tmp_path / "missing"))
    assert r.returncode == 2 and "no checkpoint" in r.stderr
