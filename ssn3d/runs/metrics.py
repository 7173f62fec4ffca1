"""A run's metrics file: one JSON object per logged step, appended by the run, read incrementally by watchers.

``RUN/metrics.jsonl``: ``{"kind": "train" | "eval", "step", "epoch", ...}`` per line; a resumed run cuts
the lines past its checkpoint (``truncate_metrics``) and readers start over (``MetricsChunk.restarted``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from ssn3d.runs.folder import RunPaths


def append_metrics(run_dir: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one JSON line to the run's metrics file (one ``write`` of a whole line, then flush)."""
    path = RunPaths(Path(run_dir)).metrics
    line = json.dumps(record, separators=(",", ":"), allow_nan=True) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()


class MetricsChunk(NamedTuple):
    """New metrics lines since ``offset``.

    records: the parsed lines. offset: pass it to the next call. restarted: the file shrank (a
    resumed run dropped lines past its checkpoint), so ``records`` start from the beginning and
    replace what the caller had.
    """

    records: list[dict[str, Any]]
    offset: int
    restarted: bool


def read_metrics(path: str | os.PathLike, offset: int = 0) -> MetricsChunk:
    """Read complete lines of a metrics file from byte ``offset`` on (incremental polling).

    Args:
        path: a run folder or its metrics.jsonl.
        offset: the ``offset`` of the previous call (0 for everything).

    Returns:
        A MetricsChunk; a line still being written (no newline yet) is left for the next call, and
        lines that are not JSON objects are skipped.
    """
    path = Path(path)
    if path.is_dir():
        path = RunPaths(path).metrics
    try:
        size = path.stat().st_size
    except OSError:
        return MetricsChunk([], 0, offset > 0)
    restarted = offset > size
    start = 0 if restarted else offset
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read()
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return MetricsChunk(records, start + end, restarted)


def truncate_metrics(run_dir: str | os.PathLike, after_step: int) -> int:
    """Cut the metrics file before its first line past ``after_step`` (and any partial last line).

    A run killed after its last checkpoint logged steps that its resumption will train again; they
    are dropped here, in place, so the curves continue without duplicates. Returns lines dropped.
    """
    path = RunPaths(Path(run_dir)).metrics
    if not path.exists():
        return 0
    data = path.read_bytes()
    keep, pos, dropped = 0, 0, 0
    for raw in data.splitlines(keepends=True):
        pos_next = pos + len(raw)
        complete = raw.endswith(b"\n")
        try:
            step = json.loads(raw).get("step", 0) if complete else None
        except (ValueError, AttributeError):
            step = 0  # not ours to judge: keep it
        if step is None or (isinstance(step, int | float) and step > after_step):
            dropped = sum(1 for _ in data[pos:].splitlines())
            break
        keep = pos = pos_next
    if keep < len(data):
        os.truncate(path, keep)
    return dropped
