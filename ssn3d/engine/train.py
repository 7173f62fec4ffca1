"""The training loop: ``main(cfg, run_dir)`` and ``train_one_epoch``, plain functions (torchvision references style).

Paper, "Implementation Details / Training and testing protocols": P x K = 8 x 4 batches of T = 4
frame clips (stride 8, 256 x 128), Adam (lr 3e-4, weight decay 5e-4), lr x 0.1 once after 50 epochs, 150
epochs; loss eq. (6) = batch-hard triplet eq. (5) + lambda L_SSN eq. (4). All from the Config.

Around it, what a run needs to survive (``ssn3d.runs`` for the folder):

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
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssn3d.alignment_losses import AlignmentTerms
from ssn3d.config import Config, save_config
from ssn3d.data.transforms import normalize_and_flip, uint8_batches_on
from ssn3d.engine import checkpoint as ckpt_io
from ssn3d.engine.distributed import (
    DistInfo,
    any_rank,
    barrier,
    cleanup_distributed,
    device_for,
    env_dist_info,
    gather_batch,
    init_distributed,
    mean_over_ranks,
)
from ssn3d.engine.evaluate import evaluate, write_report
from ssn3d.engine.evaluations import REPORT_TOPK
from ssn3d.engine.optim import adam
from ssn3d.engine.train_data import TrainData, load_dataset, load_labels
from ssn3d.engine.train_state import StopRequest, TrainState, capture_train_state, restore_train_state
from ssn3d.losses import BatchHardTriplet, ssn_loss, total_loss
from ssn3d.models import build_model
from ssn3d.models.ssn import chance_loss
from ssn3d.runs.folder import RunPaths
from ssn3d.runs.launch import check_resume
from ssn3d.runs.lock import RunLock, acquire_run_lock
from ssn3d.runs.metrics import append_metrics, truncate_metrics
from ssn3d.runs.status import StatusWriter, process_identity, read_status

_logger = logging.getLogger(__name__)

ProgressFn = Callable[[dict[str, Any]], None]
PEER_SIGNAL = "a signal to another process"  # DDP: one rank was signalled, all stop after the same step


def channels_last_2d(model: nn.Module) -> nn.Module:
    """channels_last weights for every Conv2d (backbone, attention classifier), in place.

    ``model.to(memory_format=torch.channels_last)`` fails on SSN3D: the per-part Conv3d weights are 5-D
    and that format is 4-D only. The 3D blocks keep their default layout.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.to(memory_format=torch.channels_last)
    return model


