"""Time one full training step (forward, backward, Adam) of SSN3D against its baselines, in one run.

Paper configuration by default: 8 ids x 4 clips, T=4, 256x128 frames, ResNet50 to layer3, bf16
autocast + channels_last on CUDA. Compares SSN3D with the temporal-pooling baseline and with the
backbone alone (the same backbone with a mean-pooled triplet head), reporting clips/s, the step
time ratio, and peak GPU memory.

    python benchmarks/bench_train_step.py                       # CUDA if present, paper sizes
    python benchmarks/bench_train_step.py --device cpu --ids 2 --instances 2 --height 128 --width 64
    python benchmarks/bench_train_step.py --config configs/walkers-tiny.yaml --device cpu   # the demo scale

``--config`` takes the model and the batch shape (ids, instances, T, height, width) from a config;
on the CPU each row also gives the peak resident-memory rise of building the optimizer state and
running the steps (``peak_rss_rise_mb``; run one ``--models`` per process for a clean figure).

``--anchors`` times the step a semi-supervised user trains (``ssn3d.engine.train``): each clip also
brings ``data.anchor_frames`` labeled frames (2 unless the config says otherwise) through the
backbone and SSN for L_SSN. The baselines have no SSN, so the engine feeds them none.
``--interleave`` alternates the models step by step in one process, so a shared machine's load
falls on all of them alike; the report also gives the load average before and after.

    python benchmarks/bench_train_step.py --config configs/walkers-tiny.yaml --device cpu --interleave \
        --models ssn3d,baseline --anchors

Targets on one H100 (issue 2 / 7): SSN3D >= 1000 clips/s, >= 0.9x the baseline's throughput,
<= 1.3x the backbone-alone step time, peak memory <= 10 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from ssn3d.config import load_config
from ssn3d.engine.optim import adam
from ssn3d.engine.session import channels_last_2d
from ssn3d.losses import BatchHardTriplet, ssn_loss, total_loss
from ssn3d.models import build_model
from ssn3d.models.ssn3d import SSN3DOutput


class BackboneOnly(nn.Module):
    """The backbone with the cheapest possible head: spatial + temporal mean (the floor of any model)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, clips: torch.Tensor, keypoints: torch.Tensor | None = None) -> SSN3DOutput:
        b, t = clips.shape[:2]
        emb = self.backbone(clips.flatten(0, 1)).mean(dim=(2, 3)).unflatten(0, (b, t)).mean(1)
        return SSN3DOutput(emb, None, None)


def make_model(kind: str, args: argparse.Namespace) -> nn.Module:
    overrides = ["model.weights=none", f"data.seq_len={args.frames}", f"model.num_frames={args.frames}"]
    if not args.config:
        overrides.append(f"model.backbone={args.backbone}")
    if kind == "backbone":
        return BackboneOnly(build_model(load_config(args.config, overrides).model).backbone)
    arch = {"ssn3d": "ssn3d", "baseline": "temporal_pooling"}[kind]
    cfg = load_config(args.config, [*overrides, f"model.arch={arch}", "model.strategy=semi"])
    return build_model(cfg.model)


def apply_config(args: argparse.Namespace) -> argparse.Namespace:
    """The batch shape of ``args.config`` (P ids x K clips, T, H x W) in place of the defaults."""
    if args.config:
        data = load_config(args.config).data
        args.ids, args.instances, args.frames = data.num_ids, data.num_instances, data.seq_len
        args.height, args.width = data.height, data.width
        args.anchor_frames = data.anchor_frames
    return args


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+) kB", f.read()).group(1))


