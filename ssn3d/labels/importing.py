"""What every label importer shares: reading a foreign document, its points, the report, the locked write.

A malformed document raises ``InterchangeError`` (one sentence); a malformed item is skipped with its
reason in the ``ImportReport``. An import is one locked, atomic update of the store, and frames
already labeled are kept unless ``overwrite``. Foreign file names are only matched against the
dataset's own frames (``ssn3d.labels.frames.FrameIndex``) and never opened, so a hostile name
cannot reach the disk.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ssn3d.io import file_lock
from ssn3d.labels.schema import AnnotationError, validate_keypoints

if TYPE_CHECKING:  # frames.py imports this module for InterchangeError
    from ssn3d.labels.frames import FrameIndex
    from ssn3d.labels.store import AnnotationStore

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]

MAX_DOCUMENT_BYTES = 64 * 1024 * 1024  # ~200k person annotations: far beyond a hand-made label set
MAX_ITEMS = 1_000_000  # images + annotations in one document
MAX_COORD = 1e5  # the label store's own bound on a pixel coordinate


class InterchangeError(AnnotationError):
    """A document that cannot be imported at all; the message names it and the fix.

    ``reason`` is the short cause without the document's name (what an ``ImportReport`` lists).
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


@dataclass
class ImportReport:
    """What an import did: frames written, frames replaced, and every item skipped with its reason."""

    source: str
    imported: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skip(self, item: str, reason: str) -> None:
        self.skipped.append((item, reason))

    def reasons(self) -> dict[str, int]:
        """How many items were skipped for each reason, most frequent first."""
        return dict(Counter(reason for _, reason in self.skipped).most_common())

    def summary(self) -> str:
        """One line for the app and the CLI."""
        text = f"{self.source}: imported {len(self.imported)} frame(s)"
        if self.replaced:
            text += f" ({len(self.replaced)} replaced)"
        text += f", skipped {len(self.skipped)}"
        if self.skipped:
            text += ": " + "; ".join(f"{n} {reason}" for reason, n in self.reasons().items())
        return text + "."


def commit(
    store: AnnotationStore,
    changes: dict[str, np.ndarray],
    report: ImportReport,
    overwrite: bool,
    dry_run: bool,
    source: str,
) -> ImportReport:
    """Write ``changes`` in one locked read-modify-write; labels already there stay unless ``overwrite``."""
    with file_lock(store.path):
        doc = store.read()  # a damaged store raises here, before anything is written
        frames, now = doc["frames"], time.time()
        for frame, kps in changes.items():
            if frame in frames:
                if not overwrite:
                    report.skip(frame, "already labeled (import with overwrite to replace)")
                    continue
                report.replaced.append(frame)
            arr = validate_keypoints(kps.tolist(), f"frame {frame!r}")
            frames[frame] = {"keypoints": arr.tolist(), "source": source, "updated": now}
            report.imported.append(frame)
        if report.imported and not dry_run:
            store.write_document(doc)
    log.info("%s%s", "(dry run) " if dry_run else "", report.summary())
    return report


def count_labeled(kps: np.ndarray) -> int:
    """How many parts of (9, 3) keypoints are labeled (visible or not)."""
    return int((kps[:, 2] > 0).sum())


def match_frames(
    found: dict[str, tuple[int, np.ndarray]], index: FrameIndex, report: ImportReport
) -> dict[str, np.ndarray]:
    changes: dict[str, np.ndarray] = {}
    for name, (_, kps) in found.items():
        frame, why = index.match(name)
        if frame is None:
            report.skip(name, why)
        elif frame in changes:
            report.skip(name, f"a second file for frame {frame}")
        else:
            changes[frame] = kps
    return changes


OUTSIDE_TOLERANCE = 0.05  # of the image's size: a point just past the border is a hand's slip, not an error


def hide_outside_frame(kps: np.ndarray, width: float, height: float) -> int:
    """Mark points lying outside a ``width`` x ``height`` image (beyond a small tolerance) not visible.

    Such a point cannot be an anchor in that frame: kept visible, it would pull a part window off the
    image. It is kept as "not labeled" (0, 0, 0) rather than refusing the whole frame, whose other
    points are good. Returns how many points were hidden; ``kps`` (9, 3) is changed in place.
    """
    tx, ty = OUTSIDE_TOLERANCE * width, OUTSIDE_TOLERANCE * height
    x, y, v = kps[:, 0], kps[:, 1], kps[:, 2]
    outside = (v > 0) & ((x < -tx) | (x > width + tx) | (y < -ty) | (y > height + ty))
    kps[outside] = 0.0
    return int(outside.sum())


def read_json(source: Mapping[str, Any] | str | bytes | os.PathLike, what: str) -> Any:
    """A parsed JSON document: a mapping as is, ``str``/``bytes`` as JSON text, a ``Path`` read from disk."""
    if isinstance(source, Mapping):
        return source
    if isinstance(source, os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise InterchangeError(
                f"{what} {path} is not a file; choose the JSON file to import.", "not a file"
            )
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            raise InterchangeError(
                f"{what} {path} is larger than {MAX_DOCUMENT_BYTES >> 20} MB; split it.", "too large"
            )
        source = path.read_bytes()
    if not isinstance(source, str | bytes | bytearray):
        raise InterchangeError(
            f"{what} is a {type(source).__name__}, not a JSON document; pass its text or bytes.", "not JSON"
        )
    if len(source) > MAX_DOCUMENT_BYTES:
        raise InterchangeError(
            f"{what} is larger than {MAX_DOCUMENT_BYTES >> 20} MB; split it into smaller files.", "too large"
        )
    try:
        return json.loads(source)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, too many digits, deep nesting
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e).splitlines()[0][:120]
        raise InterchangeError(
            f"{what} is not valid JSON ({reason}); export it again from its tool.", "not valid JSON"
        ) from None


def _number(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    return -1e15 < v < 1e15 if isinstance(v, int) else math.isfinite(v)  # a huge int overflows float()


def parse_points(flat: Any, count: int | None, confidence: float | None) -> np.ndarray | str:
    """(K, 3) points in our coordinates from a flat [x, y, v-or-confidence, ...] list, or why not."""
    if not isinstance(flat, list) or not flat or len(flat) % 3:
        return "keypoints are not a list of x, y, v triples"
    if count is not None and len(flat) != 3 * count:
        return f"{len(flat) // 3} keypoints where the skeleton has {count}"
    if len(flat) > 3 * 1000 or not all(_number(v) for v in flat):
        return "keypoints hold a value that is not a finite number"
    pts = np.asarray(flat, dtype=np.float64).reshape(-1, 3)
    if confidence is None:
        if not np.isin(pts[:, 2], (0, 1, 2)).all():
            return "a visibility flag is not 0, 1 or 2"
    else:
        if ((pts[:, 2] < 0) | (pts[:, 2] > 1.0 + 1e-6)).any():
            return "a confidence lies outside [0, 1]"
        pts[:, 2] = np.where((pts[:, 2] >= confidence) & (pts[:, 2] > 0), 2, 0)  # 0: not detected
    labeled = pts[:, 2] > 0
    pts[labeled, :2] += 0.5
    if ((pts[labeled, :2] < 0) | (pts[labeled, :2] > MAX_COORD)).any():
        return "a keypoint lies outside any image"
    pts[~labeled] = 0
    return pts.astype(np.float32)
