"""What to label next: frames and tracklets ranked by how unsure the current model is about its parts.

Paper, "Semi-supervised Training": two frames per tracklet carry keypoints, "chosen by hand". With
the current model at hand a labeler can do better than a guess: a label is most useful where the
model does not know where its parts are. Two signs of that, both read off the attention maps
A^i (eq. 1-2) of the unlabeled frames:

* **entropy**: per frame, the mean over the N parts of H(A^i) / log(h * w), in [0, 1]. A part that
  is sure sits on a few cells (near 0); a part spread over the whole frame scores near 1;
* **jump**: per frame, the mean over parts of how far (in feature cells) the part's peak lies from
  its peaks in the neighbouring scored frames of the same tracklet. A part that is sure of its
  body part moves with it, a little per frame; one that is not hops from limb to limb.

The rule that combines them (see docs/DESIGN.md)::

    score = (entropy + jump / (1 + jump)) / 2          in [0, 1)

``jump / (1 + jump)`` is 1 minus ``ssn3d.attention.stability``'s per-cell rule: 0 when the parts
stay put, 0.5 at one cell of jump, towards 1 for parts that cross the frame. Both terms weigh
alike, since neither is known to be the better sign. A tracklet scores the mean of its frames.

``suggest_labels`` runs the model (one batched forward per tracklet, at most ``max_frames`` evenly
spaced frames of a long tracklet) and returns plain values; ``rank_maps`` is the same ranking on
maps already computed. The next frame to label is the best unlabeled frame among the tracklets
with fewer than ``GOAL_PER_TRACKLET`` labeled frames that have the fewest labels, else the best
unlabeled frame of any tracklet.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ssn3d.attention import peak_cells
from ssn3d.labels.progress import GOAL_PER_TRACKLET, is_labeled, is_started
from ssn3d.labels.store import AnnotationStore

_logger = logging.getLogger(__name__)

MAX_FRAMES = 16  # frames scored per tracklet: one forward of the app's models, neighbours still close
ProgressFn = Callable[[int, int], None]


def frame_entropy(maps: np.ndarray) -> np.ndarray:
    """Mean over parts of each map's entropy, normalised by log(h * w): (T, N, h, w) -> (T,) in [0, 1].

    Maps are rescaled to sum to 1 first, so any non-negative maps can be passed.
    """
    maps = np.asarray(maps, dtype=np.float64)
    t, n, h, w = maps.shape
    p = maps.reshape(t, n, h * w)
    p = p / np.maximum(p.sum(-1, keepdims=True), 1e-12)
    ent = -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1)  # (T, N), 0 log 0 = 0
    return (ent / math.log(h * w)).mean(-1) if h * w > 1 else np.zeros(t)


def frame_jumps(maps: np.ndarray) -> np.ndarray:
    """Mean over parts of each peak's distance, in feature cells, to its peaks in the neighbouring frames.

    Args:
        maps: (T, N, h, w) maps of one tracklet's frames in temporal order.

    Returns:
        (T,) jumps; a first or last frame has one neighbour, a single frame jumps 0.
    """
    cells = peak_cells(maps).astype(np.float64)  # (T, N, 2)
    t = len(cells)
    if t < 2:
        return np.zeros(t)
    step = np.linalg.norm(np.diff(cells, axis=0), axis=-1).mean(-1)  # (T - 1,): frame i -> i + 1
    before = np.concatenate([[np.nan], step])
    after = np.concatenate([step, [np.nan]])
    return np.nanmean(np.stack([before, after]), axis=0)


def combine(entropy: np.ndarray, jump: np.ndarray) -> np.ndarray:
    """The module's rule: ``(entropy + jump / (1 + jump)) / 2``, elementwise, in [0, 1)."""
    jump = np.asarray(jump, dtype=np.float64)
    return (np.asarray(entropy, dtype=np.float64) + jump / (1.0 + jump)) / 2.0


