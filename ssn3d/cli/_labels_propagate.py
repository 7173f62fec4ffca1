"""``python -m ssn3d labels propagate LABELS.json --data ROOT --weights CKPT --to OUT.json``: more labeled frames.

Not in the paper (``ssn3d.labels.propagation``): carries the store's keypoints to the frames within
``--radius`` of each labeled frame of its tracklet where a backbone's features match them with cosine
similarity >= ``--threshold`` (and mutually). Writes a NEW store: every entry of LABELS.json as it
was, plus the propagated frames (``source`` "propagated", a ``confidence`` per part). LABELS.json is
only read. The backbone is a training checkpoint's (its config gives the backbone and the frame
size), or with ``--backbone`` a torchvision-keyed state dict (or ``imagenet`` from the torch cache).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ssn3d.cli.datasets import parse_options

if TYPE_CHECKING:
    from torch import nn

SPLITS = ("train", "query", "gallery")


def _backbone(args: argparse.Namespace) -> tuple[nn.Module, tuple[int, int]]:
    """The feature extractor and the (height, width) it sees, from --weights (and --backbone)."""
    from ssn3d.config import resolved_backbone_stages
    from ssn3d.engine.checkpoint import CheckpointError, checkpoint_config, read_checkpoint
    from ssn3d.models.backbone import IMAGENET_FILES, Backbone

    if args.backbone:
        if args.backbone not in IMAGENET_FILES:
            raise ValueError(f"--backbone {args.backbone} is not one of {', '.join(IMAGENET_FILES)}.")
        if args.weights != "imagenet" and not Path(args.weights).is_file():
            raise FileNotFoundError(
                f"--weights {args.weights} does not exist; pass a state-dict file or imagenet."
            )
        backbone = Backbone(name=args.backbone, stages=args.stages, weights=args.weights)
        return backbone, (args.height or 256, args.width or 128)  # the paper's frame size
    try:
        cfg = checkpoint_config(read_checkpoint(args.weights), args.weights)
    except CheckpointError as e:  # a missing file (CheckpointNotFoundError) keeps its own sentence
        raise CheckpointError(
            f"{str(e).rstrip('.')}; for a torchvision state dict add --backbone NAME."
        ) from None
    m = cfg.model
    if m.backbone == "none":
        raise ValueError(
            f"checkpoint {args.weights} has no backbone (model.backbone=none); pass another one."
        )
    backbone = Backbone(
        name=m.backbone, stages=resolved_backbone_stages(m), in_channels=m.in_channels, weights=args.weights
    )
    return backbone, (args.height or cfg.data.height, args.width or cfg.data.width)


# Long on purpose: one CLI command read top to bottom: refuse bad stores, load, propagate, write, report.
def _propagate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ssn3d.data.datasets import build_dataset
    from ssn3d.engine.distributed import DistInfo, device_for
    from ssn3d.labels.propagated import labels_digest, params_record, write_propagated
    from ssn3d.labels.propagation import SOURCE, PropagationParams, propagate_labels
    from ssn3d.labels.schema import AnnotationError
    from ssn3d.labels.store import AnnotationStore

    src, out = Path(args.labels), Path(args.to)
    if not src.is_file():
        raise FileNotFoundError(f"label store {src} does not exist; pass the labels to propagate.")
    if out.resolve() == src.resolve():
        raise AnnotationError(
            f"--to {out} is the input store; propagation writes a new store, name another file."
        )
    if out.exists() and not args.force:
        raise AnnotationError(f"--to {out} already exists; choose a new file or pass --force to replace it.")
    params = PropagationParams(threshold=args.threshold, radius=args.radius, search=args.search)
    store = AnnotationStore(src)
    entries = store.read()["frames"]
    # frames propagated earlier are kept as they are but carry nothing further: only labels spread
    labels = {k: v for k, v in store.frames().items() if entries[k].get("source") != SOURCE}
    if not labels:
        raise AnnotationError(f"{src} holds no labeled frames to propagate; label some frames first.")
    ds = build_dataset(args.loader, args.data, **parse_options(args.option))
    backbone, (height, width) = _backbone(args)
    backbone.to(device_for(args.device, DistInfo()))
    tracklets = [t for split in args.split or SPLITS for t in ds.splits()[split]]
    with tqdm(unit="tracklet", desc="propagate", disable=args.quiet) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        found = propagate_labels(
            backbone,
            tracklets,
            labels,
            ds.relpath,
            height=height,
            width=width,
            params=params,
            progress=progress,
        )
    found = {k: f for k, f in found.items() if k not in entries}
    meta = params_record(
        params,
        labels=labels_digest(labels),
        weights=str(args.weights),
        backbone=getattr(backbone, "name", None),
        backbone_stages=getattr(backbone, "stages", None),
        height=height,
        width=width,
    )
    write_propagated(out, found, manual=entries, meta=meta)
    parts = sum(f.parts for f in found.values())
    print(
        f"{len(found)} frames got propagated labels ({parts} parts) from {len(labels)} labeled frames; "
        f"wrote {out} with {len(entries) + len(found)} frames ({src} is unchanged)"
    )
    return 0


def add_action(cmds: argparse._SubParsersAction) -> None:
    """Add ``labels propagate`` to the ``labels`` command's actions (``ssn3d.cli.labels``)."""
    c = cmds.add_parser(
        "propagate",
        help="carry labeled keypoints to frames +-radius by feature matching (not in the paper); writes a new store",
    )
    c.add_argument("labels", metavar="LABELS.json", help="the label store to propagate (only read)")
    c.add_argument("--data", required=True, metavar="ROOT", help="the dataset folder the labels belong to")
    c.add_argument(
        "--weights",
        required=True,
        metavar="CKPT",
        help="a training checkpoint; with --backbone a torchvision state dict or imagenet",
    )
    c.add_argument("--to", required=True, metavar="OUT.json", help="the new label store to write")
    c.add_argument("--radius", type=int, default=3, help="frames on each side of a labeled frame (3)")
    c.add_argument("--threshold", type=float, default=0.8, help="least cosine similarity of a match (0.8)")
    c.add_argument("--search", type=int, default=2, help="cells searched around the keypoint's position (2)")
    c.add_argument("--backbone", default="", help="resnet18 | resnet34 | resnet50: --weights is a state dict")
    c.add_argument("--stages", type=int, default=3, help="with --backbone: ResNet layers kept (3)")
    c.add_argument("--height", type=int, default=0, help="frame height the backbone sees (the checkpoint's)")
    c.add_argument("--width", type=int, default=0, help="frame width the backbone sees (the checkpoint's)")
    c.add_argument(
        "--split", action="append", choices=SPLITS, help="only these splits' tracklets (repeatable)"
    )
    c.add_argument(
        "--loader", default="folder", help="dataset layout: folder | mars | ilidsvid | dukev | prid2011"
    )
    c.add_argument("--option", action="append", metavar="KEY=VALUE", help="loader option, e.g. split=3")
    c.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    c.add_argument("--force", action="store_true", help="replace --to when it exists (never the input store)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_propagate)
