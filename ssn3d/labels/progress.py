"""What counts as a labeled frame, and where the labeler goes next (pure, no UI).

Paper, "Semi-supervised Training" and "Different Learning Strategy": a few frames per tracklet (two
in the paper) carry keypoints of the N = 9 parts. A frame counts once every part is placed or marked
not visible; the goal is ``GOAL_PER_TRACKLET`` such frames per tracklet.

Keypoints are (N, 3) float arrays of (x, y, v) in frame pixels, v as in COCO (0 not labeled,
1 not visible, 2 visible).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ssn3d.keypoints import NOT_LABELED

GOAL_PER_TRACKLET = 2  # paper: "we select two images with high-quality labels from each video tracklet"


def is_started(kps: np.ndarray | None) -> bool:
    """At least one part of the frame is labeled (visible or not)."""
    return kps is not None and bool((np.asarray(kps)[:, 2] > NOT_LABELED).any())


def is_labeled(kps: np.ndarray | None) -> bool:
    """A frame counts as labeled when its parts are done: every part placed or marked not visible.

    A frame with a few points is only started: counting it would call a tracklet done ("7/2 labeled")
    while its anchors are missing most parts.
    """
    return kps is not None and bool((np.asarray(kps)[:, 2] > NOT_LABELED).all())


@dataclass(frozen=True)
class Progress:
    """Labeled frames against the goal.

    Attributes:
        labeled: frames whose parts are done (``is_labeled``).
        started: frames with some parts labeled, not all.
        goal: frames wanted (per tracklet: ``GOAL_PER_TRACKLET``; over a dataset: the sum).
        tracklets_done: tracklets that reached their goal (1 or 0 for one tracklet).
        tracklets: how many tracklets were counted.
    """

    labeled: int
    started: int
    goal: int
    tracklets_done: int
    tracklets: int

    @property
    def fraction(self) -> float:
        return 1.0 if self.goal == 0 else min(1.0, self.labeled / self.goal)


def tracklet_progress(
    frames: Iterable[str], labels: Mapping[str, np.ndarray], goal: int = GOAL_PER_TRACKLET
) -> Progress:
    """Labeled frames of one tracklet (frame keys) against ``goal`` (capped at the tracklet's length)."""
    keys = list(frames)
    labeled = sum(is_labeled(labels.get(k)) for k in keys)
    started = sum(is_started(labels.get(k)) for k in keys) - labeled
    g = min(goal, len(keys))
    return Progress(labeled, started, g, int(labeled >= g), 1)


def dataset_progress(
    tracklets: Iterable[Iterable[str]], labels: Mapping[str, np.ndarray], goal: int = GOAL_PER_TRACKLET
) -> Progress:
    """``tracklet_progress`` summed over tracklets; ``labeled`` counts at most ``goal`` per tracklet."""
    labeled = started = want = done = count = 0
    for frames in tracklets:
        p = tracklet_progress(frames, labels, goal)
        labeled += min(p.labeled, p.goal)
        started += p.started
        want += p.goal
        done += p.tracklets_done
        count += 1
    return Progress(labeled, started, want, done, count)


def next_unlabeled_frame(frames: Sequence[str], index: int, labels: Mapping[str, np.ndarray]) -> int | None:
    """The next frame after ``index`` (wrapping around) that is not labeled yet; None when all are.

    A started frame comes first, so a frame left half done is finished before a new one is begun.
    """
    order = [(index + step) % len(frames) for step in range(1, len(frames) + 1)]
    for wanted in (is_started, lambda kps: True):
        for j in order:
            kps = labels.get(frames[j])
            if not is_labeled(kps) and wanted(kps):
                return j
    return None


def next_unlabeled_tracklet(
    tracklets: Sequence[Sequence[str]],
    index: int,
    labels: Mapping[str, np.ndarray],
    goal: int = GOAL_PER_TRACKLET,
) -> int | None:
    """The next tracklet after ``index`` (wrapping around) short of its goal; None when every one is done."""
    n = len(tracklets)
    for step in range(1, n + 1):
        j = (index + step) % n
        if not tracklet_progress(tracklets[j], labels, goal).tracklets_done:
            return j
    return None
