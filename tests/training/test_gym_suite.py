"""Every task of the Gymnasium MuJoCo locomotion suite trains with trot's Gymnasium defaults: a
few iterations each, with finite losses and episodes that complete (time limit or termination)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from trot.testing.faults.training import training_metrics
from trot.training.run_config import GYM_SUITE, default_config
from trot.training.train import train


@pytest.mark.parametrize("env_id", GYM_SUITE)
def test_suite_task_trains_a_few_iterations(env_id: str, tmp_path: Path) -> None:
    cfg = default_config(env_id)
    cfg.env.num_envs, cfg.steps_per_env, cfg.max_iterations = 2, 512, 2  # 1024 steps per env: past the 1000-step limit
    cfg.compile, cfg.gym_async, cfg.ppo.num_minibatches = False, False, 4
    cfg.log_dir, cfg.run_name = tmp_path, "run"
    run = train(cfg, progress=False)

    rows = training_metrics(tmp_path / "run")
    assert [r["iteration"] for r in rows] == [1, 2]
    assert all(np.isfinite(r[k]) for r in rows for k in ("loss/value", "loss/surrogate", "policy/kl"))
    returns, lengths, _ = torch.load(run / "checkpoints" / "last.pt", weights_only=False)["ranks"][0]["episodes"]
    assert len(returns) >= 2 and all(np.isfinite(returns)), (env_id, returns)
    assert all(0 < n <= 1000 for n in lengths)
