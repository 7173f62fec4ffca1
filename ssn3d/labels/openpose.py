"""OpenPose ``*_keypoints.json`` files into the label store (the anchors of semi-supervised SSN).

Paper, "Implementation Details / Supervised Labels": the supervised strategy's labels come from
OpenPose. BODY_25 and COCO-18 are mapped onto our parts by ``ssn3d.labels.skeletons``. An OpenPose
joint below ``min_confidence`` is left unlabeled: the paper blames OpenPose's failures on corrupted
frames for the supervised strategy's lower scores (Table 1), so a weak detection must not become an
anchor. OpenPose output is treated as pixel indices, like COCO (import adds 0.5).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sized
from pathlib import Path
from typing import Any

import numpy as np

from ssn3d.labels.frames import FrameIndex, as_frame_index
from ssn3d.labels.importing import (
    MAX_ITEMS,
    ImportReport,
    InterchangeError,
    ProgressFn,
    commit,
    count_labeled,
    hide_outside_frame,
    match_frames,
    parse_points,
    read_json,
)
from ssn3d.labels.skeletons import SKELETONS_BY_COUNT, map_joints
from ssn3d.labels.store import AnnotationStore


# Long on purpose: long only by its docstring; one validating pass over the files.
def import_openpose(
    sources: Mapping[str, Any] | Iterable[str | os.PathLike],
    dataset: FrameIndex | str | os.PathLike | Iterable[str],
    store: AnnotationStore,
    *,
    min_confidence: float = 0.3,
    overwrite: bool = False,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
) -> ImportReport:
    """Import OpenPose ``*_keypoints.json`` files (BODY_25 or COCO-18) into ``store``.

    OpenPose writes one file per image, named after it, so each file is matched to a frame by its
    name. A file with several people keeps the most confident one; a malformed file is skipped
    with its reason and the others are still imported.

    Args:
        sources: ``{file name: document (parsed, text or bytes)}`` (e.g. the app's uploads), or paths.
        dataset: the dataset root, its ``FrameIndex``, or its frame paths.
        store: where the labels go.
        min_confidence: joints detected with a lower score stay unlabeled (OpenPose's own default
            rendering threshold is 0.05; anchors need more).
        overwrite: replace frames already labeled.
        dry_run: report what would happen without writing.
        progress: called as ``progress(files_done, files_total)`` every 100 files (total 0 when unknown).
    """
    if isinstance(sources, str | bytes | os.PathLike) or not isinstance(sources, Mapping | Iterable):
        raise InterchangeError(
            "OpenPose files are matched to frames by their names; pass {file name: document} or a list of paths."
        )
    items = sources.items() if isinstance(sources, Mapping) else ((os.fspath(p), Path(p)) for p in sources)
    index, report = as_frame_index(dataset), ImportReport("OpenPose")
    found: dict[str, tuple[int, np.ndarray]] = {}
    weak, done, total = 0, 0, len(sources) if isinstance(sources, Sized) else 0
    for n, (name, source) in enumerate(items):
        done = n + 1
        if progress is not None and n % 100 == 0:
            progress(n, total)
        if n >= MAX_ITEMS:
            raise InterchangeError(f"more than {MAX_ITEMS} OpenPose files at once; import them in parts.")
        if not isinstance(name, str):
            raise InterchangeError("OpenPose files must be keyed by their file names (strings).")
        try:
            doc = read_json(source, f"OpenPose file {name}")
        except InterchangeError as e:
            report.skip(name, e.reason)
            continue
        best = _openpose_person(doc, min_confidence)
        if isinstance(best, str):
            report.skip(name, best)
            continue
        kps, dropped = best
        weak += dropped
        if not count_labeled(kps):
            report.skip(name, f"no joint of our parts reaches confidence {min_confidence}")
        else:
            found[name] = (count_labeled(kps), kps)
    if progress is not None:
        progress(done, total)
    if weak:
        report.notes.append(f"{weak} detected joint(s) below confidence {min_confidence} were left unlabeled")
    changes = match_frames(found, index, report)
    for frame, kps in list(changes.items()):
        # OpenPose files do not say the image size: the matched frame of the dataset does
        size = index.size(frame)
        if size is not None and hide_outside_frame(kps, *size):
            report.notes.append(f"{frame}: keypoints outside the image marked not visible")
            if not count_labeled(kps):
                report.skip(frame, "every keypoint lies outside the image")
                del changes[frame]
    return commit(store, changes, report, overwrite, dry_run, "openpose-import")


def _openpose_person(doc: Any, min_confidence: float) -> tuple[np.ndarray, int] | str:
    """The most confident person's (9, 3) keypoints and the number of weak joints dropped, or why not."""
    people = doc.get("people") if isinstance(doc, dict) else None
    if not isinstance(people, list):
        return 'not an OpenPose file (no "people" list)'
    best, best_score = None, -1.0
    for person in people:
        flat = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
        if isinstance(flat, list) and len(flat) // 3 not in (18, 25):
            return f"{len(flat) // 3} joints per person; expected BODY_25 (25) or COCO-18 (18)"
        raw = parse_points(flat, None, 0.0)  # validation only: every confidence > 0 counts
        if isinstance(raw, str):
            return raw
        score = float(np.asarray(flat, dtype=np.float64)[2::3].sum())
        if score > best_score:
            best, best_score = flat, score
    if best is None:
        return "no person detected"
    pts = parse_points(best, None, min_confidence)
    assert not isinstance(pts, str)  # validated above with the same checks
    conf = np.asarray(best, dtype=np.float64)[2::3]
    dropped = int(((conf > 0) & (conf < min_confidence)).sum())
    return map_joints(pts, SKELETONS_BY_COUNT[len(pts)]), dropped
