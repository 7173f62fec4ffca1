"""The studies' quick variants as background jobs, for the app's Studies page.

A job is ``python -m ssn3d study KIND --quick --out <workspace>/studies/KIND-quick``, started detached
(closing the browser does not stop it) with the run machinery (``ssn3d.runs``): the folder gets a run's
``status.json`` (with the job's ``kind``) and writer's lock, its output goes to ``study.log``, and the
study process writes its own "running", "done" or "failed" (``ssn3d.runs.status.tracked_run``); a job
whose process died without a final status is marked failed like any run. One study job runs at a time
in a workspace: they are short (under a minute or two on a CPU) and a second click must not pile up
work on a shared server.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ssn3d.io import file_lock
from ssn3d.runs.folder import RunBusyError, RunPaths, tail_log
from ssn3d.runs.launch import start_detached
from ssn3d.runs.lock import acquire_run_lock
from ssn3d.runs.status import ACTIVE_STATES, active_runs, refresh_status
from ssn3d.serving.workspace import Workspace

QUICK_ARGS = {  # the command line of each kind's quick study (the variants the tests run)
    "amber": ["amber", "--quick"],
    "pedestrians": ["pedestrians", "--quick", "--device", "cpu"],
    "random": ["random", "--quick", "--grid"],
}
LOG_FILE = "study.log"


def job_folder(workspace: Workspace, kind: str) -> Path:
    return workspace.home / "studies" / f"{kind}-quick"


def job_state(folder: Path) -> dict[str, Any] | None:
    """The job last started in ``folder``: its status, ``state`` running (also while starting), done (with
    ``ended``), failed or cancelled; None if the folder holds no study job."""
    if not RunPaths(folder).status.is_file():
        return None
    status = refresh_status(folder)
    if status.get("kind") not in QUICK_ARGS:
        return None
    return {**status, "state": "running"} if status.get("state") in ACTIVE_STATES else status


def running_jobs(workspace: Workspace) -> list[dict[str, Any]]:
    """The study jobs of ``workspace`` that are starting or running."""
    runs = active_runs(workspace.home / "studies")
    return [{**r.status, "state": "running"} for r in runs if r.status.get("kind") in QUICK_ARGS]


def launch_study(workspace: Workspace, kind: str) -> dict[str, Any]:
    """Start the quick ``kind`` study in the background and return its status.

    Raises:
        ValueError: an unknown kind.
        RunBusyError: a study job is already running in this workspace.
    """
    if kind not in QUICK_ARGS:
        raise ValueError(f"unknown study {kind!r}; choose one of {', '.join(QUICK_ARGS)}.")
    folder = job_folder(workspace, kind)
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder.parent / ".launch"):
        busy = running_jobs(workspace)
        if busy:
            since = time.strftime("%H:%M:%S", time.localtime(busy[0]["started"]))
            raise RunBusyError(
                f"the {busy[0]['kind']} study is still running (since {since}); wait for it to finish."
            )
        command = [sys.executable, "-m", "ssn3d", "study", *QUICK_ARGS[kind], "--out", str(folder), "--quiet"]
        with acquire_run_lock(folder) as lock:
            status = start_detached(
                folder,
                command,
                lock,
                log=folder / LOG_FILE,
                cwd=workspace.home,
                env={"OMP_NUM_THREADS": "1"},
                kind=kind,
            )
    return {**status, "state": "running"}


def log_tail(folder: Path, lines: int = 12) -> str:
    """The last lines of the job's log."""
    return tail_log(folder / LOG_FILE, lines)
