"""Started by torchrun from test_distributed.py: a short real training on each rank."""

import sys
import warnings
from pathlib import Path

import torch
import torch.distributed as dist

from trot.training.ppo.runner import Runner
from trot.training.train import TrainConfig, build_env, run_meta

out = Path(sys.argv[1])
warnings.filterwarnings("error", message="compile: torch.compile failed")  # compiled must mean compiled
dist.init_process_group("gloo")
rank = dist.get_rank()
cfg = TrainConfig(task="go2-flat", steps_per_env=8, max_iterations=2, save_interval=1, compile=sys.argv[2] == "compile")
cfg.env.num_envs = 16
cfg.env.nthread = 1
env = build_env(cfg, rank=rank, local_world=2)
runner = Runner(cfg, env, out / "run", run_meta(cfg, env))
initial = {k: v.clone() for k, v in runner.policy.state_dict().items()}
obs = runner.obs.clone()
runner.learn(progress=False)
torch.save({"params": runner.policy.state_dict(), "initial": initial, "obs": obs}, out / f"rank{rank}.pt")
env.close()
dist.destroy_process_group()
