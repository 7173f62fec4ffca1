"""The label store's journal: the latest saves, one JSON line each, before they are folded into the file.

A journal record is complete once its line break is on disk. An append cut short (a kill, a full
disk, a file-size limit, a truncated copy) leaves a torn tail: bytes after the last line break, or
a last line that does not parse. Readers ignore it, and the next reader or writer that holds the
lock cuts the journal back to its last complete record before appending, so a torn save never
glues itself to the next one. Lines from older versions that did glue (a torn prefix followed by a
whole record) are salvaged: the record is kept and the store folded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssn3d.labels.schema import AnnotationError, validate_keypoints

# Journal entries before they are folded into the main file: a save appends one short line instead
# of rewriting a store of thousands of frames, and a fold costs one full write per this many saves.
JOURNAL_LIMIT = 256

_RECORD_START = b'{"frame":'  # how every record line begins (json.dumps keeps key order)


@dataclass
class Journal:
    """A parsed journal: the complete records, and what a repair would drop."""

    records: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)
    clean_end: int = 0  # byte offset just after the last complete record
    dropped: int = 0  # bytes of torn saves (a torn tail, or the torn prefixes of salvaged lines)
    salvaged: bool = False  # a line held a torn prefix glued to a whole record: fold, do not cut

    @property
    def damaged(self) -> bool:
        return self.dropped > 0


def parse_record(line: bytes, where: Path) -> tuple[str, dict[str, Any] | None]:
    """One journal line as (frame, entry or None for a deletion); ValueError when it is not one."""
    rec = json.loads(line)
    if not isinstance(rec, dict):
        raise ValueError("not a record")
    frame, entry = rec["frame"], rec["entry"]
    if not isinstance(frame, str) or not (entry is None or isinstance(entry, dict)):
        raise ValueError("bad record")
    if entry is not None:
        validate_keypoints(entry.get("keypoints"), f"{where}: frame {frame!r}")
    return frame, entry


def _salvage(line: bytes, where: Path) -> tuple[tuple[str, dict[str, Any] | None], int] | None:
    """A whole record after a torn prefix (older versions appended after a torn save), and the prefix's length."""
    start = line.find(_RECORD_START, 1)
    while start > 0:
        try:
            return parse_record(line[start:], where), start
        except (ValueError, KeyError, TypeError, RecursionError):
            start = line.find(_RECORD_START, start + 1)
    return None


def parse_journal(data: bytes, where: Path) -> Journal:
    """Parse journal bytes; a torn tail is counted in ``dropped``, never raised.

    Raises:
        AnnotationError: a line before the last one that is damaged beyond a torn prefix.
    """
    out = Journal()
    lines = data.split(b"\n")  # the last item holds the bytes after the last line break
    pos = 0
    for i, line in enumerate(lines[:-1]):
        pos += len(line) + 1
        if line.strip():
            try:
                out.records.append(parse_record(line, where))
            except (ValueError, KeyError, TypeError, RecursionError) as e:
                salvaged = _salvage(line, where)
                if salvaged is not None:
                    out.records.append(salvaged[0])
                    out.dropped += salvaged[1]
                    out.salvaged = True
                elif i == len(lines) - 2:  # the last line: a torn save, ended by a later append's break
                    out.dropped += len(data) - out.clean_end
                    return out
                else:
                    raise AnnotationError(
                        f"{where} line {i + 1} is damaged ({e}); restore it or move it aside."
                    ) from None
        out.clean_end = pos
    out.dropped += len(lines[-1])  # unterminated: never acknowledged, so never a complete record
    return out


def record_line(frame: str, entry: dict[str, Any] | None) -> bytes:
    """One journal line: a set (``entry``) or a deletion (None) of ``frame``."""
    return json.dumps({"frame": frame, "entry": entry}, separators=(",", ":")).encode() + b"\n"
