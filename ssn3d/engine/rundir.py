"""A run is a folder: the files one training run writes and everyone else reads.

ARCHITECTURE.md, "Contracts worth keeping stable": a run folder holds its resolved config, a
metrics file appended per logged step, a status file written atomically, a log, and checkpoints
that rebuild their model. The app and the CLI read these files; nothing about a run lives in any
process's memory but the training process's own.

::

    RUN/config.yaml          the resolved Config
    RUN/status.json          {"state", "pid", "pgid", "started", "heartbeat", "progress", "eta_s", "step", ...}
                             plus "last_eval" (the latest evaluation's metrics, part PCK included) and
                             "warnings" (sentences, e.g. the collapse guard's) when there are any
    RUN/metrics.jsonl        one JSON object per line: {"kind": "train" | "eval", "step", "epoch", ...}
    RUN/train.log            the log (and, for launched runs, the process's stdout/stderr)
    RUN/traceback.txt        the traceback of a failed run
    RUN/checkpoints/last.pt  the latest state, to resume from
    RUN/checkpoints/best.pt  the state with the best mAP so far
    RUN/eval.json            written by ``python -m ssn3d evaluate``
    RUN/.run.lock            locked by the one process that writes the run (``acquire_run_lock``)
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ssn3d.io import atomic_write_json

_logger = logging.getLogger(__name__)

STATES = ("starting", "running", "done", "failed", "cancelled")
ACTIVE_STATES = ("starting", "running")
LOCK_TOKEN_ENV = (
    "SSN3D_RUN_LOCK_TOKEN"  # a launched process: the run lock is held for it (``acquire_run_lock``)
)


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


# --------------------------------------------------------------------------- status


def read_status(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The run's status dict; ``{"state": "unknown"}`` when it has none (yet) or it cannot be parsed."""
    path = RunPaths(Path(run_dir)).status
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"state": "unknown"}
    return data if isinstance(data, dict) else {"state": "unknown"}


def write_status(run_dir: str | os.PathLike, status: dict[str, Any]) -> None:
    """Replace the status file atomically."""
    atomic_write_json(RunPaths(Path(run_dir)).status, status)


def fresh_status(state: str, pid: int, **fields: Any) -> dict[str, Any]:
    """A run's status as it begins (the launcher's "starting", the process's "running"), plus ``fields``."""
    now = time.time()
    return {
        "state": state,
        "pid": pid,
        "pgid": None,
        "started": now,
        "heartbeat": now,
        "progress": 0.0,
        "eta_s": None,
        "error": None,
        "traceback": None,
        **fields,
    }


class StatusWriter:
    """The training process's status file: updated by the loop, kept alive by a heartbeat thread.

    The heartbeat thread rewrites the file every ``interval`` seconds with a fresh ``heartbeat``
    time, so a long evaluation or a slow first step does not look like a dead process; a process
    that dies stops beating and ``ssn3d.engine.runs`` marks it failed.

    Args:
        run_dir: the run folder.
        interval: seconds between heartbeats.
        initial: the first status (merged over pid/started/heartbeat defaults).
    """

    def __init__(
        self, run_dir: str | os.PathLike, *, interval: float = 10.0, initial: dict[str, Any] | None = None
    ):
        self.run_dir = Path(run_dir)
        self.interval = interval
        self._status: dict[str, Any] = {**fresh_status("running", os.getpid()), **(initial or {})}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._write()

    @property
    def status(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._status)

    def _write(self) -> None:
        with self._lock:
            self._status["heartbeat"] = time.time()
            snapshot = dict(self._status)
        try:
            write_status(self.run_dir, snapshot)
        except OSError as e:  # a full disk must not kill training; the next beat retries
            _logger.warning("Could not write %s: %s", RunPaths(self.run_dir).status, e)

    def update(self, *, write: bool = True, **fields: Any) -> None:
        """Merge ``fields`` into the status and write it (or leave the writing to the next heartbeat)."""
        with self._lock:
            self._status.update(fields)
        if write:
            self._write()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self._write()

    def start(self) -> StatusWriter:
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="ssn3d-heartbeat", daemon=True)
            self._thread.start()
        return self

    def close(self, **final: Any) -> None:
        """Stop the heartbeat and write the final status (e.g. state="done")."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        self.update(**final)


# --------------------------------------------------------------------------- the writer's lock


class RunLock:
    """The exclusive ``flock`` on ``RUN/.run.lock``: whoever holds it is the run's one writer.

    The kernel drops an ``flock`` when its last descriptor closes, so a killed writer never leaves a
    stale lock behind. A launcher takes the lock, lets its child inherit the descriptor and closes its
    own copy: from then on the training process holds it, with no moment in which a second writer could
    slip in. The file says who holds it: ``TOKEN PID``, the token shared with the launched process
    through ``SSN3D_RUN_LOCK_TOKEN`` (under torchrun the lock is torchrun's, and its ranks find the token).

    Args:
        path: the lock file.
        fd: the locked descriptor, or None for a lock that a parent process holds on this one's behalf.
        token: the token written into the file.
    """

    def __init__(self, path: Path, fd: int | None, token: str) -> None:
        self.path = path
        self.fd = fd
        self.token = token

    def set_holder(self, pid: int) -> None:
        """Record ``pid`` as the holder (same width as before: a reader never sees a shorter file)."""
        if self.fd is not None:
            os.pwrite(self.fd, _holder_line(self.token, pid), 0)

    def release(self) -> None:
        """Close this process's descriptor (a child that inherited it keeps the lock)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder_line(token: str, pid: int) -> bytes:
    return f"{token} {pid:>10}\n".encode()


def _read_holder(path: Path) -> tuple[str, int | None]:
    """(token, pid) from a lock file; ("", None) where unreadable."""
    try:
        fields = path.read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return "", None
    pid = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
    return (fields[0] if fields else ""), pid


def acquire_run_lock(run_dir: str | os.PathLike) -> RunLock:
    """Take the run's writer lock now, or refuse: every way of writing a run comes through here.

    A process whose launcher took the lock for it (``SSN3D_RUN_LOCK_TOKEN`` equals the token in the
    file) gets a RunLock that holds nothing itself: its inherited descriptor, or its torchrun parent's,
    keeps the lock for as long as it lives.

    Raises:
        RunBusyError: another process writes the run.
    """
    root = Path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = RunPaths(root).lock
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        token, pid = _read_holder(path)
        mine = os.environ.get(LOCK_TOKEN_ENV)
        if mine and token == mine:
            return RunLock(path, None, token)
        holder = f" (pid {pid})" if pid else ""
        raise RunBusyError(
            f"run {root.name} is being written by another process{holder}; wait for it to finish or cancel it."
        ) from None
    except BaseException:
        os.close(fd)
        raise
    lock = RunLock(path, fd, secrets.token_hex(8))
    os.ftruncate(fd, 0)
    lock.set_holder(os.getpid())
    return lock


# --------------------------------------------------------------------------- metrics


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
