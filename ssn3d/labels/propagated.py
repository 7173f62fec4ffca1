"""Propagated labels on disk: the run's ``propagated-labels.json``, a label-store document of its own.

**Not in the paper** (see ``ssn3d.labels.propagation``). Propagated keypoints are never written into
the dataset's label store: they are written beside a run, with per-part confidence and the
parameters they were made with, and reused only for the labels they were made from
(``labels_digest``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ssn3d.io import atomic_write_json
from ssn3d.keypoints import NUM_PARTS, PARTS
from ssn3d.labels.propagation import MUTUAL_TOLERANCE, SOURCE, PropagatedFrame, PropagationParams
from ssn3d.labels.schema import FORMAT, VERSION, AnnotationError
from ssn3d.labels.store import AnnotationStore


def labels_digest(labels: Mapping[str, np.ndarray]) -> str:
    """A short digest of labels (keys and keypoints): a cache of propagated labels is only reused for these."""
    h = hashlib.sha256()
    for key in sorted(labels):
        h.update(key.encode())
        h.update(np.round(np.asarray(labels[key], np.float64), 2).tobytes())
    return h.hexdigest()[:16]


def propagated_document(
    propagated: Mapping[str, PropagatedFrame],
    *,
    manual: Mapping[str, Mapping[str, Any]] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A label-store document of propagated frames (``source`` "propagated", per-part ``confidence``).

    Args:
        propagated: the frames to write.
        manual: store entries copied unchanged beside them (the input store's frames).
        meta: recorded under "propagation" (parameters, where the features came from).
    """
    now = round(time.time(), 3)
    frames: dict[str, Any] = {k: dict(v) for k, v in (manual or {}).items()}
    for key, f in sorted(propagated.items()):
        if key in frames:
            continue
        frames[key] = {
            "keypoints": [[round(float(x), 2), round(float(y), 2), int(v)] for x, y, v in f.keypoints],
            "confidence": [round(float(c), 4) for c in f.confidence],
            "size": [int(f.size[0]), int(f.size[1])],
            "source": SOURCE,
            "updated": now,
        }
    return {
        "format": FORMAT,
        "version": VERSION,
        "parts": list(PARTS),
        "frames": frames,
        "propagation": dict(meta or {}),
    }


def write_propagated(
    path: str | Path,
    propagated: Mapping[str, PropagatedFrame],
    *,
    manual: Mapping[str, Mapping[str, Any]] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``propagated_document`` to ``path`` atomically (a store ``AnnotationStore`` reads)."""
    path = Path(path)
    atomic_write_json(path, propagated_document(propagated, manual=manual, meta=meta))
    return path


def read_propagated(path: str | Path) -> tuple[dict[str, PropagatedFrame], dict[str, Any]]:
    """The propagated frames of a file written by ``write_propagated``, and its "propagation" record.

    Raises:
        AnnotationError: the file is not a label store.
    """
    path = Path(path)
    store = AnnotationStore(path)
    doc = store.read()
    out = {}
    for key, entry in doc["frames"].items():
        if entry.get("source") != SOURCE:
            continue
        conf = np.asarray(entry.get("confidence", [0.0] * NUM_PARTS), np.float32)
        size = entry.get("size") or (0, 0)
        out[key] = PropagatedFrame(
            np.asarray(entry["keypoints"], np.float32), conf, (int(size[0]), int(size[1]))
        )
    meta = doc.get("propagation")
    if not isinstance(meta, dict):
        raise AnnotationError(f'{path} has no "propagation" record; it was not written by label propagation.')
    return out, meta


def params_record(params: PropagationParams, **extra: Any) -> dict[str, Any]:
    """The parameters and provenance stored with propagated labels (JSON-plain values only)."""
    return json.loads(json.dumps({**asdict(params), "mutual_tolerance": MUTUAL_TOLERANCE, **extra}))
