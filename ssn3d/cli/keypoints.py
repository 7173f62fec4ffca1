"""``python -m ssn3d keypoints detect DATASET --to LABELS.json``: labels from the offline pose detector.

Runs ``ssn3d.labels.detect.detect_dataset`` with a progress bar. Resumable: frames already in the
store are skipped. Frames that cannot be decoded, or that show no person, are listed at the end.
"""

from __future__ import annotations

import argparse

from ssn3d.cli.datasets import parse_options

SHOWN = 20  # frame paths listed per problem; the rest are counted


def _detect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ssn3d.data.datasets import build_dataset
    from ssn3d.labels.detect import detect_dataset
    from ssn3d.labels.pose import INSTALL_HINT, PoseDetectorError, pose_available
    from ssn3d.labels.store import AnnotationStore

    if not pose_available():  # before reading the dataset: the fix is an install, not a path
        raise PoseDetectorError(f"the pose detector is not installed; {INSTALL_HINT}.")
    ds = build_dataset(args.loader, args.dataset, **parse_options(args.option))
    store = AnnotationStore(args.to)
    bar = None  # opened at the first batch, so that a refused input prints its sentence alone

    def progress(done: int, total: int) -> None:
        nonlocal bar
        bar = bar or tqdm(total=total, unit="frame", desc="pose", disable=args.quiet)
        bar.update(done - bar.n)

    try:
        report = detect_dataset(
            ds,
            store,
            splits=args.split or ("train", "query", "gallery"),
            min_confidence=args.min_confidence,
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    print(
        f"{report.written} frames labeled by the pose detector into {args.to}; "
        f"{report.skipped} of {report.frames} were already there"
    )
    for what, frames in (("show no person", report.no_person), ("cannot be decoded", report.unreadable)):
        if frames:
            print(f"{len(frames)} frames {what}:")
            for rel in frames[:SHOWN]:
                print(f"  {rel}")
            if len(frames) > SHOWN:
                print(f"  ... and {len(frames) - SHOWN} more")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keypoints", help="keypoint labels from the offline pose detector")
    cmds = p.add_subparsers(dest="keypoints_command", metavar="ACTION", required=True)
    det = cmds.add_parser("detect", help="write a label store from the pose detector (resumable)")
    det.add_argument("dataset", help="the dataset folder")
    det.add_argument("--to", required=True, metavar="LABELS.json", help="the label store to create or extend")
    det.add_argument(
        "--split",
        action="append",
        choices=("train", "query", "gallery"),
        help="only these splits (repeatable)",
    )
    det.add_argument(
        "--loader", default="folder", help="dataset layout: folder | mars | ilidsvid | dukev | prid2011"
    )
    det.add_argument("--option", action="append", metavar="KEY=VALUE", help="loader option, e.g. split=3")
    det.add_argument(
        "--min-confidence", type=float, default=0.5, help="points below this get visibility 1 (not anchoring)"
    )
    det.add_argument("--quiet", action="store_true", help="no progress bar")
    det.set_defaults(func=_detect)