def reset_peak_rss() -> int:
    """Reset the process's peak resident memory to the current one (Linux ``clear_refs`` 5); its kB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kb("VmRSS")


def build_step(
    kind: str, args: argparse.Namespace, device: torch.device
) -> tuple[Callable[[], None], nn.Module, int]:
    """(one training step, the model as built, clips per batch) for ``kind`` with the args' sizes.

    With ``args.anchors`` SSN3D gets ``args.anchor_frames`` labeled frames per clip beside the clips,
    as ``ssn3d.engine.train`` feeds them, and L_SSN counts their 2nd-round logits."""
    torch.manual_seed(0)
    model = make_model(kind, args).to(device).train()
    cuda = device.type == "cuda"
    if cuda and args.channels_last:
        channels_last_2d(model)  # the 2-D convs only: the per-part Conv3d weights are 5-D
    net = model
    if args.compile and (cuda or args.compile_backend != "inductor"):  # inductor on a CPU: minutes of C++
        net = torch.compile(model, backend=args.compile_backend)
    opt = adam(model.parameters(), lr=3e-4, weight_decay=5e-4)
    crit = BatchHardTriplet(0.3)
    b = args.ids * args.instances
    clips = torch.randn(b, args.frames, 3, args.height, args.width, device=device)
    kps = torch.zeros(b, args.frames, 9, 3, device=device)
    kps[:, :2, :, 0], kps[:, :2, :, 1], kps[:, :2, :, 2] = (
        args.width / 2,
        args.height / 2,
        2.0,
    )  # 2 labeled frames
    pids = torch.arange(args.ids, device=device).repeat_interleave(args.instances)
    extra: tuple[torch.Tensor, ...] = ()
    if args.anchors and kind == "ssn3d":  # the labeled frames with their keypoints, (M, 3, H, W), (M, 9, 3)
        m = b * args.anchor_frames
        anchor_kps = torch.zeros(m, 9, 3, device=device)
        anchor_kps[..., 0] = torch.linspace(0, args.width - 1, 9, device=device)
        anchor_kps[..., 1] = torch.linspace(0, args.height - 1, 9, device=device)
        anchor_kps[..., 2] = 2.0
        extra = (torch.randn(m, 3, args.height, args.width, device=device), anchor_kps)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and args.amp):
            out = net(clips, kps, *extra)
            ssn = ssn_loss(out.ssn_logits, anchor_logits=out.anchor_logits if extra else None)
            loss = total_loss(crit(out.embedding, pids), ssn, 0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, model, b


def timed(step: Callable[[], None], cuda: bool) -> float:
    """Seconds of one step (waiting for the device)."""
    t0 = time.perf_counter()
    step()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def summarize(kind: str, times: list[float], model: nn.Module, b: int, cuda: bool) -> dict:
    """The row of ``kind``: median and minimum step time, clips/s, (CUDA) peak memory, parameters."""
    times = sorted(times)
    median = times[len(times) // 2]
    return {
        "model": kind,
        "step_ms": round(1000 * median, 2),
        "step_ms_min": round(1000 * times[0], 2),  # the least disturbed step on a shared machine
        "clips_per_s": round(b / median, 1),
        "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
    }


def time_model(kind: str, args: argparse.Namespace, device: torch.device) -> dict:
    """Median step time, clips/s and (CUDA) peak memory of ``kind`` after ``args.warmup`` steps."""
    step, model, b = build_step(kind, args, device)
    cuda = device.type == "cuda"
    rss0 = reset_peak_rss() if not cuda and Path("/proc/self/clear_refs").exists() else None
    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    row = summarize(kind, [timed(step, cuda) for _ in range(args.steps)], model, b, cuda)
    if rss0 is not None:
        row["peak_rss_rise_mb"] = round((_status_kb("VmHWM") - rss0) / 1024, 1)
    return row


def time_interleaved(kinds: list[str], args: argparse.Namespace, device: torch.device) -> list[dict]:
    """``time_model`` for all ``kinds`` at once, one step of each in turn (peak memory is then shared)."""
    built = [build_step(kind, args, device) for kind in kinds]
    cuda = device.type == "cuda"
    for _ in range(args.warmup):
        for step, _, _ in built:
            step()
    times: list[list[float]] = [[] for _ in kinds]
    for _ in range(args.steps):
        for i, (step, _, _) in enumerate(built):
            times[i].append(timed(step, cuda))
    return [summarize(kind, t, model, b, cuda) for kind, t, (_, model, b) in zip(kinds, times, built)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--config", help="a config whose model and batch shape to use (e.g. walkers-tiny)")
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--ids", type=int, default=8)
    p.add_argument("--instances", type=int, default=4)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--no-amp", dest="amp", action="store_false")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (eager: dynamo only)")
    p.add_argument("--models", default="ssn3d,baseline,backbone")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's); 1 on a busy machine")
    p.add_argument("--interleave", action="store_true", help="alternate the models step by step")
    p.add_argument("--anchors", action="store_true", help="feed SSN3D the labeled frames a user's step has")
    p.add_argument("--anchor-frames", type=int, default=2, help="labeled frames per clip (config: data.*)")
    p.add_argument("--json", help="also write the results here")
    return p


def main() -> None:
    args = apply_config(parser().parse_args())
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    kinds = args.models.split(",")
    load_before = os.getloadavg()
    if args.interleave:
        rows = time_interleaved(kinds, args, device)
    else:
        rows = [time_model(kind, args, device) for kind in kinds]
    load_after = os.getloadavg()
    by = {r["model"]: r for r in rows}
    summary = {}
    if "ssn3d" in by and "baseline" in by:
        summary["ssn3d_vs_baseline_throughput"] = round(
            by["ssn3d"]["clips_per_s"] / by["baseline"]["clips_per_s"], 3
        )
        summary["ssn3d_vs_baseline_step_time"] = round(by["ssn3d"]["step_ms"] / by["baseline"]["step_ms"], 3)
        summary["ssn3d_vs_baseline_min_step_time"] = round(
            by["ssn3d"]["step_ms_min"] / by["baseline"]["step_ms_min"], 3
        )
    if "ssn3d" in by and "backbone" in by:
        summary["ssn3d_vs_backbone_step_time"] = round(by["ssn3d"]["step_ms"] / by["backbone"]["step_ms"], 3)
    machine = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'}"
    )
    report = {
        "machine": machine,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_before": [round(v, 2) for v in load_before],  # 1, 5, 15-minute load averages
        "load_after": [round(v, 2) for v in load_after],
        "args": vars(args),
        "rows": rows,
        "summary": summary,
    }
    for r in rows:
        print(
            f"{r['model']:9s} {r['step_ms']:9.1f} ms/step (min {r['step_ms_min']:.1f}) {r['clips_per_s']:9.1f} clips/s  "
            f"peak {r['peak_mem_gb']} GB, RSS rise {r.get('peak_rss_rise_mb')} MB"
        )
    print(json.dumps(summary), f"load {load_before[0]:.2f} -> {load_after[0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
