"""The keypoint label store: the few labeled frames that anchor semi-supervised SSN.

One JSON file per dataset (by default ``annotations/<dataset-id>.json`` in the workspace,
``default_store_path``; its format is ``ssn3d.labels.schema``), plus a short journal of the latest
saves next to it (``<file>.journal``, ``ssn3d.labels.journal``), folded into the file every few
hundred saves.

Every change happens under an exclusive lock on a sibling ``.lock`` file: an fsynced append to the
journal, or a fold written to a temporary file and renamed over the old one. Two browser sessions
labeling the same dataset never lose each other's points, a crash never leaves half a file, and a
click on a store of 16,000 frames costs an append, not a rewrite.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ssn3d.io import atomic_write_json, file_lock
from ssn3d.keypoints import NUM_PARTS
from ssn3d.labels.journal import JOURNAL_LIMIT, Journal, parse_journal, record_line
from ssn3d.labels.schema import AnnotationError, empty_document, validate_document, validate_keypoints
from ssn3d.serving.workspace import Workspace

_logger = logging.getLogger(__name__)

# Per-process caches keyed on the files' (inode, mtime, size): the parsed and validated main file,
# its keypoints as arrays, and the parsed journal. A store of 16,000 frames is parsed once, not per click.
_DOCS: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}
_ARRAYS: dict[str, tuple[tuple[int, int, int], dict[str, np.ndarray]]] = {}
_JOURNALS: dict[str, tuple[tuple[int, int, int] | None, Journal]] = {}


def default_store_path(workspace: Workspace, dataset_id: str) -> Path:
    """Where a dataset's labels live in a workspace: ``annotations/<dataset id>.json``."""
    return workspace.annotations / f"{dataset_id}.json"


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
    journal's last line: readers ignore it, the next locked reader or writer cuts it, and every
    earlier save survives.

    Args:
        path: the main JSON file; created on the first write.

    Attributes:
        repaired_bytes: bytes of interrupted saves this object dropped from the journal.
        last_repair: a sentence saying what the latest repair dropped and kept, or None.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.journal = self.path.with_name(self.path.name + ".journal")
        self.repaired_bytes = 0  # bytes of torn saves this object cut from the journal
        self.last_repair: str | None = None  # one sentence for the user about the latest repair
        self._holding_lock = False  # set inside update(): a read there must not lock again

    def version(self) -> tuple:
        """Changes whenever the labels may have changed (for caches keyed on it)."""
        return (_stat_key(self.path), _stat_key(self.journal))

    def _base(self) -> dict[str, Any]:
        key = _stat_key(self.path)
        if key is None:
            return empty_document()
        cached = _DOCS.get(str(self.path))
        if cached is None or cached[0] != key:
            try:
                doc = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
                reason = "nested too deeply" if isinstance(e, RecursionError) else e
                raise AnnotationError(
                    f"{self.path} cannot be read as JSON ({reason}); restore it or move it aside."
                ) from e
            cached = (key, validate_document(doc, self.path))
            _DOCS[str(self.path)] = cached
        doc = cached[1]
        return {
            **doc,
            "frames": dict(doc["frames"]),
        }  # entries are replaced, never mutated: a shallow copy is enough

    def _journal_records(self) -> list[tuple[str, dict[str, Any] | None]]:
        parsed = self._parsed_journal()
        if parsed.damaged and not self._holding_lock:
            self.repair()  # seen without the lock: look again under it, where a cut is safe
            parsed = self._parsed_journal()
        return parsed.records

    def _parsed_journal(self) -> Journal:
        key = _stat_key(self.journal)
        cached = _JOURNALS.get(str(self.journal))
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            data = self.journal.read_bytes() if key is not None else b""
        except FileNotFoundError:
            data = b""
        parsed = parse_journal(data, self.journal)
        _JOURNALS[str(self.journal)] = (key, parsed)
        return parsed

    def repair(self) -> int:
        """Cut a torn journal tail (or fold salvaged records) under the lock; return the bytes dropped.

        Called by every save and by a read that meets a torn tail. Every complete record is kept.
        The first process to repair logs a warning and sets ``last_repair``; later ones find the
        journal clean. A store that cannot be locked (a read-only folder) is left as it is: its
        readers keep ignoring the torn tail.
        """
        if self._holding_lock:
            return self._repair_locked()
        try:
            with file_lock(self.path):
                self._holding_lock = True
                try:
                    return self._repair_locked()
                finally:
                    self._holding_lock = False
        except OSError as e:
            _logger.debug("label store %s not repaired: %s", self.path, e)
            return 0

    def _repair_locked(self) -> int:
        parsed = self._parsed_journal()
        if not parsed.damaged:
            return 0
        if parsed.salvaged:
            # a damaged line in the middle cannot be cut away: fold every good record into the main file
            doc = self._base()
            for frame, entry in parsed.records:
                if entry is None:
                    doc["frames"].pop(frame, None)
                else:
                    doc["frames"][frame] = entry
            self.write_document(doc)
        else:
            with open(self.journal, "r+b") as fh:
                os.ftruncate(fh.fileno(), parsed.clean_end)
                os.fsync(fh.fileno())
        self.repaired_bytes += parsed.dropped
        self.last_repair = (
            f"{self.journal.name}: dropped {parsed.dropped} bytes of an interrupted save; "
            f"kept all {len(parsed.records)} complete records."
        )
        _logger.warning("label store %s", self.last_repair)
        return parsed.dropped

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
        try:
            atomic_write_json(self.path, doc)
        except OSError as e:
            raise self._save_failed(e) from e
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
            self._holding_lock = True
            try:
                self._repair_locked()  # never append after a torn record
                self._apply_locked(records)
            finally:
                self._holding_lock = False

    def _apply_locked(self, records: list[tuple[str, dict[str, Any] | None]]) -> None:
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
        lines = b"".join(record_line(f, e) for f, e in records)
        start = _stat_key(self.journal)
        size = 0 if start is None else start[2]
        try:
            with open(self.journal, "ab", buffering=0) as fh:
                view = memoryview(lines)
                while view:  # a raw write may stop short; the next one raises if the disk is full
                    view = view[fh.write(view) :]
                os.fsync(fh.fileno())
        except OSError as e:
            # take back the part that reached the file, so the store stays as it was before this save
            with contextlib.suppress(OSError):  # if this fails too, the next save or read cuts the torn tail
                os.truncate(self.journal, size)
            raise self._save_failed(e) from e

    def _save_failed(self, e: OSError) -> AnnotationError:
        return AnnotationError(
            f"could not save labels to {self.path} ({e.strerror or e}); this change was not saved, the "
            "labels saved before are intact: free disk space and try again."
        )

    def set(self, frame: str, kps: np.ndarray, source: str = "manual") -> None:
        self.update({frame: kps}, source=source)

    def delete(self, frame: str) -> None:
        self.update({frame: None})
