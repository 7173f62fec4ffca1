"""Clicks per labeled frame on the Annotate page, with and without the pose detector's suggestions.

The page's actions are library calls (``ssn3d.labels.pose.suggest_keypoints`` for "Suggest",
``ssn3d.labels.editing.accept_suggestions`` for "Accept suggestions"); this drives those calls on the frames a
labeler would label (``pick_labeled_frames``: two per training tracklet) and counts the clicks the page
would need to reach the true keypoints of ``keypoints.json``:

* **by hand**: one click per part. A click places the selected part and selects the next open one,
  and "Not visible" does the same for a hidden part: 9 clicks a frame.
* **with suggestions**: "Suggest" (1) and, when a confident point came back, "Accept" (1); then per
  part: 0 when the accepted point lies within ``--alpha`` x frame height of a visible true point; 1 for
  a part left open (the page selects it next: a click, or "Not visible"); 2 for an accepted point that
  is wrong or should be hidden (select the part, then click or "Not visible").

    python benchmarks/bench_suggest.py                     # the demo walkers (generated into a temp dir)
    python benchmarks/bench_suggest.py --data DATASET      # any folder dataset with keypoints.json

Writes ``benchmarks/results/suggest.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssn3d.data.datasets import build_dataset  # noqa: E402
from ssn3d.data.synth.labels import pick_labeled_frames  # noqa: E402
from ssn3d.keypoints import NOT_VISIBLE, VISIBLE  # noqa: E402
from ssn3d.labels import editing  # noqa: E402
from ssn3d.labels.pose import pose_available, suggest_keypoints  # noqa: E402
from ssn3d.labels.store import AnnotationStore  # noqa: E402


def clicks_with(truth: np.ndarray, sug: np.ndarray | None, height: float, alpha: float) -> int:
    """Clicks to reach ``truth`` (9, 3) from a suggestion (9, 3) or None (no person found)."""
    if sug is None:
        return 1 + len(truth)  # a Suggest that found nobody, then every part by hand
    accepted = editing.accept_suggestions(None, sug)
    took = accepted[:, 2] >= VISIBLE
    n = 1 + int(took.any())  # Suggest, and Accept when something was confident
    for i, (x, y, v) in enumerate(truth):
        if not took[i]:
            n += 1  # selected next: one click (or Not visible)
        elif v == NOT_VISIBLE or np.hypot(accepted[i, 0] - x, accepted[i, 1] - y) > alpha * height:
            n += 2  # select the part, click where it belongs (or Not visible)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, help="a folder dataset with keypoints.json (default: the demo)")
    ap.add_argument("--alpha", type=float, default=0.1, help="a suggestion within alpha x height is right")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "suggest.json")
    args = ap.parse_args()
    if not pose_available():
        sys.exit("the pose detector is not installed; run `bash scripts/install-pose.sh`.")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data
        if root is None:
            from ssn3d.data.synth.walkers import generate_demo

            root = generate_demo(Path(tmp) / "demo-walkers")
        ds = build_dataset("folder", root)
        gt = AnnotationStore(ds.ground_truth_path).frames()
        chosen = pick_labeled_frames(gt, ds.train, per_tracklet=2, root=ds.root)
        keys = sorted(chosen)
        t0 = time.perf_counter()
        results = suggest_keypoints([ds.root / k for k in keys])
        seconds = time.perf_counter() - t0
        rows = []
        for k, res in zip(keys, results):
            with Image.open(ds.root / k) as im:
                height = float(im.height)
            rows.append(
                {
                    "frame": k,
                    "found": res.keypoints is not None,
                    "by_hand": len(chosen[k]),
                    "with_suggestions": clicks_with(chosen[k], res.keypoints, height, args.alpha),
                }
            )
    n = len(rows)
    summary = {
        "dataset": "demo walkers" if args.data is None else str(args.data),
        "frames": n,
        "person_found": sum(r["found"] for r in rows),
        "clicks_per_frame_by_hand": sum(r["by_hand"] for r in rows) / n,
        "clicks_per_frame_with_suggestions": sum(r["with_suggestions"] for r in rows) / n,
        "detector_seconds": round(seconds, 1),
        "alpha": args.alpha,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "frames": rows}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
