"""``python -m ssn3d labels next CHECKPOINT_OR_RUN --data ROOT [--split train] [--top 20]``.

Which frames to label next: the frames the model is least sure about its parts on (attention
entropy and peaks jumping between frames, ``ssn3d.labels.next``), skipping frames already in the
label store, and the one frame to label first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class UsageError(ValueError):
    """A command-line value that cannot be used; the message says which and how to fix it."""


def _run(args: argparse.Namespace) -> int:
    import torch

    from ssn3d.data.datasets import build_dataset
    from ssn3d.engine.evaluate import resolve_checkpoint
    from ssn3d.engine.inference import FeatureExtractor
    from ssn3d.labels.next import suggest_labels
    from ssn3d.labels.store import AnnotationStore
    from ssn3d.serving.workspace import Workspace

    if args.top < 1:
        raise UsageError(f"--top {args.top} must be at least 1.")
    if args.max_frames < 1:
        raise UsageError(f"--max-frames {args.max_frames} must be at least 1.")
    if not Path(args.data).is_dir():
        raise FileNotFoundError(f"--data {args.data} is not a folder; pass the dataset's root folder.")
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt, _ = resolve_checkpoint(args.target)
    extractor = FeatureExtractor.from_checkpoint(ckpt, device=args.device)
    dataset = build_dataset(args.dataset, args.data)
    store_path = (
        Path(args.labels) if args.labels else Workspace.from_env().annotations / f"{dataset.dataset_id}.json"
    )
    labels = AnnotationStore(store_path).frames() if store_path.is_file() else {}

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\rscoring tracklets {done}/{total}", end="" if done < total else "\n", file=sys.stderr)

    result = suggest_labels(
        extractor, dataset, labels, split=args.split, max_frames=args.max_frames, progress=progress
    )
    print(
        f"{dataset.dataset_id} {args.split}: {len(result.tracklets)} tracklets, {len(result.frames)} unlabeled frames scored "
        f"({len(labels)} labeled in {store_path})"
    )
    if not result.frames:
        print("every scored frame is labeled already")
        return 0
    width = max(len(f.key) for f in result.frames[: args.top])
    print(f"{'rank':>4s}  {'frame':{width}s}  {'score':>5s}  {'entropy':>7s}  {'jump':>5s}  reason")
    for i, f in enumerate(result.frames[: args.top], 1):
        print(f"{i:4d}  {f.key:{width}s}  {f.score:5.3f}  {f.entropy:7.3f}  {f.jump:5.2f}  {f.reason}")
    print(f"label next: {result.next_frame}")
    return 0


def add_action(kinds: argparse._SubParsersAction) -> None:
    """Add ``labels next`` to the ``labels`` command's actions (``ssn3d.cli.labels``)."""
    n = kinds.add_parser(
        "next",
        help="rank unlabeled frames by how unsure the model is about its parts",
        description="Attention entropy and part peaks jumping between frames, one score per frame "
        "(see ssn3d.labels.next); frames already labeled are skipped.",
    )
    n.add_argument(
        "target", metavar="CHECKPOINT_OR_RUN", help="a run folder (best.pt, else last.pt) or a .pt file"
    )
    n.add_argument("--data", required=True, metavar="ROOT", help="the dataset's folder")
    n.add_argument("--dataset", default="folder", help="its loader: folder (default), mars, ilidsvid, ...")
    n.add_argument("--split", default="train", choices=("train", "query", "gallery"))
    n.add_argument("--top", type=int, default=20, help="rows of the table")
    n.add_argument(
        "--labels", help="the label store (default: the workspace's annotations/<dataset id>.json)"
    )
    n.add_argument("--max-frames", type=int, default=16, help="frames scored per tracklet (evenly spaced)")
    n.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    n.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    n.set_defaults(func=_run)