class CollapseGuard:
    """Warns once when SSN has not separated the parts: L_SSN near (or above) chance, or flat maps.

    Judged at log steps after a warm-up (``COLLAPSE_WARMUP`` of the steps, at most 5 epochs): when
    each of the last ``COLLAPSE_WINDOWS`` log windows has L_SSN >= (1 - ``COLLAPSE_MARGIN``) x chance
    (log N per part, x N for ``loss.ssn_reduction=sum``, x T for the non-shared variant's T losses), or
    attention whose mean peak is below ``UNIFORM_PEAK`` x 1/(h*w) (a uniform map's peak is 1/(h*w)).
    The peaks come from a forward hook on the SSN modules (a tensor sum per step, read at log steps);
    under torch.compile only L_SSN is watched, since a hook with side effects would break the graph.

    Args:
        model: the unwrapped model.
        cfg: the run's config.
        total_steps: the run's steps.
        steps_per_epoch: steps of one epoch.
        watch_attention: hook the attention maps.
    """

    COLLAPSE_WARMUP = 0.3  # SSN needs some steps to leave chance; 30 % of a run is past that on walkers
    COLLAPSE_WINDOWS = 3  # one noisy window must not warn
    COLLAPSE_MARGIN = 0.05  # a tiny walkers run that separates is 15-65 % below chance after 12 steps
    UNIFORM_PEAK = 2.0  # random init gives 1.7-2.0 x 1/(h*w); separated maps 5-20 x

    def __init__(
        self, model: nn.Module, cfg: Config, total_steps: int, steps_per_epoch: int, watch_attention: bool
    ) -> None:
        m = cfg.model
        ssn = getattr(model, "ssn", None)
        self.enabled = m.arch == "ssn3d" and m.strategy != "supervised" and ssn is not None
        losses = 1 if m.shared_classifier else min(m.num_frames, cfg.data.seq_len)
        self.chance = (
            chance_loss(m.num_parts) * (m.num_parts if cfg.loss.ssn_reduction == "sum" else 1) * losses
        )
        self.warmup = min(math.ceil(self.COLLAPSE_WARMUP * total_steps), 5 * steps_per_epoch)
        self.flagged: list[str] = []  # why each recent window counts as not separated ("" when it is fine)
        self.warned = False
        self._peak_sum, self._peaks = None, 0
        if self.enabled and watch_attention:
            for module in ssn:
                module.register_forward_hook(self._observe)

    def _observe(self, module: nn.Module, args: tuple, out: Any) -> None:
        if module.training and out.attention is not None:
            a = out.attention.detach().flatten(2)  # (B, N, h*w), each row a softmax
            peak = a.amax(-1).float().mean() * a.shape[-1]  # 1 for a uniform map
            self._peak_sum = peak if self._peak_sum is None else self._peak_sum + peak
            self._peaks += 1

    def check(self, step: int, ssn_loss: float) -> str | None:
        """Judge one log window; returns the warning the first time SSN is found not separated."""
        peak = None
        if self._peaks:
            peak = float(self._peak_sum) / self._peaks
            self._peak_sum, self._peaks = None, 0
        if not self.enabled or self.warned or step < self.warmup:
            return None
        why = []
        if ssn_loss >= (1 - self.COLLAPSE_MARGIN) * self.chance:
            why.append(f"L_SSN {ssn_loss:.3f} is not below its chance level {self.chance:.3f} (log N)")
        if peak is not None and peak < self.UNIFORM_PEAK:
            why.append(f"the attention maps are nearly uniform (mean peak {peak:.2f} x 1/(h*w))")
        self.flagged = [*self.flagged, "; ".join(why)][-self.COLLAPSE_WINDOWS :]
        if len(self.flagged) < self.COLLAPSE_WINDOWS or not all(self.flagged):
            return None
        self.warned = True
        return (
            f"SSN has not separated the parts: at step {step}, {self.flagged[-1]} over the last "
            f"{self.COLLAPSE_WINDOWS} log steps; SSN3D then pools the frame like a plain 3D model. "
            "Raise loss.ssn_lambda, train longer, or check that the frames are not blank."
        )


