"""A tracklet: the frames of one person seen by one camera, in temporal order.

Video re-identification (paper, section "Experiments / Datasets") compares tracklets, not images.
``Tracklet`` is a NamedTuple so that it unpacks like torchreid's ``(img_paths, pid, camid)`` tuples.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

_DIGITS = re.compile(r"(\d+)")


class Tracklet(NamedTuple):
    """One tracklet.

    Attributes:
        paths: absolute frame paths, sorted in temporal order.
        pid: person id (training ids are relabeled 0..n-1; query/gallery ids keep the dataset's numbers).
        camid: 0-based camera index.
    """

    paths: tuple[str, ...]
    pid: int
    camid: int

    @property
    def num_frames(self) -> int:
        return len(self.paths)


def natural_key(name: str) -> tuple:
    """Sort key that orders ``f2.png`` before ``f10.png`` (numbers compare as numbers)."""
    parts = _DIGITS.split(name)
    return tuple((0, int(p), "") if i % 2 else (1, 0, p) for i, p in enumerate(parts))


def natural_sorted(names: Iterable[str]) -> list[str]:
    """``names`` sorted by ``natural_key`` (ties broken by the plain string)."""
    return sorted(names, key=lambda n: (natural_key(n), n))


def split_stats(tracklets: Sequence[Tracklet]) -> dict[str, float]:
    """Identities, tracklets and frames of one split, plus min/mean/max frames per tracklet."""
    lengths = [len(t.paths) for t in tracklets]
    return {
        "ids": len({t.pid for t in tracklets}),
        "tracklets": len(tracklets),
        "frames": sum(lengths),
        "min_len": min(lengths, default=0),
        "mean_len": (sum(lengths) / len(lengths)) if lengths else 0.0,
        "max_len": max(lengths, default=0),
    }
