"""One training process's run, as plain functions: set it up, report steps, evaluate, save, finish.

``ssn3d.engine.train`` runs the epochs; this module holds what it does around them (the paper's
"Implementation Details": Adam with weight decay, the one LR decay, periodic evaluation with the test
protocol). A ``Session`` is the state those functions share, so none of them is a closure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssn3d.config import Config, ConfigError
from ssn3d.data.datasets import VideoReIDDataset
from ssn3d.engine import checkpoint as ckpt_io
from ssn3d.engine.alignment_eval import training_keypoints
from ssn3d.engine.collapse import CollapseGuard, warn_if_collapsed
from ssn3d.engine.distributed import DistInfo, barrier
from ssn3d.engine.evaluate import evaluate, write_report
from ssn3d.engine.evaluations import REPORT_TOPK
from ssn3d.engine.optim import adam
from ssn3d.engine.train_data import TrainData, load_dataset, load_labels
from ssn3d.engine.train_state import StopRequest, TrainState, capture_train_state, restore_train_state
from ssn3d.losses import BatchHardTriplet
from ssn3d.models import build_model
from ssn3d.runs.folder import RunPaths
from ssn3d.runs.metrics import append_metrics, truncate_metrics
from ssn3d.runs.status import StatusWriter

_logger = logging.getLogger(__name__)

ProgressFn = Callable[[dict[str, Any]], None]


def channels_last_2d(model: nn.Module) -> nn.Module:
    """channels_last weights for every Conv2d (backbone, attention classifier), in place.

    ``model.to(memory_format=torch.channels_last)`` fails on SSN3D: the per-part Conv3d weights are 5-D
    and that format is 4-D only. The 3D blocks keep their default layout.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.to(memory_format=torch.channels_last)
    return model


