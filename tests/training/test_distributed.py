"""Real torch.distributed (gloo) across processes: normalizer sync and identical parameters."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trot.training.ppo.normalizer import EmpiricalNormalizer

ROOT = Path(__file__).resolve().parents[2]


def _normalizer_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    rng = np.random.default_rng(rank)
    norm = EmpiricalNormalizer(3)
    for _ in range(3):
        norm.update(torch.tensor(rng.normal(rank * 5.0, 1.0 + rank, size=(20 + rank, 3)), dtype=torch.float32))
    torch.save({"mean": norm.mean, "var": norm.var}, Path(out_dir) / f"norm{rank}.pt")
    dist.destroy_process_group()


def test_normalizer_statistics_are_global_across_ranks(tmp_path: Path) -> None:
    mp.spawn(_normalizer_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "norm0.pt"), torch.load(tmp_path / "norm1.pt")
    torch.testing.assert_close(a["mean"], b["mean"])
    data = []
    for rank in range(2):
        rng = np.random.default_rng(rank)
        data += [rng.normal(rank * 5.0, 1.0 + rank, size=(20 + rank, 3)) for _ in range(3)]
    everything = np.concatenate(data)
    np.testing.assert_allclose(a["mean"].numpy(), everything.mean(0), rtol=1e-5)
    np.testing.assert_allclose(a["var"].numpy(), everything.var(0), rtol=1e-4)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_torchrun_two_ranks_hold_identical_parameters(tmp_path: Path, compiled: bool) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
        str(Path(__file__).with_name("dist_train_worker.py")), str(tmp_path), "compile" if compiled else "eager",
    ]  # fmt: skip
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert not torch.equal(r0["obs"], r1["obs"]), "ranks should collect different data"
    assert any(not torch.equal(r0["initial"][k], r0["params"][k]) for k in r0["params"]), "no update happened"
    for name in r0["params"]:
        torch.testing.assert_close(r0["params"][name], r1["params"][name], rtol=0, atol=0, msg=name)
    # only rank 0 wrote the run folder
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    ck = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    assert len(ck["ranks"]) == 2 and ck["meta"]["world_size"] == 2