@dataclass(frozen=True)
class FrameScore:
    """One scored frame.

    Attributes:
        key: the frame's key in the label store (posix path relative to the dataset root).
        tracklet: the tracklet's index in the split.
        score: ``combine(entropy, jump)``.
        entropy: mean normalised attention entropy of the frame's parts.
        jump: mean peak displacement to the neighbouring scored frames, in cells.
        reason: one short sentence for a person.
    """

    key: str
    tracklet: int
    score: float
    entropy: float
    jump: float
    reason: str


@dataclass(frozen=True)
class TrackletScore:
    """One tracklet: ``score`` the mean of its scored frames, ``labeled`` its frames with every part done."""

    index: int
    name: str
    score: float
    labeled: int
    goal: int


@dataclass
class Suggestions:
    """The ranking, as plain values.

    Attributes:
        frames: unlabeled scored frames, best first.
        tracklets: every scored tracklet, best first.
        next_frame: the most useful frame to label next, or None when every scored frame is labeled.
    """

    frames: list[FrameScore] = field(default_factory=list)
    tracklets: list[TrackletScore] = field(default_factory=list)
    next_frame: str | None = None

    def ranking(self) -> list[tuple[str, float, str]]:
        """(frame key, score, reason) of every unlabeled scored frame, best first."""
        return [(f.key, f.score, f.reason) for f in self.frames]

    def pick(self, k: int) -> list[str]:
        """``k`` frames to label together: ``next_frame`` again and again, as if each had been labeled."""
        labeled = {t.index: t.labeled for t in self.tracklets}
        goal = {t.index: t.goal for t in self.tracklets}
        chosen: list[str] = []
        left = list(self.frames)
        while left and len(chosen) < k:
            best = _best(left, labeled, goal)
            chosen.append(best.key)
            labeled[best.tracklet] += 1
            left.remove(best)
        return chosen

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: {"frames": [...], "tracklets": [...], "next_frame": key or None}."""
        return {
            "frames": [vars(f) for f in self.frames],
            "tracklets": [vars(t) for t in self.tracklets],
            "next_frame": self.next_frame,
        }


def _best(frames: list[FrameScore], labeled: Mapping[int, int], goal: Mapping[int, int]) -> FrameScore:
    """The best of ``frames`` (sorted best first) from the tracklets under their goal with the fewest labels.

    Fewest first, so that a batch labels one frame of every tracklet that lacks labels before it
    labels a second (often similar) frame of one; at the goal everywhere, simply the best frame.
    """
    open_ = [f for f in frames if labeled[f.tracklet] < goal[f.tracklet]]
    if not open_:
        return frames[0]
    fewest = min(labeled[f.tracklet] for f in open_)
    return next(f for f in open_ if labeled[f.tracklet] == fewest)


def _reason(entropy: float, jump: float, labeled: int, goal: int) -> str:
    """Which term weighs more, both values, and the tracklet's labels, in one line."""
    cause = "maps spread out" if entropy >= jump / (1.0 + jump) else "peaks jump"
    return f"{cause}: entropy {entropy:.2f}, jump {jump:.1f} cells; tracklet {labeled}/{goal} labeled"


