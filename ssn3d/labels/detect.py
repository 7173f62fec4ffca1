"""A label store filled by the pose detector: the paper's "supervised (pose detector)" labels.

Paper, "Implementation Details / Supervised Labels" and Table 1: the supervised strategy feeds a pose
detector's keypoints (OpenPose there) instead of hand labels. ``detect_dataset`` runs
``ssn3d.labels.pose.PoseDetector`` over a dataset's frames and writes an ``AnnotationStore`` whose entries
say ``source="detector"``.

Resumable: frames already in the store (from an earlier run, or labeled by hand) are skipped, and
results are saved every ``SAVE_EVERY`` frames, so an interrupted run loses at most one batch and
never overwrites a person's labels. Frames that cannot be decoded are listed, not fatal; frames in
which no person was found are listed too (and tried again on the next run).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ssn3d.data.datasets.base import DatasetError, VideoReIDDataset
from ssn3d.labels.pose import DEFAULT_MIN_CONFIDENCE, PoseDetector
from ssn3d.labels.store import AnnotationStore

log = logging.getLogger(__name__)

SAVE_EVERY = 64  # frames per locked save: one journal append per ~5 s of detection

ProgressFn = Callable[[int, int], None]


@dataclass
class DetectReport:
    """What ``detect_dataset`` did; frame lists hold paths relative to the dataset root."""

    frames: int = 0  # frames of the chosen splits
    skipped: int = 0  # already in the store
    written: int = 0
    no_person: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


# Long on purpose: long only by its docstring; the body is one detect-and-save loop.
def detect_dataset(
    dataset: VideoReIDDataset,
    store: AnnotationStore,
    *,
    splits: Sequence[str] = ("train", "query", "gallery"),
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    progress: ProgressFn | None = None,
) -> DetectReport:
    """Detect keypoints on every frame of ``splits`` not yet in ``store`` and save them there.

    Args:
        dataset: the dataset (``ssn3d.data.datasets.build_dataset``).
        store: the label store to fill (keys are frame paths relative to the dataset root).
        splits: which splits' frames to label.
        min_confidence: see ``ssn3d.labels.pose.landmarks_to_parts``.
        progress: called as ``progress(frames_done, frames_to_do)``.

    Returns:
        A ``DetectReport``.

    Raises:
        PoseDetectorError: the detector is not installed or stopped.
        DatasetError: an unknown split name.
    """
    known = dataset.splits()
    unknown = [s for s in splits if s not in known]
    if unknown:
        raise DatasetError(f"unknown split {unknown[0]!r}; choose among {', '.join(known)}.")
    seen: dict[str, None] = {}
    for split in splits:
        for t in known[split]:
            seen.update(dict.fromkeys(t.paths))
    report = DetectReport(frames=len(seen))
    labeled = set(store.frames())
    todo = [(p, dataset.relpath(p)) for p in seen if dataset.relpath(p) not in labeled]
    report.skipped = report.frames - len(todo)
    if not todo:
        return report
    with PoseDetector(min_confidence=min_confidence) as detector:
        for start in range(0, len(todo), SAVE_EVERY):
            batch = todo[start : start + SAVE_EVERY]
            results = detector.detect_many([os.fspath(p) for p, _ in batch])
            changes = {}
            for (_, rel), res in zip(batch, results):
                if res.error:
                    report.unreadable.append(rel)
                elif res.keypoints is None:
                    report.no_person.append(rel)
                else:
                    changes[rel] = res.keypoints
            if changes:
                store.update(changes, source="detector")
                report.written += len(changes)
            if progress is not None:
                progress(start + len(batch), len(todo))
    log.info(
        "pose detector: %d frames labeled, %d skipped, %d without a person, %d unreadable",
        report.written,
        report.skipped,
        len(report.no_person),
        len(report.unreadable),
    )
    return report
