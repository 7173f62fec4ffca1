"""COCO keypoints and OpenPose JSON in and out of the label store (the anchors of semi-supervised SSN).

Paper, "Implementation Details / Supervised Labels": the supervised strategy's labels come from
OpenPose, marking "head, body, crotch, left and right elbows, knees and feet". Those nine parts are
``ssn3d.keypoints.PARTS``; this module maps other skeletons onto them:

===========  ========================================  ==========================================
our part     COCO-17                                   OpenPose BODY_25 / COCO-18
===========  ========================================  ==========================================
head         mean of labeled nose, eyes, ears          same
body         mid-point of the shoulders                Neck (OpenPose's own shoulder mid-point)
crotch       mid-point of the hips                     MidHip (BODY_25) or mid-point of the hips
elbows       elbows                                    elbows
knees        knees                                     knees
feet         ankles                                    ankles (toes and heels are ignored)
===========  ========================================  ==========================================

Left and right are the person's own, as in both formats. COCO coordinates are pixel indices, ours
are continuous with pixel centres at +0.5 (``ssn3d.keypoints``), so import adds 0.5 and export
subtracts it; OpenPose output is treated the same way. An OpenPose joint below ``min_confidence``
is left unlabeled: the paper blames OpenPose's failures on corrupted frames for the supervised
strategy's lower scores (Table 1), so a weak detection must not become an anchor.

Foreign file names are only matched against the dataset's own frames (``FrameIndex``) and never
opened, so a hostile name cannot reach the disk. A malformed document raises ``InterchangeError``
(one sentence); a malformed item is skipped with its reason in the ``ImportReport``. Import is one
locked, atomic update of the store, and frames already labeled are kept unless ``overwrite``.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sized
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ssn3d._interchange import (
    COCO_17,
    MAX_ITEMS,
    OPENPOSE_BODY_25,
    OPENPOSE_COCO_18,
    SKELETONS_BY_COUNT,
    FrameIndex,
    InterchangeError,
    as_frame_index,
    canonical_joint,
    map_joints,
    parse_points,
    read_json,
)
from ssn3d.annotations import AnnotationError, AnnotationStore, validate_keypoints
from ssn3d.io import file_lock
from ssn3d.keypoints import PARTS, SKELETON

__all__ = [
    "COCO_17",
    "OPENPOSE_BODY_25",
    "OPENPOSE_COCO_18",
    "FrameIndex",
    "ImportReport",
    "InterchangeError",
    "canonical_joint",
    "export_coco",
    "import_coco",
    "import_openpose",
    "map_joints",
    "read_json",
]

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


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


def _commit(
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


def _labeled(kps: np.ndarray) -> int:
    return int((kps[:, 2] > 0).sum())


# --------------------------------------------------------------------------- COCO


def export_coco(
    store: AnnotationStore, dataset: FrameIndex | str | os.PathLike | None = None, *, name: str = "ssn3d"
) -> dict[str, Any]:
    """The label store as a COCO keypoints document with our 9 parts as the person category's keypoints.

    Args:
        store: the labels to export.
        dataset: the dataset root (or its ``FrameIndex``) to read each frame's width and height;
            without it, or for a frame that cannot be read, ``width``/``height`` are left out and the
            box is the labeled points' bounding box.
        name: written into ``info.description``.

    Returns:
        ``{"info", "licenses", "images", "annotations", "categories"}``, ready for ``json.dumps``.
    """
    index = None if dataset is None else as_frame_index(dataset)
    images, annotations = [], []
    for image_id, (frame, kps) in enumerate(sorted(store.frames().items()), 1):
        size = None if index is None else index.size(frame)
        image: dict[str, Any] = {"id": image_id, "file_name": frame}
        labeled = kps[:, 2] > 0
        flat = []
        for (x, y, v), on in zip(kps.tolist(), labeled):
            flat += [round(x - 0.5, 2), round(y - 0.5, 2), int(v)] if on else [0, 0, 0]
        if size is not None:
            image["width"], image["height"] = size
            bbox = [0, 0, size[0], size[1]]  # a re-id frame is a person crop: the box is the frame
        elif labeled.any():
            lo, hi = kps[labeled, :2].min(axis=0) - 0.5, kps[labeled, :2].max(axis=0) - 0.5
            bbox = [
                round(float(lo[0]), 2),
                round(float(lo[1]), 2),
                round(float(hi[0] - lo[0]), 2),
                round(float(hi[1] - lo[1]), 2),
            ]
        else:
            bbox = [0, 0, 0, 0]
        images.append(image)
        annotations.append(
            {
                "id": image_id,
                "image_id": image_id,
                "category_id": 1,
                "keypoints": flat,
                "num_keypoints": int(labeled.sum()),
                "bbox": bbox,
                "area": bbox[2] * bbox[3],
                "iscrowd": 0,
            }
        )
    return {
        "info": {
            "description": f"SSN3D Studio keypoint labels: {name}",
            "version": "1.0",
            "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {
                "id": 1,
                "name": "person",
                "supercategory": "person",
                "keypoints": list(PARTS),
                "skeleton": [[a + 1, b + 1] for a, b in SKELETON],
            }
        ],
    }


def _coco_categories(doc: dict[str, Any]) -> dict[Any, tuple[str, ...] | None]:
    cats = doc.get("categories", [])
    if not isinstance(cats, list):
        raise InterchangeError('COCO document: "categories" must be a list; export the file again.')
    out: dict[Any, tuple[str, ...] | None] = {}
    for cat in cats:
        if not isinstance(cat, dict) or isinstance(cat.get("id"), dict | list):
            continue
        names = cat.get("keypoints")
        ok = isinstance(names, list) and 0 < len(names) <= 1000 and all(isinstance(n, str) for n in names)
        out[cat.get("id")] = tuple(names) if ok else None
    return out


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


def import_coco_files(
    paths: Iterable[str | os.PathLike] | Mapping[str, bytes],
    dataset: FrameIndex | str | os.PathLike | Iterable[str],
    store: AnnotationStore,
    **kwargs: Any,
) -> list[tuple[str, ImportReport | str]]:
    """``import_coco`` for several files, one after another; a bad file does not stop the ones after it.

    Args:
        paths: file paths, or ``{file name: its bytes}`` (the app's uploads).

    Returns:
        [(file name, its ImportReport, or the one-sentence reason it was refused)], in order.
    """
    index = as_frame_index(dataset)
    items = paths.items() if isinstance(paths, Mapping) else ((os.fspath(p), Path(p)) for p in paths)
    out: list[tuple[str, ImportReport | str]] = []
    for name, source in items:
        try:
            out.append((name, import_coco(source, index, store, **kwargs)))
        except (InterchangeError, AnnotationError, OSError) as e:
            out.append((name, str(e)))
    return out


def import_coco(
    doc: Mapping[str, Any] | str | bytes | os.PathLike,
    dataset: FrameIndex | str | os.PathLike | Iterable[str],
    store: AnnotationStore,
    *,
    overwrite: bool = False,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
) -> ImportReport:
    """Import a COCO keypoints document (ours, COCO-17 persons, or any named skeleton) into ``store``.

    An image's ``file_name`` is matched to a frame of ``dataset``; with several person annotations
    on one image, the one with the most labeled keypoints is kept (a re-id frame shows one person).

    Args:
        doc: the parsed document, its JSON text/bytes, or a ``Path`` to it.
        dataset: the dataset root, its ``FrameIndex``, or its frame paths (relative to the root).
        store: where the labels go.
        overwrite: replace frames already labeled (default: keep them and report them skipped).
        dry_run: report what would happen without writing.
        progress: called as ``progress(annotations_done, annotations_total)`` every 1000 annotations.

    Raises:
        InterchangeError: the document is not COCO keypoints at all (nothing is written).
    """
    doc = read_json(doc, "COCO document")
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("images"), list)
        or not isinstance(doc.get("annotations"), list)
    ):
        raise InterchangeError(
            'COCO document must be an object with "images" and "annotations" lists; '
            "export COCO keypoints JSON from the labeling tool."
        )
    if len(doc["images"]) + len(doc["annotations"]) > MAX_ITEMS:
        raise InterchangeError(f"COCO document has more than {MAX_ITEMS} images and annotations; split it.")
    index, report, categories = as_frame_index(dataset), ImportReport("COCO"), _coco_categories(doc)
    files: dict[Any, str] = {}
    sizes: dict[Any, tuple[float, float]] = {}  # image id -> (width, height), where the document says
    for n, image in enumerate(doc["images"]):
        if not isinstance(image, dict) or not isinstance(image.get("file_name"), str):
            report.skip(f"image #{n}", "image has no file_name")
        elif isinstance(image.get("id"), dict | list) or image.get("id") in files:
            report.skip(image["file_name"], "image id is missing or repeated")
        else:
            files[image.get("id")] = image["file_name"]
            w, h = image.get("width"), image.get("height")
            if all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in (w, h)):
                sizes[image.get("id")] = (float(w), float(h))
    best: dict[str, tuple[int, np.ndarray]] = {}
    total = len(doc["annotations"])
    for n, ann in enumerate(doc["annotations"]):
        if progress is not None and n % 1000 == 0:
            progress(n, total)
        if not isinstance(ann, dict):
            report.skip(f"annotation #{n}", "annotation is not an object")
            continue
        image_id = ann.get("image_id")
        file_name = files.get(image_id) if not isinstance(image_id, dict | list) else None
        if file_name is None:
            report.skip(f"annotation #{n}", "annotation refers to no image")
            continue
        joints = _coco_joints(ann, categories)
        if isinstance(joints, str):
            report.skip(file_name, joints)
            continue
        pts = parse_points(ann.get("keypoints"), len(joints) if joints else None, None)
        if isinstance(pts, str):
            report.skip(file_name, pts)
            continue
        joints = joints or SKELETONS_BY_COUNT.get(len(pts))
        if joints is None:
            report.skip(file_name, f"{len(pts)} unnamed keypoints match no known skeleton (9, 17, 18 or 25)")
            continue
        kps = map_joints(pts, joints)
        if image_id in sizes and hide_outside_frame(kps, *sizes[image_id]):
            report.notes.append(f"{file_name}: keypoints outside the image marked not visible")
        if not _labeled(kps):
            report.skip(file_name, "no labeled keypoint maps to our parts")
        elif file_name in best:
            report.notes.append(f"{file_name}: several people; kept the one with the most labeled parts")
            if _labeled(kps) > best[file_name][0]:
                best[file_name] = (_labeled(kps), kps)
        else:
            best[file_name] = (_labeled(kps), kps)
    if progress is not None:
        progress(total, total)
    return _commit(store, _match_frames(best, index, report), report, overwrite, dry_run, "coco-import")


def _coco_joints(
    ann: dict[str, Any], categories: dict[Any, tuple[str, ...] | None]
) -> tuple[str, ...] | str | None:
    """The joint names of an annotation's category, None when unnamed, or why it is skipped."""
    cat = ann.get("category_id")
    if isinstance(cat, dict | list):
        return "category_id is not an id"
    if categories and cat not in categories:
        return f"category {cat!r} is not in the document's categories"
    return categories.get(cat)


def _match_frames(
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


# --------------------------------------------------------------------------- OpenPose


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
        if not _labeled(kps):
            report.skip(name, f"no joint of our parts reaches confidence {min_confidence}")
        else:
            found[name] = (_labeled(kps), kps)
    if progress is not None:
        progress(done, total)
    if weak:
        report.notes.append(f"{weak} detected joint(s) below confidence {min_confidence} were left unlabeled")
    changes = _match_frames(found, index, report)
    for frame, kps in list(changes.items()):
        # OpenPose files do not say the image size: the matched frame of the dataset does
        size = index.size(frame)
        if size is not None and hide_outside_frame(kps, *size):
            report.notes.append(f"{frame}: keypoints outside the image marked not visible")
            if not _labeled(kps):
                report.skip(frame, "every keypoint lies outside the image")
                del changes[frame]
    return _commit(store, changes, report, overwrite, dry_run, "openpose-import")

    from PIL import Image

    try:
        with Image.open(index.root / frame) as im:
            return float(im.width), float(im.height)
    except (OSError, ValueError):
        return None


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