def warn_if_collapsed(guard: CollapseGuard, step: int, ssn_loss: float, status: StatusWriter) -> None:
    """After a log step: the guard's warning, once, in the log and in the status's ``warnings``."""
    message = guard.check(step, ssn_loss)
    if message is not None:
        _logger.warning(message)
        status.update(warnings=[*status.status.get("warnings", []), message])


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
    cuda = device.type == "cuda"
    dataset = load_dataset(cfg)
    labels = load_labels(cfg, dataset, run_dir=paths.root, device=device)
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank (DDP also broadcasts them)
    model = build_model(cfg.model, load_weights=not resume).to(device)
    if cuda and cfg.train.channels_last:
        channels_last_2d(model)
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
    net: nn.Module = model
    if info.enabled:
        find_unused = cfg.model.arch == "ssn3d" and cfg.model.strategy == "supervised"  # no attention branch
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if cuda else None, find_unused_parameters=find_unused
        )
    if cuda and cfg.train.compile:
        net = torch.compile(net)
    criterion = BatchHardTriplet(cfg.loss.margin, cfg.loss.triplet_reduction)
    last_metrics: dict[str, float] = {}
    t_start, step_start = time.perf_counter(), state.step
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

    def on_step(st: TrainState, values: dict[str, float]) -> None:
        if not info.is_main:
            return
        rate = (st.step - step_start) / max(time.perf_counter() - t_start, 1e-9)
        eta = (total_steps - st.step) / rate if rate > 0 else None
        fields = {
            "step": st.step,
            "total_steps": total_steps,
            "epoch": st.epoch,
            "progress": min(1.0, st.step / max(total_steps, 1)),
            "eta_s": eta,
            "loss": values["loss"],
        }
        status.update(write=False, **fields)  # written by the heartbeat and at log steps, not on every step
        if progress is not None:
            progress({**fields, "total": total_steps, **values})

    guard = CollapseGuard(
        model,
        cfg,
        total_steps,
        data.steps_per_epoch,
        watch_attention=info.is_main and not (cuda and cfg.train.compile),
    )

    def on_log(avg: dict[str, float]) -> None:
        if not info.is_main:
            return
        record = {"kind": "train", "step": state.step, "epoch": state.epoch, **avg, "time": time.time()}
        append_metrics(paths.root, record)
        status.update()
        _logger.info(
            "epoch %d step %d/%d loss %.4f triplet %.4f ssn %.4f lr %.2e %.1f clips/s",
            state.epoch,
            state.step,
            total_steps,
            avg["loss"],
            avg["triplet"],
            avg["ssn"],
            avg["lr"],
            avg["clips_per_s"],
        )
        warn_if_collapsed(guard, state.step, avg["ssn"], status)

    def run_eval() -> None:
        nonlocal last_metrics
        if info.is_main and dataset.query and dataset.gallery:
            # the final evaluation also ranks the gallery and leaves RUN/eval.json, the report the
            # Retrieval page and `ssn3d evaluate` read, so nobody has to extract the features again
            final = state.step >= total_steps
            topk = REPORT_TOPK if final else 0
            result = evaluate(ckpt_io.unwrap_model(model), dataset, cfg, device=device, topk=topk)
            last_metrics = result["metrics"]
            if final:  # last.pt is saved from this state right after, at this step
                meta = {"checkpoint": str(paths.last), "step": state.step, "epoch": state.epoch}
                write_report(result, dataset, {**meta, "source": "training"}, paths.eval)
            append_metrics(
                paths.root,
                {
                    "kind": "eval",
                    "step": state.step,
                    "epoch": state.epoch,
                    **last_metrics,
                    "time": time.time(),
                },
            )
            _logger.info(
                "eval at step %d: %s", state.step, " ".join(f"{k} {v:.4f}" for k, v in last_metrics.items())
            )
            status.update(last_eval=last_metrics)
            state.last_eval_step = state.step
            if last_metrics["mAP"] > state.best_map:
                state.best_map = last_metrics["mAP"]
                save(paths.best)
                status.update(best_map=state.best_map)
        elif info.is_main and state.last_eval_step < 0:
            _logger.warning("%s has no query/gallery split; skipping evaluation.", dataset.root)
            state.last_eval_step = state.step
        barrier(info)

    def save(path: Path) -> None:
        if info.is_main:
            ckpt_io.save_checkpoint(
                path, capture_train_state(model, opt, sched, cfg, state, data.batches, last_metrics)
            )

    stopped = state.step >= total_steps
    while not stopped and state.epoch < cfg.train.epochs:
        data.set_epoch(state.epoch, skip=state.batch_in_epoch)
        stopped = train_one_epoch(
            net,
            data,
            opt,
            criterion,
            cfg,
            state,
            device=device,
            info=info,
            total_steps=total_steps,
            stop=stop,
            on_log=on_log,
            on_step=on_step,
        )
        halted = any_rank(bool(stop), info, device)  # every rank takes the same branches below
        if halted:
            stop.signal = stop.signal or PEER_SIGNAL
        if state.batch_in_epoch >= data.steps_per_epoch:  # the epoch is complete
            sched.step()
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            e, t = state.epoch, cfg.train
            if (
                not halted
                and t.eval_every
                and e % t.eval_every == 0
                and e < t.epochs
                and state.step < total_steps
            ):
                run_eval()
            if not halted and t.ckpt_every and e % t.ckpt_every == 0 and not stopped:
                save(paths.last)
        if halted:
            break
    if stop:
        save(paths.last)
        barrier(info)
        if status is not None:
            status.close(state="cancelled", error=f"cancelled by {stop.signal} at step {state.step}")
        _logger.info("Stopped by %s at step %d; resume with --resume %s", stop.signal, state.step, paths.root)
        return "cancelled"
    if state.last_eval_step != state.step:
        run_eval()
    save(paths.last)
    barrier(info)
    if status is not None:
        status.close(
            state="done", progress=1.0, eta_s=0.0, best_map=state.best_map if state.best_map >= 0 else None
        )
    _logger.info("Done: %d steps in %s.", state.step, paths.root)
    return "done"