def build_optimizer(
    model: nn.Module, cfg: Config
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam + one decay, stepped per epoch (paper: 3e-4, weight decay 5e-4, x0.1 after 50 epochs).

    The paper decays once; a StepLR(50) over its 150 epochs would decay again at 100, so the decay is
    a MultiStepLR with the one milestone ``train.lr_step``. Its state dict loads the StepLR state of
    older checkpoints (the epoch count is what matters) and is checkpointed like any other.

    ``train.attn_lr_mult`` != 1 (NOT in the paper) puts the attention classifiers' parameters in a
    second parameter group at lr x mult (the decay scales both); at 1 there is one group, as before.
    """
    t = cfg.train
    ssn = getattr(model, "ssn", None)
    if t.attn_lr_mult == 1.0 or ssn is None:
        opt = adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    else:
        attn_ids = {id(p) for p in ssn.parameters()}
        opt = adam(
            [p for p in model.parameters() if id(p) not in attn_ids], lr=t.lr, weight_decay=t.weight_decay
        )
        opt.add_param_group({"params": list(ssn.parameters()), "lr": t.lr * t.attn_lr_mult})
    sched = torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=[cfg.train.lr_step], gamma=cfg.train.lr_gamma
    )
    return opt, sched


@dataclass
class Session:
    """What one training process holds between steps; the plain functions below share it."""

    cfg: Config
    paths: RunPaths
    info: DistInfo
    device: torch.device
    dataset: Any  # VideoReIDDataset
    model: nn.Module  # unwrapped: checkpoints, evaluation, the collapse guard's hooks
    net: nn.Module  # what the step runs: the model, DDP-wrapped and/or compiled
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    data: TrainData
    criterion: BatchHardTriplet
    state: TrainState
    total_steps: int
    guard: CollapseGuard
    status: StatusWriter | None  # rank 0 only
    progress: ProgressFn | None
    last_metrics: dict[str, float] = field(default_factory=dict)
    t_start: float = 0.0
    step_start: int = 0


def build_session(
    cfg: Config,
    paths: RunPaths,
    info: DistInfo,
    device: torch.device,
    *,
    resume: bool,
    status: StatusWriter | None,
    progress: ProgressFn | None,
) -> Session:
    """Dataset, labels, model, optimizer and loader of a run; a resume restores them from ``last.pt``."""
    cuda = device.type == "cuda"
    dataset = load_dataset(cfg)
    labels = load_labels(cfg, dataset, run_dir=paths.root, device=device)
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank (DDP also broadcasts them)
    model = build_model(cfg.model, load_weights=not resume).to(device)
    if cuda and cfg.train.channels_last:
        channels_last_2d(model)
    if cfg.model.position_prior > 0 and not resume:  # a resume reads the prior back with the weights
        count_position_prior(model, dataset, labels, cfg)
    opt, sched = build_optimizer(model, cfg)
    state = TrainState()
    if resume:
        state = restore_train_state(paths.last, cfg, model, opt, sched)
        _logger.info(
            "Resuming %s at step %d (epoch %d, batch %d).",
            paths.root,
            state.step,
            state.epoch,
            state.batch_in_epoch,
        )
        if info.is_main:
            truncate_metrics(paths.root, state.step)
    else:
        torch.manual_seed(cfg.train.seed + info.rank)
    data = TrainData(cfg, dataset, labels, info, pin_memory=cuda)
    total_steps = cfg.train.epochs * data.steps_per_epoch
    if cfg.train.max_steps:
        total_steps = min(total_steps, cfg.train.max_steps)
    guard = CollapseGuard(
        model,
        cfg,
        total_steps,
        data.steps_per_epoch,
        watch_attention=info.is_main and not (cuda and cfg.train.compile),
    )
    session = Session(
        cfg, paths, info, device, dataset, model, wrap_model(model, cfg, info, device), opt, sched, data,
        BatchHardTriplet(cfg.loss.margin, cfg.loss.triplet_reduction), state, total_steps, guard, status,
        progress, t_start=time.perf_counter(), step_start=state.step,
    )  # fmt: skip
    _logger.info(
        "Training %s (%s, %s) on %s x %d: %d steps (%d per epoch), %d train tracklets.",
        cfg.model.arch,
        cfg.model.strategy,
        cfg.data.dataset,
        device,
        info.world_size,
        total_steps,
        data.steps_per_epoch,
        len(dataset.train),
    )
    return session


def prior_keypoints(dataset: VideoReIDDataset, labels: dict[str, np.ndarray], cfg: Config) -> np.ndarray:
    """The training frames' labels the position prior is counted from, (F, N, 3) in model pixels;
    refused in one sentence when there are none (also checked before the app launches a run)."""
    keypoints = training_keypoints(dataset, labels, (cfg.data.width, cfg.data.height))
    if keypoints is None:
        raise ConfigError(
            f"model.position_prior={cfg.model.position_prior:g} counts where parts lie from labeled keypoints, "
            "but no training frame has any; label some frames or set model.position_prior=0."
        )
    return keypoints


def count_position_prior(
    model: nn.Module, dataset: VideoReIDDataset, labels: dict[str, np.ndarray], cfg: Config
) -> None:
    """The part-position prior of ``model.position_prior`` (NOT in the paper), counted from the labels of
    the training frames at the training size; refused in one sentence when there are none."""
    keypoints = prior_keypoints(dataset, labels, cfg)
    model.set_position_prior(keypoints, (cfg.data.width, cfg.data.height))
    _logger.info("Part-position prior counted from %d labeled frames.", len(keypoints))


def wrap_model(model: nn.Module, cfg: Config, info: DistInfo, device: torch.device) -> nn.Module:
    """DistributedDataParallel under torchrun, then torch.compile on CUDA when asked."""
    cuda = device.type == "cuda"
    net: nn.Module = model
    if info.enabled:
        find_unused = cfg.model.arch == "ssn3d" and cfg.model.strategy == "supervised"  # no attention branch
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if cuda else None, find_unused_parameters=find_unused
        )
    if cuda and cfg.train.compile:
        net = torch.compile(net)
    return net


def report_step(s: Session, st: TrainState, values: dict[str, float]) -> None:
    """After every step (rank 0): progress and ETA into the status (written by the heartbeat) and the callback."""
    if not s.info.is_main:
        return
    rate = (st.step - s.step_start) / max(time.perf_counter() - s.t_start, 1e-9)
    eta = (s.total_steps - st.step) / rate if rate > 0 else None
    fields = {
        "step": st.step,
        "total_steps": s.total_steps,
        "epoch": st.epoch,
        "progress": min(1.0, st.step / max(s.total_steps, 1)),
        "eta_s": eta,
        "loss": values["loss"],
    }
    s.status.update(write=False, **fields)  # written by the heartbeat and at log steps, not on every step
    if s.progress is not None:
        s.progress({**fields, "total": s.total_steps, **values})


def log_window(s: Session, avg: dict[str, float]) -> None:
    """Every ``train.log_every`` steps (rank 0): a metrics line, the log, and the collapse guard."""
    if not s.info.is_main:
        return
    state = s.state
    append_metrics(
        s.paths.root, {"kind": "train", "step": state.step, "epoch": state.epoch, **avg, "time": time.time()}
    )
    s.status.update()
    _logger.info(
        "epoch %d step %d/%d loss %.4f triplet %.4f ssn %.4f lr %.2e %.1f clips/s",
        state.epoch,
        state.step,
        s.total_steps,
        avg["loss"],
        avg["triplet"],
        avg["ssn"],
        avg["lr"],
        avg["clips_per_s"],
    )
    warn_if_collapsed(s.guard, state.step, avg["ssn"], s.status)


def evaluate_now(s: Session) -> None:
    """The dataset's test protocol on rank 0 (part PCK included); ``best.pt`` follows mAP."""
    state, paths = s.state, s.paths
    if s.info.is_main and s.dataset.query and s.dataset.gallery:
        # the final evaluation also ranks the gallery and leaves RUN/eval.json, the report the
        # Retrieval page and `ssn3d evaluate` read, so nobody has to extract the features again
        final = state.step >= s.total_steps
        result = evaluate(
            ckpt_io.unwrap_model(s.model), s.dataset, s.cfg, device=s.device, topk=REPORT_TOPK if final else 0
        )
        s.last_metrics = result["metrics"]
        if final:  # last.pt is saved from this state right after, at this step
            meta = {"checkpoint": str(paths.last), "step": state.step, "epoch": state.epoch}
            write_report(result, s.dataset, {**meta, "source": "training"}, paths.eval)
        record = {
            "kind": "eval",
            "step": state.step,
            "epoch": state.epoch,
            **s.last_metrics,
            "time": time.time(),
        }
        append_metrics(paths.root, record)
        _logger.info(
            "eval at step %d: %s", state.step, " ".join(f"{k} {v:.4f}" for k, v in s.last_metrics.items())
        )
        s.status.update(last_eval=s.last_metrics)
        state.last_eval_step = state.step
        if s.last_metrics["mAP"] > state.best_map:
            state.best_map = s.last_metrics["mAP"]
            save_state(s, paths.best)
            s.status.update(best_map=state.best_map)
    elif s.info.is_main and state.last_eval_step < 0:
        _logger.warning("%s has no query/gallery split; skipping evaluation.", s.dataset.root)
        state.last_eval_step = state.step
    barrier(s.info)


def save_state(s: Session, path: Path) -> None:
    """Model, optimizer, scheduler, sampler position and RNG into ``path`` (rank 0)."""
    if s.info.is_main:
        ckpt_io.save_checkpoint(
            path, capture_train_state(s.model, s.opt, s.sched, s.cfg, s.state, s.data.batches, s.last_metrics)
        )


def end_epoch(s: Session, *, halted: bool, stopped: bool) -> None:
    """A complete epoch: the LR schedule steps, then the periodic evaluation and ``last.pt``."""
    state, t = s.state, s.cfg.train
    s.sched.step()
    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
    e = state.epoch
    if not halted and t.eval_every and e % t.eval_every == 0 and e < t.epochs and state.step < s.total_steps:
        evaluate_now(s)
    if not halted and t.ckpt_every and e % t.ckpt_every == 0 and not stopped:
        save_state(s, s.paths.last)


def finish(s: Session, stop: StopRequest) -> str:
    """Save, close the status as cancelled or done (after the final evaluation); every rank returns the same."""
    state = s.state
    if stop:
        save_state(s, s.paths.last)
        barrier(s.info)
        if s.status is not None:
            s.status.close(state="cancelled", error=f"cancelled by {stop.signal} at step {state.step}")
        _logger.info(
            "Stopped by %s at step %d; resume with --resume %s", stop.signal, state.step, s.paths.root
        )
        return "cancelled"
    if state.last_eval_step != state.step:
        evaluate_now(s)
    save_state(s, s.paths.last)
    barrier(s.info)
    if s.status is not None:
        s.status.close(
            state="done", progress=1.0, eta_s=0.0, best_map=state.best_map if state.best_map >= 0 else None
        )
    _logger.info("Done: %d steps in %s.", state.step, s.paths.root)
    return "done"
