"""How many frames label propagation adds on the CPU walkers, and how accurate the propagated points are.

The dataset and the two-per-tracklet labels are the ones of ``accuracy_sweep.py --scale cpu``
(its ``SCALES["cpu"]`` and ``prepare_data``). Backbones compared:

* ``random``: the seed-0 initial backbone of that config (what ``data.propagate_labels`` uses with
  ``model.weights=none``);
* ``trained``: the backbone of a short semi-supervised run of that config on the same data
  (``--steps`` steps, trained here once and reused);
* any ``--weights FILE`` given as ``NAME=FILE`` (a checkpoint), e.g. an ImageNet-initialised run.

For every threshold: propagated frames and parts on the training tracklets (radius 3, search 2), their
PCK@0.1 against the ground truth, and the same PCK for the "copy" baseline: the keypoint of the
nearest labeled frame of the tracklet, unmoved, on the same (frame, part) pairs.

    python benchmarks/bench_propagation.py                  # about 3 CPU-minutes, 2 of them training
    python benchmarks/bench_propagation.py --thresholds 0.8,0.9
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from accuracy_sweep import SCALES, _run, prepare_data  # noqa: E402

from ssn3d.config import resolved_backbone_stages  # noqa: E402
from ssn3d.data.datasets import build_dataset  # noqa: E402
from ssn3d.engine.checkpoint import checkpoint_config, read_checkpoint  # noqa: E402
from ssn3d.io import atomic_write_json  # noqa: E402
from ssn3d.keypoints import VISIBLE  # noqa: E402
from ssn3d.labels.propagation import (  # noqa: E402
    PropagatedFrame,
    PropagationParams,
    propagate_labels,
    propagation_accuracy,
)
from ssn3d.labels.store import AnnotationStore  # noqa: E402
from ssn3d.models.backbone import Backbone  # noqa: E402


def copy_baseline(
    found: dict[str, PropagatedFrame], ds, labels: dict[str, np.ndarray], truth: dict[str, np.ndarray]
) -> float | None:
    """PCK@0.1 of copying the nearest labeled frame's keypoint, on the propagated (frame, part) pairs."""
    where = {ds.relpath(p): (ti, fi) for ti, t in enumerate(ds.train) for fi, p in enumerate(t.paths)}
    labeled_in: dict[int, list[tuple[int, np.ndarray]]] = {}
    for key, kps in labels.items():
        if key in where:
            ti, fi = where[key]
            labeled_in.setdefault(ti, []).append((fi, kps))
    hits = total = 0
    for key, frame in found.items():
        ti, fi = where[key]
        gt = truth[key]
        for i in np.flatnonzero((frame.keypoints[:, 2] >= VISIBLE) & (gt[:, 2] >= VISIBLE)):
            cands = [(abs(f - fi), k) for f, k in labeled_in[ti] if k[i, 2] >= VISIBLE]
            if not cands:
                continue
            src = min(cands, key=lambda c: c[0])[1]
            hits += np.linalg.norm(src[i, :2] - gt[i, :2]) <= 0.1 * frame.size[1]
            total += 1
    return hits / total if total else None


def backbone_from(ckpt: Path) -> Backbone:
    m = checkpoint_config(read_checkpoint(ckpt), ckpt).model
    return Backbone(
        name=m.backbone, stages=resolved_backbone_stages(m), in_channels=m.in_channels, weights=str(ckpt)
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "propagation-cpu", help="data and the run")
    p.add_argument("--thresholds", default="0.5,0.7,0.8,0.9,0.95")
    p.add_argument("--steps", type=int, default=150, help="steps of the semi run whose backbone is 'trained'")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=CKPT", help="more backbones")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "propagation-cpu.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    scale = SCALES["cpu"]
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    root = prepare_data(out, scale)
    cfg = scale["config"]
    (out / "base.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    run = out / f"semi-{args.steps}"
    train_s = None
    if not (run / "checkpoints" / "last.pt").is_file():
        shutil.rmtree(run, ignore_errors=True)  # a killed run of ours: start it over
        t0 = time.perf_counter()
        _run(
            [sys.executable, "-m", "ssn3d", "train", str(out / "base.yaml"), f"data.root={root}",
             f"data.annotations={out / 'labels-semi.json'}", f"train.max_steps={args.steps}",
             "--run-dir", str(run), "--no-progress"],
            threads=1, log=out / "semi.log",
        )  # fmt: skip
        train_s = time.perf_counter() - t0
    m = cfg["model"]
    torch.manual_seed(0)  # what training draws first: the initial model's backbone
    backbones = {"random": Backbone(name=m["backbone"], stages=m["backbone_stages"], weights="none")}
    backbones["trained"] = backbone_from(run / "checkpoints" / "last.pt")
    for item in args.weights:
        name, _, path = item.partition("=")
        backbones[name] = backbone_from(Path(path))
    ds = build_dataset("folder", root)
    truth = AnnotationStore(ds.ground_truth_path).frames()
    train_keys = {ds.relpath(q) for t in ds.train for q in t.paths}
    labels = {k: v for k, v in AnnotationStore(out / "labels-semi.json").frames().items() if k in train_keys}
    h, w = cfg["data"]["height"], cfg["data"]["width"]
    reachable = 0  # unlabeled frames within the radius (3) of a labeled frame of their tracklet
    for t in ds.train:
        marks = [ds.relpath(q) in labels for q in t.paths]
        reachable += sum(not m and any(marks[max(0, i - 3) : i + 4]) for i, m in enumerate(marks))
    rows = []
    for name, bb in backbones.items():
        for th in [float(x) for x in args.thresholds.split(",")]:
            t0 = time.perf_counter()
            found = propagate_labels(bb, ds.train, labels, ds.relpath, height=h, width=w,
                                     params=PropagationParams(threshold=th))  # fmt: skip
            wall = time.perf_counter() - t0
            acc = propagation_accuracy(found, truth, alpha=0.1)
            rows.append({
                "backbone": name, "threshold": th, "frames": len(found), "reachable_frames": reachable,
                "parts": acc["points"], "pck@0.1": acc["pck"], "copy_pck@0.1": copy_baseline(found, ds, labels, truth),
                "per_part": acc["per_part"], "wall_s": round(wall, 2),
            })  # fmt: skip
            r = rows[-1]
            print(
                f"{name:8s} >= {th:.2f}: {r['frames']:4d} frames, {r['parts']:5d} parts, PCK@0.1 "
                f"{r['pck@0.1'] or 0:.3f} (copy {r['copy_pck@0.1'] or 0:.3f}), {wall:.1f} s",
                flush=True,
            )
    record = {
        "dataset": {k: list(v) if isinstance(v, tuple) else v for k, v in scale["dataset"].items()},
        "labeled_frames": len(labels),
        "train_frames": len(train_keys),
        "semi_steps": args.steps,
        "semi_train_s": train_s,
        "rows": rows,
    }
    atomic_write_json(args.results, record, indent=1)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
