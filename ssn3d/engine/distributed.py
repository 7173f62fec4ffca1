"""Many processes, one run: the little that DistributedDataParallel training needs.

The same ``python -m ssn3d train`` runs under ``torchrun --nproc_per_node=G``: torchrun sets
RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT, each process trains on its shard of the
identity sampler (paper, "Training and testing protocols": 8 identities x 4 snippets per batch,
per process here), and rank 0 alone writes metrics, checkpoints and the status file. NCCL on
CUDA, gloo on CPU (what the tests use).
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ssn3d.config import ConfigError

_logger = logging.getLogger(__name__)

# Rank 0 evaluates while the others wait at a barrier: a MARS evaluation can take many minutes.
TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank among world_size processes, local_rank on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_dist_info(env: dict[str, str] | None = None) -> DistInfo:
    """The ranks torchrun put in the environment (a single process without them)."""
    env = dict(os.environ if env is None else env)
    world = int(env.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return DistInfo()
    return DistInfo(rank=int(env["RANK"]), world_size=world, local_rank=int(env.get("LOCAL_RANK", "0")))


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when torchrun started several processes; a no-op otherwise."""
    info = env_dist_info()
    if not info.enabled or (dist.is_available() and dist.is_initialized()):
        return info
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this torch build; run a single process.")
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    _logger.info("Process group: rank %d of %d (%s)", info.rank, info.world_size, backend)
    return info


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on any rank (e.g. a SIGTERM seen by one process).

    Every rank must call it at the same point of the loop, so all of them stop after the same step.
    """
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_over_ranks(values: dict[str, float], info: DistInfo, device: torch.device) -> dict[str, float]:
    """The average of scalar metrics across ranks (for logging only)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], device=device, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return {k: float(v) / info.world_size for k, v in zip(keys, t.tolist())}


def device_for(name: str, info: DistInfo) -> torch.device:
    """The device a config's ``train.device`` asks for ("auto" = CUDA when present), one GPU per local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"train.device={name} but this machine has no usable CUDA GPU; use train.device=cpu."
            )
        if name == "cuda":
            index = info.local_rank if info.enabled else torch.cuda.current_device()
            name = f"cuda:{index}"
        device = torch.device(name)
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def gather_batch(emb: torch.Tensor, pids: torch.Tensor, info: DistInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's embeddings and pids, so batch-hard mining sees the whole global P x K batch.

    Each rank holds P / world_size identities; mined alone, 8 GPUs at the paper's 8 ids would leave
    one identity per rank and no negatives. The gather keeps the autograd graph (its backward sums
    the gradients of all ranks' identical losses into each rank's own embeddings, and DDP's mean
    over ranks then gives exactly the single-process gradient).
    """
    if not info.enabled:
        return emb, pids
    from torch.distributed.nn.functional import all_gather

    all_pids = [torch.empty_like(pids) for _ in range(info.world_size)]
    dist.all_gather(all_pids, pids)
    return torch.cat(all_gather(emb)), torch.cat(all_pids)
