"""A run is a folder: its layout, and the small files beside the status and the metrics.

ARCHITECTURE.md, "Contracts worth keeping stable": a run folder holds its resolved config, a
metrics file appended per logged step, a status file written atomically, a log, and checkpoints
that rebuild their model. The app and the CLI read these files; nothing about a run lives in any
process's memory but the training process's own. A study job of the app (``ssn3d.studies.jobs``)
is a folder of the same kind: a status, a lock and a log beside the study's records.

::

    RUN/config.yaml          the resolved Config
    RUN/status.json          what the run is doing: ``ssn3d.runs.status`` says what it holds
    RUN/metrics.jsonl        one JSON object per line (``ssn3d.runs.metrics``)
    RUN/train.log            the log (and, for launched runs, the process's stdout/stderr)
    RUN/traceback.txt        the traceback of a failed run
    RUN/checkpoints/last.pt  the latest state, to resume from
    RUN/checkpoints/best.pt  the state with the best mAP so far
    RUN/eval.json            written by ``python -m ssn3d evaluate`` (``ssn3d.engine.evaluations``)
    RUN/.run.lock            locked by the one process that writes the run (``ssn3d.runs.lock``)
    RUN/.owner               the app session that launched the run (who may cancel and resume it)
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ssn3d.io import atomic_write_text

LOG_TAIL_BYTES = 16384  # the end of a log is read, not the whole file: a long run's log grows to megabytes


class RunError(ValueError):
    """A run operation that cannot be done now; the message says why and what to do."""


class RunBusyError(RunError):
    """The run is already running (a second launch of it is refused)."""


@dataclass(frozen=True)
class RunPaths:
    """The files of a run folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def traceback(self) -> Path:
        return self.root / "traceback.txt"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def eval(self) -> Path:
        return self.root / "eval.json"

    @property
    def lock(self) -> Path:
        return self.root / ".run.lock"

    @property
    def owner(self) -> Path:
        return self.root / ".owner"


# --------------------------------------------------------------------------- names


def clean_run_name(name: str) -> str:
    """``name`` as a folder name: runs of characters other than ASCII letters, digits, ``_.-`` become one
    ``-``, with no leading or trailing dot or dash (so no hidden folder and no ``..``); "run" if nothing is left.
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip(".-") or "run"


def new_run_dir(root: str | os.PathLike, name: str) -> Path:
    """A fresh folder name under ``root``: ``name-YYYYmmdd-HHMMSS`` (with a suffix if taken)."""
    base = f"{clean_run_name(name)}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, i = Path(root) / base, 1
    while path.exists():
        path, i = Path(root) / f"{base}-{i}", i + 1
    return path


# --------------------------------------------------------------------------- small files


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The run's config.yaml as plain data; {} when missing or unreadable (a listing must not fail on it)."""
    try:
        data = yaml.safe_load(RunPaths(Path(run_dir)).config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def read_owner(run_dir: str | os.PathLike) -> str | None:
    """Who launched the run from the app (an owner tag), or None: a run without one is the operator's."""
    try:
        return RunPaths(Path(run_dir)).owner.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def write_owner(run_dir: str | os.PathLike, owner: str) -> None:
    """Record ``owner`` as the run's launcher (atomically: a reader never sees half a tag)."""
    atomic_write_text(RunPaths(Path(run_dir)).owner, owner)


def tail_log(path: str | os.PathLike, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ("" when it cannot be read), from its last 16 KiB only."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - LOG_TAIL_BYTES))
            return "\n".join(fh.read().decode("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return ""
