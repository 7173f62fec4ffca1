"""The training loop: ``main(cfg, run_dir)`` and ``train_one_epoch``, plain functions (torchvision references style).

Paper, "Implementation Details / Training and testing protocols": P x K = 8 x 4 batches of T = 4
frame clips (stride 8, 256 x 128), Adam (lr 3e-4, weight decay 5e-4), lr x 0.1 once after 50 epochs, 150
epochs; loss eq. (6) = batch-hard triplet eq. (5) + lambda L_SSN eq. (4). All from the Config.

Around it, what a run needs to survive (``ssn3d.runs`` for the folder, ``ssn3d.engine.session`` for
the setup, evaluation and checkpoints between epochs):

* bf16 autocast, channels_last and optional torch.compile on CUDA; plain float32 on the CPU;
* DistributedDataParallel when started by torchrun (``ssn3d.engine.distributed``); rank 0 writes;
* SIGTERM/SIGINT: the current step finishes, ``last.pt`` is saved, the status says "cancelled"
  (a second SIGINT stops at once); every rank stops after the same step;
* ``resume=True``: model, optimizer, scheduler, sampler position and RNG come from ``last.pt``; the
  step count continues and metrics lines past the checkpoint are dropped (they will be trained again);
* periodic evaluation (``train.eval_every`` epochs, and always at the end) with the dataset's
  protocol, part PCK included when the test frames have keypoints; ``best.pt`` follows mAP;
* a collapse guard (``CollapseGuard``): SSN3D whose SSN never separates the parts is a pooled 3D
  model in disguise, so the log and the status say so once.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssn3d.alignment_losses import AlignmentTerms
from ssn3d.config import Config, save_config
from ssn3d.data.transforms import normalize_and_flip, uint8_batches_on
from ssn3d.engine.distributed import (
    DistInfo,
    any_rank,
    cleanup_distributed,
    device_for,
    env_dist_info,
    gather_batch,
    init_distributed,
    mean_over_ranks,
)
from ssn3d.engine.session import (
    ProgressFn,
    build_session,
    end_epoch,
    finish,
    log_window,
    report_step,
)
from ssn3d.engine.train_data import TrainData
from ssn3d.engine.train_state import StopRequest, TrainState
from ssn3d.losses import BatchHardTriplet, ssn_loss, total_loss
from ssn3d.runs.folder import RunPaths
from ssn3d.runs.launch import check_resume
from ssn3d.runs.lock import RunLock, acquire_run_lock
from ssn3d.runs.status import StatusWriter, process_identity, read_status

_logger = logging.getLogger(__name__)

PEER_SIGNAL = "a signal to another process"  # DDP: one rank was signalled, all stop after the same step


def train_one_epoch(
    model: nn.Module,
    data: TrainData,
    optimizer: torch.optim.Optimizer,
    criterion: BatchHardTriplet,
    cfg: Config,
    state: TrainState,
    *,
    device: torch.device,
    info: DistInfo,
    total_steps: int,
    stop: StopRequest,
    on_log: Callable[[dict[str, Any]], None],
    on_step: Callable[[TrainState, dict[str, float]], None] | None = None,
) -> bool:
    """Train the rest of ``state.epoch``; returns True when it stopped early (signal or ``total_steps``).

    ``on_log`` gets the averaged losses every ``train.log_every`` steps (all ranks call it; rank 0 writes),
    with one entry per extra alignment term that the config switches on (NOT in the paper).

    ``train.labeled_warmup`` (NOT in the paper): during that fraction of the run's steps L_SSN comes
    from the labeled frames fed beside the clips only (anchored windows), so the unlabeled clip frames'
    2nd round cannot reward windows the classifier merely prefers before the anchors have placed them.

    No step waits for the device: the losses add up in float64 accumulators on the device, read once
    per log line, and ``on_step`` gets the last logged averages (the first step's own values until the
    first line). With ``data.uint8_batches`` the workers send uint8 frames and flip decisions, and the
    clips are mirrored and normalized here, on the device.
    """
    model.train()
    cuda = device.type == "cuda"
    amp = cuda and cfg.train.amp
    keypoints_needed = cfg.model.arch == "ssn3d" and cfg.model.strategy != "unsupervised"
    anchors_needed = cfg.model.arch == "ssn3d" and cfg.model.strategy == "semi"
    terms = AlignmentTerms(cfg.loss).to(device)
    mirror = {"mirror_anchors": True} if terms.needs_mirror else {}
    warmup_steps = math.ceil(cfg.train.labeled_warmup * total_steps)
    names = ["loss", "triplet", "ssn", *terms.active]
    # float64 sums of the float32 losses in step order: the same numbers as adding their .item()s
    window = torch.zeros(len(names), dtype=torch.float64, device=device)
    last: dict[str, float] | None = None  # the last logged averages, what on_step reports
    n_window, clips_window, t_window = 0, 0, time.perf_counter()
    data.clips.set_uint8(uint8_batches_on(cfg.data.uint8_batches, device))  # before the workers start
    for batch in data.loader:
        clips = batch["clip"].to(device, non_blocking=True)  # (B, T, 3, H, W), float or uint8
        if "flips" in batch:  # uint8 items: mirrored and normalized on the device
            clips = normalize_and_flip(clips, batch["flips"].to(device, non_blocking=True))
        pids = batch["pids"].to(device, non_blocking=True)
        kps = batch["keypoints"].to(device, non_blocking=True) if keypoints_needed else None  # (B, T, 9, 3)
        anchors = anchor_kps = None
        if anchors_needed and batch["anchor_frames"].shape[0]:  # the batch's labeled frames, for L_SSN
            anchors = batch["anchor_frames"].to(device, non_blocking=True)  # (M, 3, H, W)
            if "anchor_flips" in batch:
                flips = batch["anchor_flips"].to(device, non_blocking=True)
                anchors = normalize_and_flip(anchors[:, None], flips)[:, 0]  # as clips of one frame
            anchor_kps = batch["anchor_keypoints"].to(device, non_blocking=True)  # (M, 9, 3)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(clips, kps) if anchors is None else model(clips, kps, anchors, anchor_kps, **mirror)
            triplet = criterion(*gather_batch(out.embedding.float(), pids, info))  # mining over all ranks
            if state.step < warmup_steps:  # labeled warm-up: the anchored frames beside the clips only
                ssn = (
                    torch.zeros((), device=device)
                    if out.anchor_logits is None
                    else ssn_loss(out.anchor_logits, cfg.loss.ssn_reduction, per_frame_classifiers=True)
                )  # (M, G, N, N): one mean per classifier, summed, as for the clips
            else:
                ssn = ssn_loss(
                    out.ssn_logits,
                    cfg.loss.ssn_reduction,
                    per_frame_classifiers=not cfg.model.shared_classifier,
                    anchor_logits=out.anchor_logits,
                )
            extra = terms(out) if terms.active else None
            loss = total_loss(triplet, ssn, cfg.loss.ssn_lambda, extra)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        state.step += 1
        state.batch_in_epoch += 1
        step_values = torch.stack(
            [v.detach().float() for v in (loss, triplet, ssn, *(extra[k] for k in terms.active))]
        )
        window += step_values.double()
        n_window += 1
        clips_window += clips.shape[0] * info.world_size
        if last is None and on_step is not None:  # the run's one read before its first log line
            last = dict(zip(names, step_values.tolist()))
        if state.step % cfg.train.log_every == 0 or state.step == total_steps:
            elapsed = max(time.perf_counter() - t_window, 1e-9)
            sums = window.tolist()  # the one read of the device per log line
            avg = mean_over_ranks({k: v / n_window for k, v in zip(names, sums)}, info, device)
            on_log({**avg, "clips_per_s": clips_window / elapsed, "lr": optimizer.param_groups[0]["lr"]})
            last = avg
            window.zero_()
            n_window, clips_window, t_window = 0, 0, time.perf_counter()
        if on_step is not None:
            on_step(state, last)
        if any_rank(bool(stop), info, device):
            stop.signal = stop.signal or PEER_SIGNAL
            return True
        if state.step >= total_steps:
            return True
    return False


def main(
    cfg: Config, run_dir: str | Path, *, resume: bool = False, progress: ProgressFn | None = None
) -> str:
    """Train ``cfg`` into ``run_dir`` (or continue it with ``resume``); returns the final state.

    Args:
        cfg: the resolved config.
        run_dir: the run folder.
        resume: continue from ``run_dir/checkpoints/last.pt``.
        progress: called on rank 0 after every step with {"step", "total", "epoch", "loss", ...}.

    Returns:
        "done" or "cancelled" (errors are raised after the status file says "failed").

    Raises:
        RunBusyError: another process writes ``run_dir`` (its files are left alone).
        RunError, CheckpointError: a resume that cannot continue (no file of the run was changed).
    """
    paths = RunPaths(Path(run_dir))
    info = env_dist_info()
    # Held until training ends: one writer per run, whichever command started it.
    lock: RunLock | None = acquire_run_lock(paths.root) if info.is_main else None
    try:
        if resume and info.is_main:
            check_resume(cfg, paths.root)  # before the status and config below are written
        return _main_locked(cfg, paths, info, resume=resume, progress=progress)
    finally:
        if lock is not None:
            lock.release()


def _main_locked(
    cfg: Config, paths: RunPaths, info: DistInfo, *, resume: bool, progress: ProgressFn | None
) -> str:
    """``main`` once this process is the run's one writer: status, config, then ``_train``."""
    device = device_for(cfg.train.device, info)
    info = init_distributed(device)
    status: StatusWriter | None = None
    stop = StopRequest().install()
    try:
        if info.is_main:
            prior = {}
            if resume:
                prior = {
                    k: v
                    for k, v in read_status(paths.root).items()
                    if k in ("progress", "step", "total_steps")
                }
            status = StatusWriter(
                paths.root,
                initial={**prior, **process_identity(parent_group=info.enabled), "resumed": resume},
            ).start()
            save_config(cfg, paths.config)
        return _train(cfg, paths, info, device, resume=resume, status=status, stop=stop, progress=progress)
    except BaseException as e:
        if status is not None:
            paths.traceback.write_text(traceback.format_exc(), encoding="utf-8")
            cancelled = isinstance(e, KeyboardInterrupt)
            status.close(
                state="cancelled" if cancelled else "failed",
                error=("interrupted before the step finished" if cancelled else f"{type(e).__name__}: {e}"),
                traceback=paths.traceback.name,
            )
        raise
    finally:
        stop.restore()
        cleanup_distributed()