def rank_maps(
    tracklets: Sequence[tuple[Sequence[str], np.ndarray]],
    labels: Mapping[str, np.ndarray],
    *,
    names: Sequence[str] | None = None,
    goal: int = GOAL_PER_TRACKLET,
) -> Suggestions:
    """Rank frames given each tracklet's scored frames and their maps (no model needed).

    Args:
        tracklets: per tracklet, (the keys of its scored frames in temporal order, their (T, N, h, w)
            maps); ``labels`` decides which of them are labeled.
        labels: {frame key: (N, 3) keypoints} of the label store (its whole content may be passed).
        names: a display name per tracklet (default: the folder of its first key).
        goal: labeled frames wanted per tracklet (paper: 2).

    Returns:
        The ``Suggestions``. A frame with any part labeled is never suggested; a tracklet's
        labeled count only holds frames with every part done, as the Annotate page's progress.
    """
    frames: list[FrameScore] = []
    scores: list[TrackletScore] = []
    for index, (keys, maps) in enumerate(tracklets):
        keys = list(keys)
        maps = np.asarray(maps)
        if maps.ndim != 4 or len(keys) != len(maps):
            raise ValueError(
                f"tracklet {index}: {len(keys)} frame keys need maps of shape ({len(keys)}, N, h, w), "
                f"not {maps.shape}."
            )
        if not keys:
            continue
        ent, jump = frame_entropy(maps), frame_jumps(maps)
        score = combine(ent, jump)
        done = sum(is_labeled(labels.get(k)) for k in keys)
        g = min(goal, len(keys))
        name = names[index] if names is not None else PurePosixPath(keys[0]).parent.as_posix()
        scores.append(TrackletScore(index, name, float(score.mean()), done, g))
        for k, s, e, j in zip(keys, score, ent, jump):
            if not is_started(labels.get(k)):
                frames.append(FrameScore(k, index, float(s), float(e), float(j), _reason(e, j, done, g)))
    frames.sort(key=lambda f: (-f.score, f.key))
    scores.sort(key=lambda t: (-t.score, t.index))
    labeled = {t.index: t.labeled for t in scores}
    goals = {t.index: t.goal for t in scores}
    nxt = _best(frames, labeled, goals).key if frames else None
    return Suggestions(frames, scores, nxt)


def subsample(n: int, max_frames: int = MAX_FRAMES) -> list[int]:
    """At most ``max_frames`` evenly spaced indices of ``range(n)``, first and last included."""
    if max_frames < 1:
        raise ValueError(f"max_frames={max_frames} must be at least 1.")
    if n <= max_frames:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, max_frames)})


def suggest_labels(
    extractor: Any,
    dataset: Any,
    labels: AnnotationStore | Mapping[str, np.ndarray],
    *,
    split: str = "train",
    max_frames: int = MAX_FRAMES,
    goal: int = GOAL_PER_TRACKLET,
    progress: ProgressFn | None = None,
) -> Suggestions:
    """Run the model on a split's tracklets and rank their frames for labeling.

    Args:
        extractor: an ``ssn3d.engine.inference.FeatureExtractor`` of an SSN3D model with attention
            (unsupervised or semi-supervised strategy).
        dataset: a ``VideoReIDDataset``.
        labels: the dataset's label store, or its ``frames()`` ({frame key: keypoints}).
        split: train, query or gallery (only train labels anchor training).
        max_frames: frames scored per tracklet (evenly spaced over a longer one).
        goal: labeled frames wanted per tracklet.
        progress: called as ``progress(done, total)`` after each tracklet.

    Returns:
        The ``Suggestions``.

    Raises:
        ValueError: an unknown split, or a model without attention maps (``InferenceError``).
    """
    if isinstance(labels, AnnotationStore):
        labels = labels.frames()
    splits = dataset.splits()
    if split not in splits:
        raise ValueError(f"split {split!r} is not one of {', '.join(splits)}.")
    tracklets = splits[split]
    scored: list[tuple[list[str], np.ndarray]] = []
    names: list[str] = []
    for i, t in enumerate(tracklets):
        picks = subsample(len(t.paths), max_frames)
        paths = [t.paths[j] for j in picks]
        scored.append(([dataset.relpath(p) for p in paths], extractor.attention(paths)))  # (T, N, h, w)
        names.append(PurePosixPath(dataset.relpath(t.paths[0])).parent.as_posix())
        if progress is not None:
            progress(i + 1, len(tracklets))
    result = rank_maps(scored, labels, names=names, goal=goal)
    _logger.info(
        "Scored %d frames of %d %s tracklets; next to label: %s.",
        sum(len(k) for k, _ in scored),
        len(tracklets),
        split,
        result.next_frame,
    )
    return result


def ranking_version(checkpoint: str | os.PathLike, store: AnnotationStore) -> tuple[str, int, tuple]:
    """What a cached ranking depends on: the checkpoint (path and mtime) and the label store's version.

    A ranking is computed again when the model is retrained or a label changes, never otherwise: it
    costs one forward per tracklet.
    """
    path = Path(checkpoint)
    return str(path), path.stat().st_mtime_ns, store.version()
