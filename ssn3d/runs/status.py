"""A run's status file: what it holds, who writes it, and how a watcher sees a dead run.

``RUN/status.json`` is replaced atomically on every write; readers never see half of it::

    state        one of STATES: "starting" (the launcher), "running", then "done", "failed" or "cancelled"
    pid, pgid    the writing process and the process group a cancel signals (None when not launched detached)
    proc_start   the process's start time in clock ticks: with the pid it names one process
    started      when the run (or its latest resume) began; heartbeat: the writer's last sign of life
    progress     0..1; eta_s: seconds left; step, total_steps, epoch: where training stands
    error        a sentence saying why it failed or stopped; traceback: the file that holds it
    resumed      whether this is a resume; command: what the launcher started
    best_map, last_eval, warnings
                 training's: the best mAP so far, the latest evaluation's metrics (part PCK included),
                 sentences such as the collapse guard's
    stale        set by a watcher that marked a dead or silent run failed (a cancel may overrule it)
    kind, ended  a study job's (``ssn3d.studies.jobs``): which study, and when it finished

A writer holds the run's lock (``ssn3d.runs.lock``) and keeps the file fresh with ``StatusWriter``;
``refresh_status`` marks a run failed when its process died without a final status or stopped beating.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from ssn3d.io import atomic_write_json, file_lock
from ssn3d.runs.folder import RunPaths, read_run_config
from ssn3d.runs.lock import acquire_run_lock
from ssn3d.runs.process import LAUNCHED_ENV, process_start, run_alive

_logger = logging.getLogger(__name__)

STATES = ("starting", "running", "done", "failed", "cancelled")
ACTIVE_STATES = ("starting", "running")
STALE_AFTER_S = 120.0  # 12 missed heartbeats (StatusWriter beats every 10 s)


class RunInfo(NamedTuple):
    name: str
    path: Path
    status: dict[str, Any]  # refreshed: stale runs already marked failed
    config: dict[str, Any]  # the run's config.yaml, {} when missing or unreadable


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


def status_lock(run_dir: str | os.PathLike) -> contextlib.AbstractContextManager[None]:
    """The lock a watcher or a cancel holds while it reads the status and writes its verdict on it.

    Only those read-decide-write steps take it; the run's own writes need not, since a verdict is only
    ever written about a process that is gone (or hung, and being cancelled).
    """
    return file_lock(RunPaths(Path(run_dir)).status)


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
    that dies stops beating and ``refresh_status`` marks it failed.

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


def refresh_status(
    run_dir: str | os.PathLike, *, stale_after: float = STALE_AFTER_S, now: float | None = None
) -> dict[str, Any]:
    """The run's status, after marking it failed when its process is gone or silent.

    Args:
        run_dir: the run folder.
        stale_after: seconds without a heartbeat after which a live process counts as hung.
        now: the current time (tests).
    """
    status = read_status(run_dir)
    if status.get("state") not in ACTIVE_STATES:
        return status
    now = time.time() if now is None else now
    pid = status.get("pid")
    age = now - float(status.get("heartbeat") or status.get("started") or 0.0)
    if not run_alive(status):
        reason = (
            f"the training process (pid {pid}) ended without a final status (killed, out of memory or the "
            "machine restarted); resume the run to continue from its last checkpoint."
        )
    elif age > stale_after:
        reason = (
            f"the training process (pid {pid}) has not reported for {age:.0f} s, so it is hung; cancel it and "
            "resume the run."
        )
    else:
        return status
    # A run writes its final status and then exits, so it may have finished between the first read and
    # the liveness check: read again after the check, and mark it failed only if nothing new was written.
    # The re-read and the write hold the status lock, so a cancel's "cancelled" (written under the same
    # lock) can never land between them and be overwritten.
    with status_lock(run_dir):
        latest = read_status(run_dir)
        if latest.get("state") not in ACTIVE_STATES or latest.get("heartbeat") != status.get("heartbeat"):
            return latest
        log = RunPaths(Path(run_dir)).log
        status = {
            **status,
            "state": "failed",
            "error": reason,
            "traceback": log.name if log.exists() else None,
            "stale": True,  # marked by a watcher, not written by the run: a cancel in progress may overrule it
        }
        write_status(run_dir, status)
    _logger.warning("Run %s marked failed: %s", run_dir, reason)
    return status


def list_runs(root: str | os.PathLike, *, stale_after: float = STALE_AFTER_S) -> list[RunInfo]:
    """Every run folder under ``root`` (a folder with a status or config file), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = []
    for d in root.iterdir():
        paths = RunPaths(d)
        if d.is_dir() and not d.name.startswith(".") and (paths.status.exists() or paths.config.exists()):
            runs.append(RunInfo(d.name, d, refresh_status(d, stale_after=stale_after), read_run_config(d)))
    return sorted(runs, key=lambda r: (float(r.status.get("started") or 0.0), r.name), reverse=True)


def active_runs(root: str | os.PathLike, *, stale_after: float = STALE_AFTER_S) -> list[RunInfo]:
    """The runs under ``root`` that are starting or running (stale ones are marked failed first)."""
    return [r for r in list_runs(root, stale_after=stale_after) if r.status.get("state") in ACTIVE_STATES]


def run_has_ended(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds a run that is no longer starting or running (a dead one counts as ended)."""
    return (
        RunPaths(Path(run_dir)).status.is_file() and refresh_status(run_dir).get("state") not in ACTIVE_STATES
    )


def process_identity(*, parent_group: bool = False) -> dict[str, Any]:
    """pid, pgid and proc_start of this process for its status (pgid only when launched detached).

    A launched process leads its own session (``ssn3d.runs.process.spawn_detached``), so its group is
    its own, or with ``parent_group`` its parent's (torchrun's, whose ranks a cancel must stop together);
    one started from a shell shares the shell's group, which a cancel must never signal.
    """
    pgid = None
    if os.environ.get(LAUNCHED_ENV) == "1":
        pgid = os.getpgid(os.getppid()) if parent_group else os.getpgid(0)
    return {"pid": os.getpid(), "pgid": pgid, "proc_start": process_start(os.getpid())}


@contextlib.contextmanager
def tracked_run(run_dir: str | os.PathLike, **fields: Any) -> Iterator[StatusWriter]:
    """Run the block as the one writer of ``run_dir``, its status beating until the block ends.

    The status says "running" (plus ``fields``) while the block runs, then "done" with ``ended``, or
    "failed" with the error's sentence, or "cancelled" on Ctrl-C; the error is raised again. Training
    keeps its own, richer status (``ssn3d.engine.train``); this is for shorter jobs such as the studies.

    Raises:
        RunBusyError: another process writes ``run_dir``.
    """
    with acquire_run_lock(run_dir):
        status = StatusWriter(run_dir, initial={**process_identity(), **fields}).start()
        try:
            yield status
        except KeyboardInterrupt:
            status.close(state="cancelled", error="interrupted", ended=time.time())
            raise
        except BaseException as e:
            status.close(state="failed", error=f"{type(e).__name__}: {e}", ended=time.time())
            raise
        status.close(state="done", progress=1.0, ended=time.time())
