"""Frames per second per CPU core of the training loader, and of its parts.

    python benchmarks/bench_loader.py            # 256 x 128 output, paper clips (T=4, stride 8)
    python benchmarks/bench_loader.py --quick

Frames are written to a temporary folder in the ``folder`` layout: JPEGs at MARS's native 128 x 256
(quality 90), 4x larger JPEGs (512 x 1024, where ``Image.draft`` decodes at reduced scale) and
64 x 128 PNGs (iLIDS-VID / PRID-2011 size). Single-process rows run with one torch thread, so
they are per-core figures; the DataLoader row uses ``--workers`` processes.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ssn3d.data.datasets import build_dataset
from ssn3d.data.images import load_image
from ssn3d.data.sampling import IdentitySampler
from ssn3d.data.transforms import ClipTransform
from ssn3d.data.video import TrainClips, build_train_loader


def textured(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """A smooth random picture (compresses like a photo, unlike white noise)."""
    small = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.BICUBIC)


def write_dataset(root: Path, ids: int, frames: int, size: tuple[int, int], ext: str) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for pid in range(ids):
        folder = root / "train" / f"{pid:04d}" / "c1_t0"
        folder.mkdir(parents=True)
        for f in range(frames):
            path = folder / f"{f:04d}.{ext}"
            textured(*size, rng).save(path, quality=90) if ext == "jpg" else textured(*size, rng).save(path)
            paths.append(str(path))
    return paths


def rate(fn, items: int, min_time: float) -> float:
    fn()  # warm up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_time:
        fn()
        n += 1
    return n * items / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    min_time = 0.5 if args.quick else 2.0
    ids, frames = (4, 16) if args.quick else (16, 40)
    torch.set_num_threads(1)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; output 256 x 128; "
        "one torch thread per process"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mars = write_dataset(tmp / "mars", ids, frames, (128, 256), "jpg")[:64]
        large = write_dataset(tmp / "large", 2, 16, (512, 1024), "jpg")
        png = write_dataset(tmp / "png", 2, 32, (64, 128), "png")

        def decode(paths, size):
            return lambda: [load_image(p, size) for p in paths]

        def decode_tv(paths):
            from torchvision.io import decode_jpeg, read_file

            return lambda: [decode_jpeg(read_file(p)) for p in paths]

        rows = [
            ("PIL decode, 128x256 JPEG", decode(mars, None), len(mars)),
            ("torchvision decode_jpeg, 128x256 JPEG", decode_tv(mars), len(mars)),
            ("PIL decode, 512x1024 JPEG, full size", decode(large, None), len(large)),
            ("PIL decode, 512x1024 JPEG, draft to 128x256", decode(large, (128, 256)), len(large)),
            ("PIL decode, 64x128 PNG", decode(png, None), len(png)),
        ]
        for name, fn, n in rows:
            print(f"{name:48s} {rate(fn, n, min_time):8.0f} frames/s")

        tf = ClipTransform(256, 128, train=True, flip_prob=0.5)
        for name, root in (
            ("128x256 JPEG", tmp / "mars"),
            ("512x1024 JPEG", tmp / "large"),
            ("64x128 PNG", tmp / "png"),
        ):
            ds = build_dataset("folder", root)
            clips = TrainClips(ds.train, root=ds.root, seq_len=4, stride=8, transform=tf)
            counter = iter(range(10**9))
            r = rate(lambda c=clips, k=counter: c[next(k) % len(c)], 4, min_time)
            print(f"{'TrainClips item (decode+resize+flip+norm), ' + name:48s} {r:8.0f} frames/s")

        ds = build_dataset("folder", tmp / "mars")
        clips = TrainClips(ds.train, root=ds.root, seq_len=4, stride=8, transform=tf)
        sampler = IdentitySampler(ds.train, 8, 4, iters_per_epoch=10**6)
        loader = build_train_loader(clips, sampler, workers=args.workers, pin_memory=False)
        it = iter(loader)
        next(it)
        batches, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 2 * min_time:
            next(it)
            batches += 1
        per_s = batches * 32 / (time.perf_counter() - t0)
        print(
            f"DataLoader, {args.workers} workers, 8x4 clips of 4 frames: {per_s:.0f} clips/s = "
            f"{4 * per_s:.0f} frames/s "
            f"({4 * per_s / max(args.workers, 1):.0f} frames/s per worker)"
        )
        del it, loader


if __name__ == "__main__":
    main()
