"""``python -m ssn3d datasets info NAME ROOT [--option k=v] [--check]``: check a dataset download.

Prints the split table (ids, tracklets, frames) of ``ssn3d.data.datasets.build_dataset``; with
``--check`` also decodes every frame and lists the unreadable ones (exit status 1 if any).
"""

from __future__ import annotations

import argparse

from ssn3d.data.datasets.base import DatasetError


def parse_options(items: list[str] | None) -> dict[str, str]:
    """``["split=3", "gallery=rest"]`` -> ``{"split": "3", "gallery": "rest"}``."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DatasetError(f"--option {item!r} must look like key=value, e.g. --option split=3.")
        out[key.strip()] = value.strip()
    return out


def _info(args: argparse.Namespace) -> int:
    from ssn3d.data.datasets import build_dataset

    ds = build_dataset(args.name, args.root, **parse_options(args.option))
    print(f"root: {ds.root}")
    print(f"label store: annotations/{ds.dataset_id}.json")
    if ds.ground_truth_path is not None:
        print(f"ground-truth keypoints: {ds.ground_truth_path.name}")
    print(ds.summary())
    if not args.check:
        return 0
    from tqdm import tqdm

    from ssn3d.data.video import scan_images

    tracklets = ds.train + ds.query + ds.gallery
    total = len(ds.all_frames())
    with tqdm(total=total, unit="frame", desc="decoding", disable=args.quiet) as bar:
        bad = scan_images(tracklets, progress=lambda done, _: bar.update(done - bar.n))
    if not bad:
        print(f"all {total} frames decode")
        return 0
    print(f"{len(bad)} of {total} frames cannot be decoded (training skips them with a warning):")
    for path in bad:
        print(f"  {path}")
    return 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "datasets", help="inspect video re-id datasets (MARS, iLIDS-VID, DukeMTMC-VideoReID, ...)"
    )
    cmds = p.add_subparsers(dest="datasets_command", metavar="ACTION", required=True)
    info = cmds.add_parser("info", help="print the split table of a dataset folder")
    info.add_argument("name", help="mars | ilidsvid | dukev | prid2011 | folder")
    info.add_argument("root", help="the dataset folder")
    info.add_argument(
        "--option", action="append", metavar="KEY=VALUE", help="loader option, e.g. split=3 or gallery=rest"
    )
    info.add_argument("--check", action="store_true", help="decode every frame and list unreadable ones")
    info.add_argument("--quiet", action="store_true", help="no progress bar")
    info.set_defaults(func=_info)
