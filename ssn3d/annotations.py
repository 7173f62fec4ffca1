"""The keypoint label store: the few labeled frames that anchor semi-supervised SSN.

One JSON file per dataset (by default ``annotations/<dataset-id>.json``), plus a short journal of
the latest saves next to it (``<file>.journal``, folded into the file every few hundred saves)::

    {"format": "ssn3d-keypoints", "version": 1, "parts": ["head", ...],
     "frames": {"<frame path relative to the dataset root>":
                {"keypoints": [[x, y, v], ...9], "source": "manual", "updated": 1732412345.0}}}

Coordinates are pixels of the original frame file; ``v`` follows COCO (see ``ssn3d.keypoints``).

Every change happens under an exclusive lock on a sibling ``.lock`` file: an fsynced append to the
journal, or a fold written to a temporary file and renamed over the old one. Two browser sessions
labeling the same dataset never lose each other's points, a crash never leaves half a file, and a
click on a store of 16,000 frames costs an append, not a rewrite.
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
    atomic_write_text(
        path, json.dumps(obj, indent=indent, sort_keys=True, separators=None if indent else (",", ":"))
    )


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
        raise AnnotationError(
            f"{where}: expected a list of {NUM_PARTS} [x, y, v] points ({', '.join(PARTS)})."
        )
    out = np.zeros((NUM_PARTS, 3), dtype=np.float32)
    for i, point in enumerate(value):
        if not isinstance(point, list | tuple) or len(point) != 3:
            raise AnnotationError(f"{where}: point {i} ({PARTS[i]}) must be [x, y, v].")
        for j, c in enumerate(point):
            if isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c):
                raise AnnotationError(f"{where}: point {i} ({PARTS[i]}) has a non-numeric value {c!r}.")
            out[i, j] = c
        if point[2] not in (0, 1, 2):
            raise AnnotationError(
                f"{where}: point {i} ({PARTS[i]}) has visibility {point[2]!r}; use 0, 1 or 2."
            )
        if point[2] > 0 and (point[0] < 0 or point[1] < 0 or point[0] > 1e5 or point[1] > 1e5):
            raise AnnotationError(f"{where}: point {i} ({PARTS[i]}) lies outside any image: {point[:2]}.")
    return out


def _validate_document(doc: Any, path: Path) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise AnnotationError(f'{path} is not an SSN3D label file (expected "format": "{FORMAT}").')
    if doc.get("version") != VERSION:
        raise AnnotationError(
            f"{path} has label format version {doc.get('version')!r}; this version reads {VERSION}."
        )
    if list(doc.get("parts", [])) != list(PARTS):
        raise AnnotationError(f"{path} labels parts {doc.get('parts')!r}; expected {list(PARTS)}.")
    frames = doc.get("frames")
    if not isinstance(frames, dict):
        raise AnnotationError(f'{path}: "frames" must be an object keyed by frame path.')
    for key, entry in frames.items():
        if not isinstance(entry, dict):
            raise AnnotationError(f'{path}: frame {key!r} must be an object with "keypoints".')
        validate_keypoints(entry.get("keypoints"), f"{path}: frame {key!r}")
    return doc


# Journal entries before they are folded into the main file: a save appends one short line instead
# of rewriting a store of thousands of frames, and a fold costs one full write per this many saves.
JOURNAL_LIMIT = 256

# Per-process caches keyed on the files' (inode, mtime, size): the parsed and validated main file,
# its keypoints as arrays, and the parsed journal. A store of 16,000 frames is parsed once, not per click.
_DOCS: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}
_ARRAYS: dict[str, tuple[tuple[int, int, int], dict[str, np.ndarray]]] = {}
_JOURNALS: dict[str, tuple[tuple[int, int, int] | None, list]] = {}


def _empty_document() -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "parts": list(PARTS), "frames": {}}


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class AnnotationStore:
    """Keypoint labels of one dataset: a main JSON file plus a short append-only journal.

    A save appends one JSON line to ``<path>.journal`` (fsynced) under the lock; every
    ``JOURNAL_LIMIT`` entries the journal is folded into the main file, which is rewritten
    atomically. Reading replays the journal over the main file. A crash can at most tear the
    journal's last line, which is ignored; every earlier save survives.

    Args:
        path: the main JSON file; created on the first write.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.journal = self.path.with_name(self.path.name + ".journal")

    def version(self) -> tuple:
        """Changes whenever the labels may have changed (for caches keyed on it)."""
        return (_stat_key(self.path), _stat_key(self.journal))

    def _base(self) -> dict[str, Any]:
        key = _stat_key(self.path)
        if key is None:
            return _empty_document()
        cached = _DOCS.get(str(self.path))
        if cached is None or cached[0] != key:
            try:
                doc = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
                reason = "nested too deeply" if isinstance(e, RecursionError) else e
                raise AnnotationError(
                    f"{self.path} cannot be read as JSON ({reason}); restore it or move it aside."
                ) from e
            cached = (key, _validate_document(doc, self.path))
            _DOCS[str(self.path)] = cached
        doc = cached[1]
        return {
            **doc,
            "frames": dict(doc["frames"]),
        }  # entries are replaced, never mutated: a shallow copy is enough

    def _journal_records(self) -> list[tuple[str, dict[str, Any] | None]]:
        key = _stat_key(self.journal)
        cached = _JOURNALS.get(str(self.journal))
        if cached is not None and cached[0] == key:
            return cached[1]
        records = self._parse_journal() if key is not None else []
        _JOURNALS[str(self.journal)] = (key, records)
        return records

    def _parse_journal(self) -> list[tuple[str, dict[str, Any] | None]]:
        try:
            data = self.journal.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        records = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                frame, entry = rec["frame"], rec["entry"]
                if not isinstance(frame, str) or not (entry is None or isinstance(entry, dict)):
                    raise ValueError("bad record")
                if entry is not None:
                    validate_keypoints(entry.get("keypoints"), f"{self.journal}: frame {frame!r}")
            except (ValueError, KeyError, TypeError) as e:
                if i == len(lines) - 1:  # a save torn by a crash: only the last, unterminated line
                    break
                raise AnnotationError(
                    f"{self.journal} line {i + 1} is damaged ({e}); restore it or move it aside."
                ) from None
            records.append((frame, entry))
        return records

    def read(self) -> dict[str, Any]:
        """The whole document (an empty one when nothing was saved yet)."""
        doc = self._base()
        for frame, entry in self._journal_records():
            if entry is None:
                doc["frames"].pop(frame, None)
            else:
                doc["frames"][frame] = entry
        return doc

    def frames(self) -> dict[str, np.ndarray]:
        """{relative frame path: (9, 3) keypoints} for every labeled frame."""
        base = self._base()["frames"]
        key = _stat_key(self.path)
        cached = _ARRAYS.get(str(self.path))
        if cached is None or cached[0] != key:
            points = np.asarray([v["keypoints"] for v in base.values()], dtype=np.float32).reshape(
                -1, NUM_PARTS, 3
            )
            cached = (key, dict(zip(base, points)))
            _ARRAYS[str(self.path)] = cached
        out = {k: v.copy() for k, v in cached[1].items()}
        for frame, entry in self._journal_records():
            if entry is None:
                out.pop(frame, None)
            else:
                out[frame] = np.asarray(entry["keypoints"], dtype=np.float32)
        return out

    def get(self, frame: str) -> np.ndarray | None:
        entry = self.read()["frames"].get(frame)
        return None if entry is None else np.asarray(entry["keypoints"], dtype=np.float32)

    def write_document(self, doc: dict[str, Any]) -> None:
        """Replace the whole store with ``doc`` (call with ``file_lock(self.path)`` held)."""
        atomic_write_json(self.path, doc)
        _DOCS[str(self.path)] = (_stat_key(self.path), doc)  # our own write is valid by construction
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.journal)  # folded; a crash before this line replays entries already in the file

    def update(self, changes: Mapping[str, np.ndarray | None], source: str = "manual") -> None:
        """Set (or, with None, delete) the keypoints of several frames in one locked save."""
        now = round(time.time(), 3)
        records: list[tuple[str, dict[str, Any] | None]] = []
        for frame, kps in changes.items():  # validate everything before anything is written
            if kps is None:
                records.append((frame, None))
                continue
            arr = validate_keypoints(np.asarray(kps, dtype=float).tolist(), f"frame {frame!r}")
            points = [
                [round(float(x), 2), round(float(y), 2), int(v)] for x, y, v in arr
            ]  # 1/100 px is plenty
            records.append((frame, {"keypoints": points, "source": source, "updated": now}))
        with file_lock(self.path):
            doc = self.read()  # a damaged store raises here, before anything is written
            pending = len(self._journal_records())
            if not self.path.exists() or pending + len(records) > JOURNAL_LIMIT:
                for frame, entry in records:
                    if entry is None:
                        doc["frames"].pop(frame, None)
                    else:
                        doc["frames"][frame] = entry
                self.write_document(doc)
                return
            lines = b"".join(
                json.dumps({"frame": f, "entry": e}, separators=(",", ":")).encode() + b"\n"
                for f, e in records
            )
            with open(self.journal, "ab") as fh:
                fh.write(lines)
                fh.flush()
                os.fsync(fh.fileno())

    def set(self, frame: str, kps: np.ndarray, source: str = "manual") -> None:
        self.update({frame: kps}, source=source)

    def delete(self, frame: str) -> None:
        self.update({frame: None})
