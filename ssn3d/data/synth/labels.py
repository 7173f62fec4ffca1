"""Which frames get keypoint labels, and how a pose detector would have labeled them.

Paper, "Ablation Study / Different Learning Strategy": the semi-supervised strategy uses "two
images with high-quality labels from each video tracklet"; the supervised strategy uses OpenPose
labels on every frame, which fail on corrupted frames. The walkers' ground truth
(``OUT/keypoints.json``) serves both: ``pick_labeled_frames`` chooses the few frames a person would
label, and ``noisy_keypoints`` stands in for OpenPose (jitter, missed joints, left/right swaps).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ssn3d.keypoints import FLIP_PERMUTATION, NOT_LABELED, VISIBLE

# Left/right pairs of ssn3d.keypoints.PARTS: (elbows, knees, feet).
LR_PAIRS: tuple[tuple[int, int], ...] = tuple((i, j) for i, j in enumerate(FLIP_PERMUTATION) if i < j)


def _tracklet_keys(gt: Mapping[str, np.ndarray], tracklet: Any, root: str | os.PathLike | None) -> list[str]:
    """The ground-truth keys of one tracklet: a folder (relative posix path) or an object with ``paths``."""
    if isinstance(tracklet, str | os.PathLike) and not hasattr(tracklet, "paths"):
        folder = PurePosixPath(Path(tracklet).as_posix())
        if root is not None and Path(tracklet).is_absolute():
            folder = PurePosixPath(Path(tracklet).resolve().relative_to(Path(root).resolve()).as_posix())
        return sorted(k for k in gt if PurePosixPath(k).parent == folder)
    keys = []
    for p in tracklet.paths:
        path = Path(p)
        if root is not None and path.is_absolute():
            key = path.resolve().relative_to(Path(root).resolve()).as_posix()
        else:
            key = path.as_posix()
        if key not in gt:  # an absolute path without root: match the longest key it ends with
            hits = [k for k in gt if key.endswith("/" + k) or key == k]
            key = max(hits, key=len) if hits else key
        if key in gt:
            keys.append(key)
    return keys


def pick_labeled_frames(
    gt: Mapping[str, np.ndarray],
    tracklets: Iterable[Any] | None = None,
    per_tracklet: int = 2,
    seed: int = 0,
    *,
    root: str | os.PathLike | None = None,
) -> dict[str, np.ndarray]:
    """Choose ``per_tracklet`` frames of every tracklet to label: those with the most visible parts.

    Among the frames with the most visible parts (usually all 9), one is drawn at random (by
    ``seed``) from each of ``per_tracklet`` equal stretches of the tracklet, so that two labels do
    not show one pose.

    Args:
        gt: {frame key (posix path relative to the dataset root): (9, 3) keypoints}.
        tracklets: tracklet folders (relative posix paths like ``train/0001/c1_t00``, or absolute
            with ``root``), or objects with ``paths`` (``ssn3d`` tracklets); None groups ``gt`` by folder.
        per_tracklet: frames per tracklet (paper: 2).
        seed: tie-breaking.
        root: the dataset root, to make absolute paths relative.

    Returns:
        {frame key: (9, 3) keypoints} of the chosen frames.
    """
    if per_tracklet < 1:
        raise ValueError(f"per_tracklet={per_tracklet} must be at least 1.")
    rng = np.random.default_rng(seed)
    if tracklets is None:
        groups: dict[str, list[str]] = defaultdict(list)
        for k in sorted(gt):
            groups[PurePosixPath(k).parent.as_posix()].append(k)
        members = [groups[g] for g in sorted(groups)]
    else:
        members = [_tracklet_keys(gt, t, root) for t in tracklets]
    out: dict[str, np.ndarray] = {}
    for keys in members:
        if not keys:
            continue
        visible = np.array([(np.asarray(gt[k])[:, 2] >= VISIBLE).sum() for k in keys])
        best = np.flatnonzero(visible == visible.max())  # in time order: keys sort by frame name
        if len(best) >= per_tracklet:  # one from each stretch of the tracklet
            chosen = [int(rng.choice(chunk)) for chunk in np.array_split(best, per_tracklet)]
        else:  # all the best ones, then the next most visible (random among equals)
            rest = [
                int(i) for i in np.lexsort((rng.random(len(keys)), -visible)) if i not in set(best.tolist())
            ]
            chosen = best.tolist() + rest[: per_tracklet - len(best)]
        for i in sorted(chosen):
            out[keys[i]] = np.asarray(gt[keys[i]], dtype=np.float32).copy()
    return out


def noisy_keypoints(
    gt: Mapping[str, np.ndarray],
    *,
    sigma_px: float = 2.0,
    dropout: float = 0.1,
    swap_prob: float = 0.05,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """What a pose detector (OpenPose in the paper) might report for frames with keypoints ``gt``.

    * every labeled point moves by Gaussian noise of ``sigma_px`` pixels (clamped at 0);
    * a point is missed (``v = 0``, at the origin) with probability ``dropout``, and always when it is
      not visible (``v = 1``: a detector cannot see what is hidden or cut off);
    * each left/right pair (elbows, knees, feet) is swapped with probability ``swap_prob``.

    Args:
        gt: {frame key: (9, 3) keypoints}.
        sigma_px: jitter in pixels.
        dropout: chance that a visible joint is missed.
        swap_prob: chance per pair and frame of a left/right mix-up.
        seed: frames are visited in sorted order, so the result depends on ``seed`` and ``gt`` only.

    Returns:
        {frame key: (9, 3) keypoints} with the same keys.
    """
    for name, p in (("dropout", dropout), ("swap_prob", swap_prob)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name}={p} must be a probability between 0 and 1.")
    if sigma_px < 0:
        raise ValueError(f"sigma_px={sigma_px} must be >= 0.")
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for key in sorted(gt):
        kps = np.array(gt[key], dtype=np.float32, copy=True)
        n = len(kps)
        labeled = kps[:, 2] > NOT_LABELED
        kps[:, :2] += rng.normal(0.0, sigma_px, (n, 2)).astype(np.float32) * labeled[:, None]
        kps[:, :2] = np.maximum(kps[:, :2], 0.0)
        for i, j in LR_PAIRS:
            if rng.random() < swap_prob:
                kps[[i, j], :2] = kps[[j, i], :2]
        missed = (kps[:, 2] < VISIBLE) | (rng.random(n) < dropout)
        kps[missed] = 0.0
        out[key] = kps
    return out