def _train(
    cfg: Config,
    paths: RunPaths,
    info: DistInfo,
    device: torch.device,
    *,
    resume: bool,
    status: StatusWriter | None,
    stop: StopRequest,
    progress: ProgressFn | None,
) -> str:
    """Epochs of ``train_one_epoch`` until the step budget, the last epoch or a signal; then ``finish``."""
    s = build_session(cfg, paths, info, device, resume=resume, status=status, progress=progress)
    state = s.state
    stopped = state.step >= s.total_steps
    while not stopped and state.epoch < cfg.train.epochs:
        s.data.set_epoch(state.epoch, skip=state.batch_in_epoch)
        stopped = train_one_epoch(
            s.net,
            s.data,
            s.opt,
            s.criterion,
            cfg,
            state,
            device=device,
            info=info,
            total_steps=s.total_steps,
            stop=stop,
            on_log=partial(log_window, s),
            on_step=partial(report_step, s),
        )
        halted = any_rank(bool(stop), info, device)  # every rank takes the same branches below
        if halted:
            stop.signal = stop.signal or PEER_SIGNAL
        if state.batch_in_epoch >= s.data.steps_per_epoch:  # the epoch is complete
            end_epoch(s, halted=halted, stopped=stopped)
        if halted:
            break
    return finish(s, stop)
