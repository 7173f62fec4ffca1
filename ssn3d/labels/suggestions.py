"""A pose detector's suggestions beside the labels: how they are kept, accepted and described.

Suggestions are never labels until accepted (docs/DESIGN.md): they are held per user as plain
JSON-able values ``{frame key: {"keypoints": (9, 3) list, "confidence": (9,) list}}``, drawn as
hollow rings by the Annotate page, and only their confident points (v = 2)
become labels (``ssn3d.labels.editing.accept_suggestions``).
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ssn3d.keypoints import NOT_LABELED, VISIBLE
from ssn3d.labels.editing import accept_suggestions, next_unlabeled
from ssn3d.labels.pose import PoseResult

Suggestion = dict[str, list]  # {"keypoints": (9, 3) list, "confidence": (9,) list}


def keep_suggestions(
    held: MutableMapping[str, Suggestion], frames: Sequence[str], results: Sequence[PoseResult]
) -> int:
    """Replace the suggestions of ``frames`` with the detector's ``results`` (one per frame); return how
    many frames got one (a frame where no person was found loses its old suggestion)."""
    found = 0
    for frame, res in zip(frames, results):
        held.pop(frame, None)
        if res.keypoints is not None:
            held[frame] = {"keypoints": res.keypoints.tolist(), "confidence": res.confidence.tolist()}
            found += 1
    return found


@dataclass(frozen=True)
class Accepted:
    """What accepting a frame's suggestions gives.

    Attributes:
        keypoints: the frame's new keypoints (N, 3).
        added: how many parts became labeled.
        next_part: the first part still to place or hide, or None when every part is done.
    """

    keypoints: np.ndarray
    added: int
    next_part: int | None


def accept(kps: np.ndarray | None, suggestion: Suggestion) -> Accepted:
    """Accept the confident points of ``suggestion`` into a frame's saved keypoints ``kps`` (None: none)."""
    after = accept_suggestions(kps, np.asarray(suggestion["keypoints"], dtype=np.float32))
    added = int((after[:, 2] > NOT_LABELED).sum() - (0 if kps is None else (kps[:, 2] > NOT_LABELED).sum()))
    return Accepted(after, added, next_unlabeled(after, -1))


def describe(kps: np.ndarray | None, suggestion: dict[str, Any], names: Sequence[str]) -> str:
    """The suggested parts not labeled yet, with their confidence: "head 0.93, left foot 0.41 (unsure)"."""
    todo = [i for i in range(len(names)) if kps is None or kps[i, 2] == NOT_LABELED]
    return ", ".join(
        f"{names[i]} {suggestion['confidence'][i]:.2f}"
        f"{'' if suggestion['keypoints'][i][2] >= VISIBLE else ' (unsure)'}"
        for i in todo
    )
