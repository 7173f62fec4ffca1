"""DistributedDataParallel on the CPU: the same train command under torchrun, 2 processes, gloo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from tiny import TRAINING, write_tiny_config

from ssn3d.engine.checkpoint import load_checkpoint, read_checkpoint
from ssn3d.runs.folder import RunPaths
from ssn3d.runs.metrics import read_metrics
from ssn3d.runs.status import read_status

REPO = Path(__file__).resolve().parents[1]


def test_torchrun_two_gloo_processes_train_with_one_writer(tiny_walkers: Path, tmp_path: Path) -> None:
    config = write_tiny_config(
        tmp_path / "ddp.yaml",
        TRAINING,
        {
            "model": {"strategy": "unsupervised"},
            "data": {"root": str(tiny_walkers), "num_ids": 4},
            "train": {"epochs": 5, "iters_per_epoch": 2, "max_steps": 3},
        },
    )
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SSN3D_HOME": str(tmp_path)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "ssn3d",
        "train",
        str(config),
        "--run-dir",
        str(run),
        "--no-progress",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = read_metrics(run).records
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3]  # rank 0 alone writes
    assert [r["step"] for r in records if r["kind"] == "eval"] == [3]
    status = read_status(run)
    assert status["state"] == "done" and status["total_steps"] == 3
    log = RunPaths(run).log.read_text()
    assert "on cpu x 2" in log
    ckpt = read_checkpoint(RunPaths(run).last)
    assert ckpt["sampler"]["world_size"] == 2 and ckpt["step"] == 3
    assert not any(k.startswith("module.") for k in ckpt["model"])  # saved unwrapped: loads without DDP
    model, _, _ = load_checkpoint(RunPaths(run).last)
    with torch.no_grad():
        assert model(torch.randn(1, 4, 3, 64, 32)).shape == (1, 32)


def _mining_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from ssn3d.engine.distributed import DistInfo, gather_batch
    from ssn3d.losses import BatchHardTriplet

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    w = torch.randn(8, 6)  # the "model": one linear map, identical on both ranks
    x = torch.randn(8, 8)  # 4 ids x 2 clips; each rank holds one id pair of the global batch
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    local = slice(4 * rank, 4 * rank + 4)
    w_r = w.clone().requires_grad_(True)
    emb, p = gather_batch(x[local] @ w_r, pids[local], DistInfo(rank=rank, world_size=world))
    loss = BatchHardTriplet(0.3)(emb, p)
    loss.backward()
    grad = w_r.grad.clone()
    dist.all_reduce(grad)
    grad /= world  # what DDP does to parameter gradients
    if rank == 0:
        torch.save({"loss": loss.detach(), "grad": grad, "n": emb.shape[0]}, out)
    dist.destroy_process_group()


def test_triplet_mining_over_ranks_equals_one_process(tmp_path: Path) -> None:
    """Mining over the gathered global batch: same loss and gradient as one process with the whole batch."""
    import socket

    import torch.multiprocessing as mp

    from ssn3d.losses import BatchHardTriplet

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "r0.pt"
    mp.spawn(_mining_worker, args=(2, port, str(out)), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    torch.manual_seed(0)
    w = torch.randn(8, 6).requires_grad_(True)
    x = torch.randn(8, 8)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss = BatchHardTriplet(0.3)(x @ w, pids)
    loss.backward()
    assert got["n"] == 8
    torch.testing.assert_close(got["loss"], loss.detach())
    torch.testing.assert_close(got["grad"], w.grad)
