"""The keypoint label store: the few labeled frames that anchor semi-supervised SSN.

One JSON file per dataset (by default ``annotations/<dataset-id>.json``)::

    {"format": "ssn3d-keypoints", "version": 1, "parts": ["head", ...],
     "frames": {"<frame path relative to the dataset root>":
                {"keypoints": [[x, y, v], ...9], "source": "manual", "updated": 1732412345.0}}}

Coordinates are pixels of the original frame file; ``v`` follows COCO (see ``ssn3d.keypoints``).

Every change is a read-modify-write under an exclusive lock on a sibling ``.lock`` file, written to
a temporary file and renamed over the old one, so two browser sessions labeling the same dataset
never lose each other's points and a crash never leaves half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ssn3d.keypoints import NUM_PARTS, PARTS

FORMAT = "ssn3d-keypoints"
VERSION = 1


class AnnotationError(ValueError):
    """A label file that cannot be read as a label store; the message names the file and the fix."""


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = None) -> None:
    """Atomic JSON write; compact by default, since only ``indent=None`` uses json's C encoder
    (a 20k-frame label store then saves in tens of milliseconds instead of seconds)."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=True, separators=None if indent else (",", ":")))


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive advisory lock on ``<path>.lock``, held for the ``with`` block."""
    lock_path = Path(f"{path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def validate_keypoints(value: Any, where: str) -> np.ndarray:
    """Check one frame's keypoints ([[x, y, v]] * 9, finite, v in {0, 1, 2}); return (9, 3) floats."""
    if not isinstance(value, list | tuple) or len(value) != NUM_PARTS:
        raise AnnotationError(f"{where}: expected a list of {NUM_PARTS} [x, y, v] points ({', '.join(PARTS)}).")
    out = np.zeros((NUM_PARTS, 3), dtype=np.float32)
    for i, point in enumerate(value):
        if not isinstance(point, list | tuple) or len(point) != 3:
            raise AnnotationError(f"{where}: point {i} ({PARTS[i]}) must be [x, y, v].")
        for j, c in enumerate(point):
            if isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c):
                raise AnnotationError(f"{where}: point {i} ({PARTS[i]}) has a non-numeric value {c!r}.")
            out[i, j] = c
        if point[2] not in (0, 1, 2):
            raise AnnotationError(f"{where}: point {i} ({PARTS[i]}) has visibility {point[2]!r}; use 0, 1 or 2.")
        if point[2] > 0 and (point[0] < 0 or point[1] < 0 or point[0] > 1e5 or point[1] > 1e5):
            raise AnnotationError(f"{where}: point {i} ({PARTS[i]}) lies outside any image: {point[:2]}.")
    return out


def _validate_document(doc: Any, path: Path) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise AnnotationError(f"{path} is not an SSN3D label file (expected \"format\": \"{FORMAT}\").")
    if doc.get("version") != VERSION:
        raise AnnotationError(f"{path} has label format version {doc.get('version')!r}; this version reads {VERSION}.")
    if list(doc.get("parts", [])) != list(PARTS):
        raise AnnotationError(f"{path} labels parts {doc.get('parts')!r}; expected {list(PARTS)}.")
    frames = doc.get("frames")
    if not isinstance(frames, dict):
        raise AnnotationError(f"{path}: \"frames\" must be an object keyed by frame path.")
    for key, entry in frames.items():
        if not isinstance(entry, dict):
            raise AnnotationError(f"{path}: frame {key!r} must be an object with \"keypoints\".")
        validate_keypoints(entry.get("keypoints"), f"{path}: frame {key!r}")
    return doc


# path -> (path, mtime_ns, size, inode) of the last version this process validated
_VALIDATED: dict[str, tuple[str, int, int, int]] = {}


def _empty_document() -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "parts": list(PARTS), "frames": {}}


class AnnotationStore:
    """Keypoint labels of one dataset, persisted in one JSON file.

    Args:
        path: the JSON file; created on the first write.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, Any]:
        """The whole document (an empty one when the file does not exist yet)."""
        if not self.path.exists():
            return _empty_document()
        try:
            stat = self.path.stat()
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise AnnotationError(f"{self.path} cannot be read as JSON ({e}); restore it or move it aside.") from e
        key = (str(self.path), stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if _VALIDATED.get(str(self.path)) != key:  # a file this process already checked is not checked again
            _validate_document(doc, self.path)
            _VALIDATED[str(self.path)] = key
        return doc

    def frames(self) -> dict[str, np.ndarray]:
        """{relative frame path: (9, 3) keypoints} for every labeled frame."""
        return {k: np.asarray(v["keypoints"], dtype=np.float32) for k, v in self.read()["frames"].items()}

    def get(self, frame: str) -> np.ndarray | None:
        entry = self.read()["frames"].get(frame)
        return None if entry is None else np.asarray(entry["keypoints"], dtype=np.float32)

    def update(self, changes: Mapping[str, np.ndarray | None], source: str = "manual") -> None:
        """Set (or, with None, delete) the keypoints of several frames in one locked write."""
        with file_lock(self.path):
            doc = self.read()
            for frame, kps in changes.items():
                if kps is None:
                    doc["frames"].pop(frame, None)
                    continue
                arr = validate_keypoints(np.asarray(kps, dtype=float).tolist(), f"frame {frame!r}")
                points = [[round(float(x), 2), round(float(y), 2), int(v)] for x, y, v in arr]  # 1/100 px is plenty
                doc["frames"][frame] = {"keypoints": points, "source": source, "updated": round(time.time(), 3)}
            atomic_write_json(self.path, doc)
            stat = self.path.stat()  # our own write is valid by construction
            _VALIDATED[str(self.path)] = (str(self.path), stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def set(self, frame: str, kps: np.ndarray, source: str = "manual") -> None:
        self.update({frame: kps}, source=source)

    def delete(self, frame: str) -> None:
        self.update({frame: None})
