"""COCO keypoints in and out of the label store (the anchors of semi-supervised SSN).

Export writes our nine parts as the person category's keypoints; import takes ours, COCO-17 persons
or any named skeleton, mapped onto our parts by ``ssn3d.labels.skeletons`` (the mapping table is
there). COCO coordinates are pixel indices, ours are continuous with pixel centres at +0.5
(``ssn3d.keypoints``), so import adds 0.5 and export subtracts it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ssn3d.keypoints import PARTS, SKELETON
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
from ssn3d.labels.schema import AnnotationError
from ssn3d.labels.skeletons import SKELETONS_BY_COUNT, map_joints
from ssn3d.labels.store import AnnotationStore


# Long on purpose: long only by its docstring and the COCO document it builds field by field.
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


# Long on purpose: one validating pass over a foreign document: each refusal is one line at its field.
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
        if not count_labeled(kps):
            report.skip(file_name, "no labeled keypoint maps to our parts")
        elif file_name in best:
            report.notes.append(f"{file_name}: several people; kept the one with the most labeled parts")
            if count_labeled(kps) > best[file_name][0]:
                best[file_name] = (count_labeled(kps), kps)
        else:
            best[file_name] = (count_labeled(kps), kps)
    if progress is not None:
        progress(total, total)
    return commit(store, match_frames(best, index, report), report, overwrite, dry_run, "coco-import")


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
