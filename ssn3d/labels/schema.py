"""The label file's format: what one dataset's keypoint labels look like on disk, and how they are checked.

One JSON document per dataset (``ssn3d.labels.store`` reads and writes it)::

    {"format": "ssn3d-keypoints", "version": 1, "parts": ["head", ...],
     "frames": {"<frame path relative to the dataset root>":
                {"keypoints": [[x, y, v], ...9], "source": "manual", "updated": 1732412345.0}}}

Coordinates are pixels of the original frame file; ``v`` follows COCO (see ``ssn3d.keypoints``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ssn3d.keypoints import NUM_PARTS, PARTS

FORMAT = "ssn3d-keypoints"
VERSION = 1


class AnnotationError(ValueError):
    """A label file that cannot be read as a label store; the message names the file and the fix."""


def validate_keypoints(value: Any, where: str) -> np.ndarray:
    """Check one frame's keypoints ([[x, y, v]] * 9, finite, v in {0, 1, 2}); return (9, 3) floats."""
    if not isinstance(value, list | tuple) or len(value) != NUM_PARTS:
        raise AnnotationError(
            f"{where}: expected a list of {NUM_PARTS} [x, y, v] points ({', '.join(PARTS)})."
        )
    out = np.zeros((NUM_PARTS, 3), dtype=np.float32)
    for i, point in enumerate(value):
        if not isinstance(point, list | tuple) or len(point) != 3:
            raise AnnotationError(f"{where}: point {i} ({PARTS[i]}) must be [x, y, v].")
        for j, c in enumerate(point):
            if isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c):
                raise AnnotationError(f"{where}: point {i} ({PARTS[i]}) has a non-numeric value {c!r}.")
            out[i, j] = c
        if point[2] not in (0, 1, 2):
            raise AnnotationError(
                f"{where}: point {i} ({PARTS[i]}) has visibility {point[2]!r}; use 0, 1 or 2."
            )
        if point[2] > 0 and (point[0] < 0 or point[1] < 0 or point[0] > 1e5 or point[1] > 1e5):
            raise AnnotationError(f"{where}: point {i} ({PARTS[i]}) lies outside any image: {point[:2]}.")
    return out


def validate_document(doc: Any, path: Path) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise AnnotationError(f'{path} is not an SSN3D label file (expected "format": "{FORMAT}").')
    if doc.get("version") != VERSION:
        raise AnnotationError(
            f"{path} has label format version {doc.get('version')!r}; this version reads {VERSION}."
        )
    if list(doc.get("parts", [])) != list(PARTS):
        raise AnnotationError(f"{path} labels parts {doc.get('parts')!r}; expected {list(PARTS)}.")
    frames = doc.get("frames")
    if not isinstance(frames, dict):
        raise AnnotationError(f'{path}: "frames" must be an object keyed by frame path.')
    for key, entry in frames.items():
        if not isinstance(entry, dict):
            raise AnnotationError(f'{path}: frame {key!r} must be an object with "keypoints".')
        validate_keypoints(entry.get("keypoints"), f"{path}: frame {key!r}")
    return doc


def empty_document() -> dict[str, Any]:
    """A label document with no frames."""
    return {"format": FORMAT, "version": VERSION, "parts": list(PARTS), "frames": {}}
