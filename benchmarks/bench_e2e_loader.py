"""Training throughput end to end from JPEG files (the real loader) against the same step on tensors in memory.

Issue 7, "Speed": with frames decoded, resized, flipped and normalized by the training loader
(``ssn3d.engine.train_data.TrainData``: identity sampler, ``TrainClips``, DataLoader workers), the step
should keep >= 0.8x the throughput of the same step fed from batches already on the device. Both
legs run the same model, optimizer and batch shape, one after the other in one process:

* ``memory``: the first ``--cache`` batches of the loader, moved to the device once, then cycled;
* ``loader``: the loader's batches as training reads them (the copy to the device included).

    python benchmarks/bench_e2e_loader.py                        # 256 x 128 JPEGs, paper model (GPU)
    python benchmarks/bench_e2e_loader.py --cpu-scale            # what a 2-core CPU can time
    python benchmarks/bench_e2e_loader.py --root data/walkers    # an existing dataset instead
    python benchmarks/bench_e2e_loader.py --cpu-scale --epoch-ids 8,16,32   # one epoch's time vs dataset size
    python benchmarks/bench_e2e_loader.py --loader-only --workers 2 --batches 8   # float32 vs uint8 batches

``--loader-only`` times the loader alone at the paper's batch (8 x 4 clips, T = 4, 256 x 128), once
with today's float32 items and once with uint8 items (``ClipTransform.to_uint8``: frames and the
flip decision) that ``normalize_and_flip`` finishes on the device: bytes per batch, clips/s, clips/s
per worker, and the device-side normalisation time.

Without ``--root`` a walkers dataset is generated once into ``--data`` (JPEG frames at the training
size, so the loader decodes the same bytes a real dataset of that size would give it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ssn3d.config import load_config  # noqa: E402
from ssn3d.data.datasets import build_dataset  # noqa: E402
from ssn3d.data.sampling import IdentitySampler  # noqa: E402
from ssn3d.data.transforms import ClipTransform, normalize_and_flip, uint8_batches_on  # noqa: E402
from ssn3d.data.video import TrainClips, collate_clips  # noqa: E402
from ssn3d.engine.distributed import DistInfo  # noqa: E402
from ssn3d.engine.optim import adam  # noqa: E402
from ssn3d.engine.session import channels_last_2d  # noqa: E402
from ssn3d.engine.train_data import TrainData, load_dataset  # noqa: E402
from ssn3d.losses import BatchHardTriplet, ssn_loss, total_loss  # noqa: E402
from ssn3d.models import build_model  # noqa: E402

PAPER = [
    "model.backbone=resnet50",
    "data.height=256",
    "data.width=128",
    "data.num_ids=8",
    "data.num_instances=4",
]
CPU_SCALE = [
    "model.backbone=resnet18", "model.backbone_stages=1", "model.attn_channels=32", "model.part_channels=16",
    "model.embed_dim=64", "data.height=128", "data.width=64", "data.num_ids=4", "data.num_instances=2",
]  # fmt: skip


def make_step(model, opt, crit, cfg, device):
    cuda = device.type == "cuda"

    def step(batch: dict) -> None:
        clips = batch["clip"].to(device, non_blocking=True)  # (B, T, 3, H, W)
        if "flips" in batch:  # uint8 items: normalized and mirrored on the device, as train_one_epoch does
            clips = normalize_and_flip(clips, batch["flips"].to(device, non_blocking=True))
        pids = batch["pids"].to(device, non_blocking=True)
        kps = batch["keypoints"].to(device, non_blocking=True)  # (B, T, 9, 3)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and cfg.train.amp):
            out = model(clips, kps)
            loss = total_loss(
                crit(out.embedding.float(), pids), ssn_loss(out.ssn_logits), cfg.loss.ssn_lambda
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def timed(step, batches, n: int, device: torch.device) -> float:
    """Seconds for ``n`` steps over the iterator ``batches`` (the first batch's wait included)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for batch in itertools.islice(batches, n):
        step(batch)
    sync()
    return time.perf_counter() - t0


def _machine(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"


def walkers(data: str, ids: int, size: tuple[int, int]) -> Path:
    """A generated walkers dataset with ``ids`` identities (half of them train), made once."""
    from ssn3d.data.synth.walkers import generate_walkers

    root = Path(data) / f"{size[0]}x{size[1]}-{ids}"
    if not (root / "dataset.json").is_file():
        print(f"generating {ids} walkers at {size[0]}x{size[1]} into {root}", flush=True)
        generate_walkers(
            root, ids=ids, cameras=2, tracklets_per_camera=1, frames=24, size=size, progress=True
        )
    return root


def setup(overrides: list[str], device: torch.device):
    """(cfg, TrainData, step function) for a config, with a fresh model and optimizer.

    The items are uint8 where ``data.uint8_batches`` says so (by default on CUDA), as in training.
    """
    cfg = load_config(None, overrides)
    dataset = load_dataset(cfg)
    # Every training clip carries its (zero) keypoints; the semi strategy's two labels per tracklet do not
    # change the loader's work, so no label file is needed.
    data = TrainData(cfg, dataset, {}, DistInfo(), pin_memory=device.type == "cuda")
    data.clips.set_uint8(uint8_batches_on(cfg.data.uint8_batches, device))
    torch.manual_seed(0)
    model = build_model(cfg.model).to(device).train()
    if device.type == "cuda" and cfg.train.channels_last:
        channels_last_2d(model)
    opt = adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    return cfg, data, make_step(model, opt, BatchHardTriplet(cfg.loss.margin), cfg, device)


def loader_rate(
    root: Path,
    *,
    uint8: bool,
    workers: int,
    batches: int,
    device: torch.device,
    ids: int = 8,
    instances: int = 4,
    size: tuple[int, int] = (256, 128),
) -> dict:
    """Loader alone (paper's batch by default): bytes per batch and clips/s, the first batch's start-up excluded.

    Args:
        size: (height, width) of the clips.
    """
    ds = build_dataset("folder", root)
    tf = ClipTransform(*size, train=True, flip_prob=0.5)
    clips = TrainClips(ds.train, root=ds.root, seq_len=4, stride=4, transform=tf)
    clips.set_uint8(uint8)
    sampler = IdentitySampler(ds.train, ids, instances, iters_per_epoch=batches + 1)
    loader = DataLoader(clips, batch_sampler=sampler, num_workers=workers, persistent_workers=False,
                        collate_fn=collate_clips,
                        prefetch_factor=4 if workers else None)  # fmt: skip
    it = iter(loader)
    first = next(it)
    t0 = time.perf_counter()
    n = sum(1 for _ in it)
    per_s = n * ids * instances / (time.perf_counter() - t0)
    row = {"items": "uint8" if uint8 else "float32", "workers": workers, "batches": n,
           "batch": f"{ids}x{instances} clips x T=4, {size[0]}x{size[1]}",
           "mb_per_batch": round(sum(v.nbytes for v in first.values()) / 2**20, 2),
           "clip_mb_per_batch": round(first["clip"].nbytes / 2**20, 2),
           "clips_per_s": round(per_s, 1), "clips_per_s_per_worker": round(per_s / max(workers, 1), 1)}  # fmt: skip
    if uint8:
        batch, flips = first["clip"].to(device), first["flips"].to(device)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        normalize_and_flip(batch, flips)
        sync()
        t0 = time.perf_counter()
        for _ in range(5):
            normalize_and_flip(batch, flips, dtype=torch.bfloat16 if device.type == "cuda" else torch.float32)
        sync()
        row["normalize_ms_per_batch"] = round(1000 * (time.perf_counter() - t0) / 5, 2)
    print(json.dumps(row), flush=True)
    return row


def loader_only(args, device: torch.device) -> dict:
    """float32 against uint8 loader items on the same walkers, one after the other."""
    root = Path(args.root) if args.root else walkers(args.data, 32, (256, 128))
    rows = [loader_rate(root, uint8=u, workers=args.workers, batches=args.batches, device=device)
            for u in (False, True)]  # fmt: skip
    return {"machine": _machine(device), "cpu_cores": os.cpu_count(), "load_avg": round(os.getloadavg()[0], 2),
            "rows": rows,
            "uint8_vs_float32_clips_per_s": round(rows[1]["clips_per_s"] / rows[0]["clips_per_s"], 3)}  # fmt: skip


def epoch_scaling(train_ids: list[int], overrides: list[str], args, size, device) -> list[dict]:
    """Wall time of one full epoch (every training identity once per batch slot) at each dataset size."""
    rows = []
    for n in train_ids:
        root = walkers(args.data, 2 * n, size)
        cfg, data, step = setup([*overrides, f"data.root={root}", "train.iters_per_epoch=0"], device)
        data.set_epoch(0)
        t = timed(step, iter(data.loader), data.steps_per_epoch, device)
        rows.append(
            {
                "train_ids": n,
                "train_frames": sum(len(tr.paths) for tr in data.clips.tracklets),
                "steps_per_epoch": data.steps_per_epoch,
                "epoch_s": round(t, 2),
                "s_per_step": round(t / max(1, data.steps_per_epoch), 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", help="an existing folder-layout dataset (default: generate walkers into --data)")
    p.add_argument(
        "--data", default=str(ROOT / "runs" / "bench-e2e-walkers"), help="where to generate walkers"
    )
    p.add_argument("--cpu-scale", action="store_true", help="a small model and 128 x 64 frames")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--cache", type=int, default=4, help="batches kept in memory for the memory leg")
    p.add_argument("--epoch-ids", default="", help="time one epoch at these training-identity counts instead")
    p.add_argument("--items", choices=["auto", "float32", "uint8"], default="auto",
                   help="loader items of the two legs (auto: data.uint8_batches' default, uint8 on CUDA)")  # fmt: skip
    p.add_argument("--loader-only", action="store_true", help="time the loader alone, float32 vs uint8 items")
    p.add_argument("--batches", type=int, default=8, help="timed batches per leg with --loader-only")
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.loader_only:
        res = loader_only(args, device)
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1), encoding="utf-8")
        return res
    overrides = [*(CPU_SCALE if args.cpu_scale else PAPER), "model.weights=none", "model.strategy=semi"]
    overrides += [f"data.workers={args.workers}", f"train.device={args.device}", "data.stride=4"]
    if args.items != "auto":
        overrides.append(f"data.uint8_batches={args.items == 'uint8'}")
    size = (128, 64) if args.cpu_scale else (256, 128)
    if args.epoch_ids:
        rows = epoch_scaling([int(n) for n in args.epoch_ids.split(",")], overrides, args, size, device)
        res = {"machine": _machine(device), "torch_threads": torch.get_num_threads(), "workers": args.workers,
               "load_avg": round(os.getloadavg()[0], 2), "epoch_scaling": rows}  # fmt: skip
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1), encoding="utf-8")
        return res
    root = args.root or walkers(args.data, 32, size)
    cfg, data, step = setup([*overrides, f"data.root={root}"], device)

    def loader_batches():
        for epoch in itertools.count():
            data.set_epoch(epoch)
            yield from data.loader

    batches = loader_batches()
    cached = [
        {k: v.to(device) for k, v in b.items() if torch.is_tensor(v)}
        for b in itertools.islice(batches, args.cache)
    ]
    timed(step, itertools.cycle(cached), args.warmup, device)
    t_mem = timed(step, itertools.cycle(cached), args.steps, device)
    # Fresh workers, as at the start of an epoch: their start-up is part of the cost.
    batches = loader_batches()
    t_load = timed(step, batches, args.steps, device)
    b = cfg.data.num_ids * cfg.data.num_instances
    res = {
        "machine": _machine(device),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg": round(os.getloadavg()[0], 2),
        "frames": f"{cfg.data.height}x{cfg.data.width}",
        "batch": f"{cfg.data.num_ids}x{cfg.data.num_instances} clips x T={cfg.data.seq_len}",
        "workers": args.workers,
        "items": "uint8" if data.clips.uint8 else "float32",
        "steps": args.steps,
        "memory_clips_per_s": round(args.steps * b / t_mem, 2),
        "loader_clips_per_s": round(args.steps * b / t_load, 2),
        "loader_vs_memory": round(t_mem / t_load, 3),
    }
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1), encoding="utf-8")
    return res


if __name__ == "__main__":
    main()
