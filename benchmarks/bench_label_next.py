"""Are actively chosen labels worth more than random ones? Part PCK on held-out walkers after k labels.

Issue "What to label next": the app ranks frames by how unsure the current model is about its
parts (``ssn3d.labels.next``). This measures whether labeling those frames beats labeling random
ones, at the CPU scale of ``configs/walkers-tiny.yaml``:

1. walkers are generated (8 training identities, 8 held-out ones in query/gallery) with true keypoints;
2. ``--seed-labels`` random training frames are labeled (from the ground truth) and a semi-supervised
   seed model is trained on them: the "current model" a labeler would have;
3. for every budget k: **active** = the seed labels + the k - s frames ``Suggestions.pick`` chooses
   with the seed model; **random** = the seed labels + k - s training frames drawn at random;
4. a semi-supervised model is trained from scratch on each label set (same seed, data and schedule),
   and part PCK is measured on the held-out query/gallery frames: part i's attention peak
   (``ssn3d.attention.peak_points``) within ``--alpha`` x frame height of keypoint i (visible ones).

    OMP_NUM_THREADS=2 python benchmarks/bench_label_next.py --repeats 1     # k = 8, 16, 32: ~13 min on 2 busy cores
    OMP_NUM_THREADS=1 python benchmarks/bench_label_next.py --quick         # smoke test, about a minute

Writes ``benchmarks/results/label_next[-quick].json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssn3d.attention import peak_points  # noqa: E402
from ssn3d.config import load_config  # noqa: E402
from ssn3d.data.datasets import build_dataset  # noqa: E402
from ssn3d.data.synth.walkers import generate_walkers  # noqa: E402
from ssn3d.engine.inference import FeatureExtractor  # noqa: E402
from ssn3d.engine.train import main as train_main  # noqa: E402
from ssn3d.keypoints import VISIBLE  # noqa: E402
from ssn3d.labels.next import subsample, suggest_labels  # noqa: E402
from ssn3d.labels.store import AnnotationStore  # noqa: E402
from ssn3d.part_pck import mean_positions, pck_report  # noqa: E402

SCALES = {
    # ids, tracklets per camera, frames per tracklet, training steps, eval frames per tracklet, budgets
    "full": dict(ids=16, tracklets=2, frames=16, steps=60, eval_frames=8, budgets=(8, 16, 32)),
    "quick": dict(ids=8, tracklets=1, frames=8, steps=4, eval_frames=4, budgets=(6, 8)),
}


def held_out_pck(extractor: FeatureExtractor, dataset, truth: dict, eval_frames: int, alpha: float) -> dict:
    """Part PCK of a model on evenly spaced frames of every query and gallery tracklet."""
    points, kps, tol = [], [], []
    for t in [*dataset.query, *dataset.gallery]:
        paths = [t.paths[j] for j in subsample(len(t.paths), eval_frames)]
        maps = extractor.attention(paths)  # (T, N, h, w)
        for p, m in zip(paths, maps):
            k = truth[dataset.relpath(p)]
            with Image.open(p) as im:
                size = im.size  # keypoints are in the frame file's pixels
            points.append(peak_points(m, size))
            kps.append(k)
            tol.append(alpha * size[1])
    if len(set(tol)) != 1:
        raise ValueError("held-out frames of different heights: part PCK takes one tolerance")
    report = pck_report(np.stack(points), np.stack(kps), tol[0])
    return {**report, "visible": int((np.stack(kps)[..., 2] >= VISIBLE).sum())}


def train(root: Path, labels: dict, run_dir: Path, steps: int, seed: int) -> FeatureExtractor:
    """A semi-supervised walkers-tiny model trained on ``labels`` from scratch; its extractor."""
    store = run_dir.with_suffix(".labels.json")
    AnnotationStore(store).update(labels, source="synthetic")
    cfg = load_config(
        ROOT / "configs" / "walkers-tiny.yaml",
        [
            f"data.root={root}",
            f"data.annotations={store}",
            "train.device=cpu",
            f"train.max_steps={steps}",
            "train.eval_every=0",
            "train.ckpt_every=0",
            f"train.seed={seed}",
        ],
    )
    state = train_main(cfg, run_dir)
    if state != "done":
        raise RuntimeError(f"training in {run_dir} ended {state}")
    return FeatureExtractor.from_checkpoint(run_dir / "checkpoints" / "last.pt")


def mean_position_pck(labeled: np.ndarray, keypoints: np.ndarray, tol: float) -> float:
    """PCK of a model-free guess: every part at its mean visible position over the labeled frames."""
    guess = np.broadcast_to(mean_positions(labeled), (*keypoints.shape[:-1], 2))
    return pck_report(guess, keypoints, tol)["overall"]


def chance_pck(
    keypoints: np.ndarray, image_size: tuple[int, int], grid: tuple[int, int], tol: float
) -> float:
    """PCK of a peak in a uniformly random cell of the (w, h) ``grid`` over (W, H) frames."""
    from ssn3d.keypoints import feature_cell_to_image

    cells = np.stack(np.meshgrid(np.arange(grid[0]), np.arange(grid[1])), -1).reshape(-1, 2)
    centres = feature_cell_to_image(cells, image_size, grid)  # (cells, 2)
    d = np.linalg.norm(keypoints[..., None, :2] - centres, axis=-1)  # (F, N, cells)
    vis = keypoints[..., 2] >= VISIBLE
    return round(float(((d <= tol).mean(-1) * vis).sum() / vis.sum()), 4)


def spread_random(rest: list[str], labeled: list[str], extra: int, rng: np.random.Generator) -> list[str]:
    """``extra`` random frames, each from a tracklet with the fewest labels so far (the coverage of
    ``Suggestions.pick`` without its scores): separates what the ranking adds from what coverage adds."""
    count: dict[str, int] = {}
    for k in rest + labeled:
        count.setdefault(k.rsplit("/", 1)[0], 0)
    for k in labeled:
        count[k.rsplit("/", 1)[0]] += 1
    left, chosen = list(rest), []
    while left and len(chosen) < extra:
        fewest = min(count[k.rsplit("/", 1)[0]] for k in left)
        pool = [k for k in left if count[k.rsplit("/", 1)[0]] == fewest]
        pick = pool[int(rng.integers(len(pool)))]
        chosen.append(pick)
        left.remove(pick)
        count[pick.rsplit("/", 1)[0]] += 1
    return sorted(chosen)


def coverage(keys: list[str]) -> int:
    """Distinct tracklets among labeled frame keys."""
    return len({k.rsplit("/", 1)[0] for k in keys})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke-test scale (about a minute)")
    ap.add_argument("--seed-labels", type=int, default=4, help="random labels of the seed model (s)")
    ap.add_argument("--alpha", type=float, default=0.1, help="PCK tolerance as a share of frame height")
    ap.add_argument(
        "--seed", type=int, default=0, help="data seed; repeat r draws labels and trains with seed r"
    )
    ap.add_argument("--repeats", type=int, default=2, help="label draws and training seeds per budget")
    ap.add_argument("--work", help="scratch folder (default: a temporary one)")
    ap.add_argument("--out", help="result JSON (default: benchmarks/results/label_next[-quick].json)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    scale = SCALES["quick" if args.quick else "full"]
    out = Path(
        args.out or ROOT / "benchmarks" / "results" / f"label_next{'-quick' if args.quick else ''}.json"
    )
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="label-next-"))
    t0 = time.perf_counter()

    root = generate_walkers(
        work / "walkers",
        ids=scale["ids"],
        cameras=2,
        tracklets_per_camera=scale["tracklets"],
        frames=scale["frames"],
        size=(64, 32),  # walkers-tiny's input size: no resize
        seed=args.seed,
    )
    dataset = build_dataset("folder", str(root))
    truth = AnnotationStore(root / "keypoints.json").frames()
    train_keys = sorted(dataset.relpath(p) for t in dataset.train for p in t.paths)
    eval_kps = np.stack(
        [
            truth[dataset.relpath(t.paths[j])]
            for t in [*dataset.query, *dataset.gallery]
            for j in subsample(len(t.paths), scale["eval_frames"])
        ]
    )
    frame_h = 64  # the generated frames are 64 x 32, as walkers-tiny's input

    def measure(name: str, keys: list[str], seed: int) -> tuple[dict, FeatureExtractor]:
        t = time.perf_counter()
        fx = train(root, {k: truth[k] for k in keys}, work / "runs" / name, scale["steps"], seed)
        pck = held_out_pck(fx, dataset, truth, scale["eval_frames"], args.alpha)
        prior = mean_position_pck(np.stack([truth[k] for k in keys]), eval_kps, args.alpha * frame_h)
        row = {
            "labels": len(keys),
            "tracklets": coverage(keys),
            **pck,
            "mean_position_pck": prior,
            "seconds": round(time.perf_counter() - t, 1),
        }
        print(
            f"{name:14s} k={len(keys):3d} ({row['tracklets']:2d} tracklets)  PCK {pck['overall']:.3f}"
            f"  (mean position {prior:.3f})  {row['seconds']:.0f} s"
        )
        return row, fx

    rows, seeds, rank_s = [], [], []
    for rep in range(args.repeats):
        rng = np.random.default_rng([args.seed, rep])
        seed_keys = sorted(rng.choice(train_keys, args.seed_labels, replace=False).tolist())
        rest = [k for k in train_keys if k not in set(seed_keys)]
        seed_row, seed_fx = measure(f"seed-r{rep}", seed_keys, rep)
        seeds.append({"repeat": rep, **seed_row})
        grid = seed_fx.feature_size
        t = time.perf_counter()
        suggestions = suggest_labels(seed_fx, dataset, {k: truth[k] for k in seed_keys})
        rank_s.append(round(time.perf_counter() - t, 2))
        for k in scale["budgets"]:
            extra = k - args.seed_labels
            arms = {
                "active": seed_keys + suggestions.pick(extra),
                "random": seed_keys + sorted(rng.choice(rest, extra, replace=False).tolist()),
                "spread": seed_keys + spread_random(rest, seed_keys, extra, rng),
            }
            for arm, keys in arms.items():
                row, _ = measure(f"{arm}-{k}-r{rep}", keys, rep)
                rows.append({"arm": arm, "k": k, "repeat": rep, **row})
    summary = {
        f"{arm}-{k}": round(
            float(np.mean([r["overall"] for r in rows if r["arm"] == arm and r["k"] == k])), 4
        )
        for k in scale["budgets"]
        for arm in ("active", "random", "spread")
    }
    record = {
        "benchmark": "label_next",
        "command": f"OMP_NUM_THREADS={torch.get_num_threads()} python benchmarks/bench_label_next.py"
        + (" --quick" if args.quick else "")
        + f" --repeats {args.repeats} --seed-labels {args.seed_labels} --seed {args.seed}",
        "scale": {
            **scale,
            "budgets": list(scale["budgets"]),
            "seed_labels": args.seed_labels,
            "seed": args.seed,
            "repeats": args.repeats,
        },
        "alpha": args.alpha,
        "pck": "ssn3d.part_pck.pck_report (part i against keypoint i)",
        "train_frames": len(train_keys),
        "train_tracklets": len(dataset.train),
        "eval_tracklets": len(dataset.query) + len(dataset.gallery),
        "ranking_seconds": rank_s,
        "chance_pck": chance_pck(eval_kps, (32, 64), grid, args.alpha * frame_h),
        "mean_pck": summary,
        "seed_models": seeds,
        "rows": rows,
        "load_average": list(os.getloadavg()),
        "torch_threads": torch.get_num_threads(),
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print("mean PCK: " + ", ".join(f"{k} {v:.3f}" for k, v in summary.items()))
    print(f"ranking {max(rank_s):.1f} s; total {record['total_seconds']:.0f} s; wrote {out}")


if __name__ == "__main__":
    main()
