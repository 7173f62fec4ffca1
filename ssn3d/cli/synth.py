"""``python -m ssn3d synth {pedestrians,demo,amber,labels}``: synthetic data in the paper's study styles.

* ``pedestrians OUT``: walkers in the ``folder`` video-ReID layout with true keypoints; with
  ``--single`` a Pedestrian-128-style set of single crops (paper, "Study on SSN").
* ``demo [OUT]``: the app's built-in dataset (the workspace's ``data/demo-walkers`` by default).
* ``amber OUT``: Amber-Abstract-style paintings with planted motifs (paper Fig. 6).
* ``labels OUT --to FILE``: a label store with a few frames per training tracklet (the paper's
  semi-supervised labels), or with ``--noisy`` what a pose detector would have said.
"""

from __future__ import annotations

import argparse
from pathlib import Path


class UsageError(ValueError):
    """A command-line value that cannot be used; the message says which and how to fix it."""


def parse_size(text: str) -> tuple[int, int]:
    """'128x64' -> (128, 64): height x width."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size {text!r} must be HEIGHTxWIDTH, e.g. 128x64.") from None
    return h, w


def _pedestrians(args: argparse.Namespace) -> int:
    from ssn3d.data.synth import walkers

    if args.single:
        size = parse_size(args.size) if args.size else (120, 60)
        out = walkers.generate_pedestrian128(
            args.out,
            count=args.count,
            labeled=args.labeled,
            size=size,
            seed=args.seed,
            progress=not args.quiet,
            jpeg=not args.png,
            force=args.force,
        )
        print(f"wrote {args.count} crops ({args.labeled} labeled) of {size[0]}x{size[1]} to {out}")
        return 0
    size = parse_size(args.size) if args.size else walkers.DEMO["size"]
    out = walkers.generate_walkers(
        args.out,
        ids=args.ids,
        cameras=args.cameras,
        tracklets_per_camera=args.tracklets_per_camera,
        frames=args.frames,
        size=size,
        seed=args.seed,
        progress=not args.quiet,
        split=not args.no_split,
        jpeg=not args.png,
        force=args.force,
    )
    total = args.ids * args.cameras * args.tracklets_per_camera * args.frames
    print(f"wrote {total} frames of {args.ids} identities to {out} (keypoints in {out / 'keypoints.json'})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ssn3d.data.synth.walkers import generate_demo
    from ssn3d.serving.workspace import Workspace

    out = Path(args.out) if args.out else Workspace.from_env().demo_dataset
    generate_demo(out, seed=args.seed, progress=not args.quiet)
    print(f"wrote the demo dataset to {out}")
    return 0


def _amber(args: argparse.Namespace) -> int:
    from ssn3d.data.synth.amber import generate_amber

    size = parse_size(args.size)
    out = generate_amber(args.out, count=args.count, seed=args.seed, size=size, progress=not args.quiet)
    print(f"wrote {args.count} paintings of {size[0]}x{size[1]} to {out} (motifs in {out / 'motifs.json'})")
    return 0


def _labels(args: argparse.Namespace) -> int:
    from ssn3d.data.synth.labels import noisy_keypoints, pick_labeled_frames
    from ssn3d.labels.store import AnnotationStore

    root = Path(args.out)
    truth_path = root / "keypoints.json"
    if not truth_path.is_file():
        raise FileNotFoundError(
            f"{truth_path} is missing; generate the dataset with `python -m ssn3d synth pedestrians {root}`."
        )
    target = Path(args.to)
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists; pass --force to replace it or choose another --to file.")
    truth = AnnotationStore(truth_path).frames()
    if args.split != "all":
        truth = {k: v for k, v in truth.items() if k.split("/", 1)[0] == args.split}
    if not truth:
        raise UsageError(
            f"{truth_path} has no frames under {args.split}/; pass --split all or another split."
        )
    chosen = (
        truth if args.per_tracklet == 0 else pick_labeled_frames(truth, None, args.per_tracklet, args.seed)
    )
    source = "synthetic"
    if args.noisy:
        chosen = noisy_keypoints(
            chosen, sigma_px=args.sigma, dropout=args.dropout, swap_prob=args.swap, seed=args.seed
        )
        source = "synthetic-noisy"
    if target.exists():
        target.unlink()
    AnnotationStore(target).update(chosen, source=source)
    tracklets = len({k.rsplit("/", 1)[0] for k in chosen})
    print(f"wrote {len(chosen)} labeled frames of {tracklets} tracklets to {target}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="synthetic data: walkers, Pedestrian-128 crops, Amber paintings, labels")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)

    w = kinds.add_parser(
        "pedestrians", help="walkers for video ReID (folder layout + keypoints), or --single crops"
    )
    w.add_argument("out", help="output folder (new or empty; an earlier generated dataset needs --force)")
    w.add_argument("--ids", type=int, default=16, help="identities; half train, half query/gallery")
    w.add_argument("--cameras", type=int, default=2)
    w.add_argument("--tracklets-per-camera", type=int, default=2)
    w.add_argument("--frames", type=int, default=16, help="frames per tracklet")
    w.add_argument("--size", help="HEIGHTxWIDTH of a frame (default 128x64; 120x60 with --single)")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--no-split", action="store_true", help="put every tracklet in train/")
    w.add_argument("--png", action="store_true", help="PNG frames instead of JPEG")
    w.add_argument("--single", action="store_true", help="a Pedestrian-128-style set of single crops instead")
    w.add_argument("--count", type=int, default=128, help="crops with --single (paper: 128)")
    w.add_argument("--labeled", type=int, default=16, help="labeled crops with --single (paper: 16)")
    w.add_argument(
        "--force", action="store_true", help="regenerate an earlier generated dataset in OUT in place"
    )
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(func=_pedestrians)

    d = kinds.add_parser("demo", help="the app's built-in walkers dataset")
    d.add_argument("out", nargs="?", help="default: the workspace's data/demo-walkers")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_demo)

    a = kinds.add_parser("amber", help="Amber-Abstract-style paintings with planted motifs")
    a.add_argument("out", help="output folder")
    a.add_argument("--count", type=int, default=128, help="paintings (paper: 128)")
    a.add_argument("--size", default="480x640", help="HEIGHTxWIDTH (paper: 480x640)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=_amber)

    lab = kinds.add_parser("labels", help="a label store from a walkers dataset's true keypoints")
    lab.add_argument("out", help="the walkers dataset folder (holds keypoints.json)")
    lab.add_argument("--to", required=True, help="the label file to write (ssn3d.labels.schema format)")
    lab.add_argument(
        "--per-tracklet", type=int, default=2, help="frames per tracklet (paper: 2); 0 = every frame"
    )
    lab.add_argument("--split", default="train", help="train (default), query, gallery or all")
    lab.add_argument("--noisy", action="store_true", help="jitter, drop and swap joints like a pose detector")
    lab.add_argument("--sigma", type=float, default=2.0, help="--noisy jitter in pixels")
    lab.add_argument("--dropout", type=float, default=0.1, help="--noisy chance a visible joint is missed")
    lab.add_argument("--swap", type=float, default=0.05, help="--noisy chance per left/right pair of a swap")
    lab.add_argument("--seed", type=int, default=0)
    lab.add_argument("--force", action="store_true", help="replace --to if it exists")
    lab.set_defaults(func=_labels)
