"""``python -m ssn3d video import VIDEO OUT [--every N] [--min-length K]``: tracklets from a camera video.

Runs ``ssn3d.data.video_import.import_video`` (HOG people detector, ByteTrack, crops in the ``folder``
layout) with a progress bar, then prints the new dataset's split table.
"""

from __future__ import annotations

import argparse


def _import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ssn3d.data.datasets import build_dataset
    from ssn3d.data.video_import import PeopleDetector, import_video

    detector = PeopleDetector(upscale=args.upscale)
    bar = None  # opened at the first frame, so that a refused video prints its sentence alone

    def progress(done: int, total: int) -> None:
        nonlocal bar
        bar = bar or tqdm(total=total or None, unit="frame", desc="video", disable=args.quiet)
        bar.update(done - bar.n)

    try:
        result = import_video(
            args.video,
            args.out,
            every=args.every,
            min_length=args.min_length,
            max_frames=args.max_frames,
            detector=detector,
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    print(
        f"{len(result.tracklets)} tracklets of {result.tracks} tracks from {result.frames_used} frames "
        f"({result.detections} person boxes) written to {result.root}; identities are unverified track ids"
    )
    print(build_dataset("folder", result.root).summary())
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number >= 1")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("video", help="make tracklets from a camera video")
    cmds = p.add_subparsers(dest="video_command", metavar="ACTION", required=True)
    imp = cmds.add_parser("import", help="detect, track and crop people into a folder dataset")
    imp.add_argument("video", help="the video file (.avi, .mp4, ...)")
    imp.add_argument("out", help="the dataset folder to create (must not exist or be empty)")
    imp.add_argument("--every", type=_positive, default=1, metavar="N", help="use every N-th frame")
    imp.add_argument(
        "--min-length", type=_positive, default=8, metavar="K", help="drop tracks with fewer than K crops"
    )
    imp.add_argument("--max-frames", type=_positive, default=None, metavar="M", help="stop after M frames")
    imp.add_argument(
        "--upscale", type=float, default=1.0, help="enlarge frames first to find smaller people (slower)"
    )
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(func=_import)
