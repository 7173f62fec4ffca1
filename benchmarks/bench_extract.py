"""Feature extraction speed with the paper's test protocol: frames per second, from files and from memory.

Paper, "Training and testing protocols": at test time every frame of a tracklet is used, in
32-frame clips whose features are averaged. ``ssn3d.engine.evaluate.extract_features`` does exactly
that (decode + resize + normalize in DataLoader workers, one clip per forward pass, mean per
tracklet); this script times it on the query + gallery tracklets of a generated walkers dataset,
for SSN3D and the temporal-pooling baseline, and times the model alone on one 32-frame clip kept in
memory, which says how much of the cost is the model and how much the frames.

    python benchmarks/bench_extract.py                  # paper model at 256 x 128 (GPU: bf16)
    python benchmarks/bench_extract.py --cpu-scale      # small model at 128 x 64, what a 2-core CPU times
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssn3d.config import load_config  # noqa: E402
from ssn3d.engine.evaluate import extract_features  # noqa: E402
from ssn3d.engine.session import channels_last_2d  # noqa: E402
from ssn3d.engine.train_data import load_dataset  # noqa: E402
from ssn3d.models import build_model  # noqa: E402

PAPER = ["model.backbone=resnet50", "data.height=256", "data.width=128"]
CPU_SCALE = [
    "model.backbone=resnet18", "model.backbone_stages=1", "model.attn_channels=32", "model.part_channels=16",
    "model.embed_dim=64", "data.height=128", "data.width=64",
]  # fmt: skip


def time_arch(arch: str, overrides: list[str], device: torch.device, workers: int, repeats: int) -> dict:
    cfg = load_config(None, [*overrides, f"model.arch={arch}", "model.strategy=semi"])
    dataset = load_dataset(cfg)
    tracklets = dataset.query + dataset.gallery
    frames = sum(len(t.paths) for t in tracklets)
    torch.manual_seed(0)
    model = build_model(cfg.model).to(device).eval()
    if device.type == "cuda" and cfg.train.channels_last:
        channels_last_2d(model)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    extract_features(model, tracklets[:2], cfg, device=device, workers=workers)  # warm-up (and worker start)
    sync()
    t0 = time.perf_counter()
    feats = extract_features(model, tracklets, cfg, device=device, workers=workers)
    sync()
    t_files = time.perf_counter() - t0
    clip = torch.randn(1, cfg.data.test_chunk, 3, cfg.data.height, cfg.data.width, device=device)
    amp = device.type == "cuda" and cfg.train.amp
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        model(clip)
        sync()
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(clip)
        sync()
    t_model = (time.perf_counter() - t0) / repeats
    return {
        "arch": arch,
        "tracklets": len(tracklets),
        "frames": frames,
        "embedding": list(feats.shape),
        "files_frames_per_s": round(frames / t_files, 1),
        "model_only_frames_per_s": round(cfg.data.test_chunk / t_model, 1),
    }


def _machine(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--root", help="a folder-layout dataset with query/ and gallery/ (default: generate walkers)"
    )
    p.add_argument(
        "--data", default=str(ROOT / "runs" / "bench-extract-walkers"), help="where to generate walkers"
    )
    p.add_argument("--cpu-scale", action="store_true", help="a small model and 128 x 64 frames")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--ids", type=int, default=16, help="identities of the generated dataset (half are test)")
    p.add_argument("--repeats", type=int, default=5, help="model-only passes over one 32-frame clip")
    p.add_argument("--archs", default="ssn3d,temporal_pooling")
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    root = args.root
    size = (128, 64) if args.cpu_scale else (256, 128)
    if root is None:
        from ssn3d.data.synth.walkers import generate_walkers

        root = Path(args.data) / f"{size[0]}x{size[1]}-{args.ids}"
        if not (root / "dataset.json").is_file():
            print(f"generating walkers at {size[0]}x{size[1]} into {root}", flush=True)
            generate_walkers(
                root, ids=args.ids, cameras=2, tracklets_per_camera=1, frames=64, size=size, progress=True
            )
    overrides = [*(CPU_SCALE if args.cpu_scale else PAPER), "model.weights=none", f"data.root={root}"]
    overrides += ["data.test_chunk=32", f"train.device={args.device}"]
    rows = []
    for arch in args.archs.split(","):
        rows.append(time_arch(arch, overrides, device, args.workers, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    res = {
        "machine": _machine(device),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg": round(os.getloadavg()[0], 2),
        "frames": f"{size[0]}x{size[1]}",
        "workers": args.workers,
        "rows": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1), encoding="utf-8")
    return res


if __name__ == "__main__":
    main()
