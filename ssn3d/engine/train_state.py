"""What a checkpoint must hold to continue a run exactly, and the signal flag that stops one cleanly.

A resumed run continues with the same optimizer, scheduler, sampler and RNG state, so that it trains
as if it had never stopped: the Adam moments and the StepLR position of the paper's schedule
("Implementation Details"), the epoch and the number of its batches already trained (``IdentitySampler`` batches depend only on
(seed, epoch), so they are skipped, not replayed), and the RNG states as tensors so that the file
still loads with ``weights_only=True``. Under DistributedDataParallel rank 0 writes the file, so
its RNG state is the one saved; data order does not depend on it.

This is the training loop's, not the run folder's (``ssn3d.runs``): it holds torch state and is read
only by ``ssn3d.engine.train``, while the run folder's modules stay free of torch for the app.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssn3d.config import Config
from ssn3d.engine.checkpoint import (
    CheckpointError,
    checkpoint_config,
    load_model_state,
    model_differences,
    plain_config,
    read_checkpoint,
    unwrap_model,
)
from ssn3d.engine.rng_state import capture_rng_state, restore_rng_state
from ssn3d.engine.train_data import ResumableBatches

_logger = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # the epoch in progress
    batch_in_epoch: int = 0  # batches of ``epoch`` already trained
    step: int = 0  # optimizer steps done in total
    best_map: float = -1.0
    last_eval_step: int = -1


class StopRequest:
    """Set by SIGTERM/SIGINT; the loop checks it between steps. A second SIGINT raises KeyboardInterrupt."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._old: dict[int, Any] = {}

    def __bool__(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        _logger.warning("%s received: finishing the current step, then saving and stopping.", self.signal)

    def install(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


def capture_train_state(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    cfg: Config,
    state: TrainState,
    batches: ResumableBatches,
    metrics: dict[str, float] | None,
) -> dict[str, Any]:
    """The checkpoint payload of a run in progress (``save_checkpoint`` adds format and version)."""
    return {
        "model": unwrap_model(model).state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "epoch": state.epoch,
        "batch_in_epoch": state.batch_in_epoch,
        "step": state.step,
        "best_map": state.best_map,
        "last_eval_step": state.last_eval_step,
        "config": plain_config(cfg),
        "rng": capture_rng_state(),
        "sampler": {**batches.state(), "epoch": state.epoch, "batch_in_epoch": state.batch_in_epoch},
        "metrics": metrics or {},
    }


def restore_train_state(
    path: Path, cfg: Config, model: nn.Module, opt: torch.optim.Optimizer, sched: Any
) -> TrainState:
    """Load ``last.pt`` into model, optimizer and scheduler, restore the RNGs, return where training stood.

    Raises:
        CheckpointError: the checkpoint's model config differs from ``cfg.model`` (another architecture).
    """
    ckpt = read_checkpoint(path)
    stored = checkpoint_config(ckpt, path)
    diff = model_differences(stored.model, cfg.model)
    if diff:
        raise CheckpointError(
            f"checkpoint {path} is of another architecture ({'; '.join(diff[:3])}); resume without model overrides."
        )
    load_model_state(model, ckpt["model"], path)
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    restore_rng_state(ckpt["rng"])
    return TrainState(
        epoch=int(ckpt["epoch"]),
        batch_in_epoch=int(ckpt["batch_in_epoch"]),
        step=int(ckpt["step"]),
        best_map=float(ckpt.get("best_map", -1.0)),
        last_eval_step=int(ckpt.get("last_eval_step", -1)),
    )
