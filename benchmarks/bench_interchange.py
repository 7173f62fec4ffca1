"""How long label import/export and upload checks take at a realistic scale (issue 8).

A MARS-size label set (two labeled frames per tracklet, ~17k tracklets) is ~35k frames. Prints
one line per measurement; docs go in benchmarks/RESULTS-security.md.

    python benchmarks/bench_interchange.py [--frames 20000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ssn3d.data.images import check_image
from ssn3d.labels.coco import export_coco, import_coco
from ssn3d.labels.frames import FrameIndex
from ssn3d.labels.skeletons import COCO_17
from ssn3d.labels.store import AnnotationStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000)
    args = parser.parse_args()
    n, rng = args.frames, np.random.default_rng(0)
    frames = [f"bbox_train/{i // 100:04d}/{i:05d}C1T0001F{i % 100:03d}.jpg" for i in range(n)]
    flat = np.stack(
        [rng.uniform(0, 128, (n, 17)), rng.uniform(0, 256, (n, 17)), rng.integers(0, 3, (n, 17))], -1
    )
    doc = {
        "images": [{"id": i, "file_name": f.rsplit("/", 1)[1]} for i, f in enumerate(frames)],
        "annotations": [
            {"image_id": i, "category_id": 1, "keypoints": k.ravel().tolist()} for i, k in enumerate(flat)
        ],
        "categories": [{"id": 1, "keypoints": list(COCO_17)}],
    }
    text = json.dumps(doc)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        store = AnnotationStore(Path(tmp) / "labels.json")
        t = time.perf_counter()
        index = FrameIndex(frames)
        report = import_coco(text, index, store)
        dt = time.perf_counter() - t
        print(f"import_coco: {n} COCO-17 annotations ({len(text) / 1e6:.0f} MB) in {dt:.2f} s "
              f"({1e6 * dt / n:.0f} us/annotation); {len(report.imported)} frames written")  # fmt: skip
        t = time.perf_counter()
        out = export_coco(store)
        dt = time.perf_counter() - t
        print(f"export_coco: {len(out['annotations'])} frames in {dt:.2f} s")

        buf = io.BytesIO()
        Image.new("RGB", (64, 128), (90, 40, 10)).save(buf, "JPEG")
        jpeg = buf.getvalue()
        files = [Path(tmp) / f"{i:05d}.jpg" for i in range(1000)]
        for f in files:
            f.write_bytes(jpeg)
        t = time.perf_counter()
        for f in files:
            check_image(f)
        dt = time.perf_counter() - t
        print(f"check_image: 1000 64x128 JPEG frames in {dt:.2f} s ({dt:.2f} ms/frame)")


if __name__ == "__main__":
    main()
