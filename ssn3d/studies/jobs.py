"""The studies' quick variants as background jobs, for the app's Studies page.

A job is ``python -m ssn3d study KIND --quick --out <workspace>/studies/KIND-quick``, started detached
(closing the browser does not stop it) with its output in ``study.log`` and its process in
``job.json`` of that folder. One study job runs at a time in a workspace: they are short (under a
minute or two on a CPU) and a second click must not pile up work on a shared server.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from ssn3d.io import atomic_write_text, file_lock
from ssn3d.runs.folder import RunBusyError
from ssn3d.runs.process import pid_alive, process_start, spawn_detached
from ssn3d.serving.workspace import Workspace

QUICK_ARGS = {  # the command line of each kind's quick study (the variants the tests run)
    "amber": ["amber", "--quick"],
    "pedestrians": ["pedestrians", "--quick", "--device", "cpu"],
    "random": ["random", "--quick", "--grid"],
}
RECORDS = {"amber": "amber.json", "pedestrians": "pedestrians.json", "random": "random.json"}
JOB_FILE = "job.json"
LOG_FILE = "study.log"


def job_folder(workspace: Workspace, kind: str) -> Path:
    return workspace.home / "studies" / f"{kind}-quick"


def job_state(folder: Path) -> dict[str, Any] | None:
    """The job last started in ``folder``: its record plus ``state`` (running, done, with ``ended``, or
    failed); None if there is none."""
    try:
        job = json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(job, dict) or job.get("kind") not in QUICK_ARGS:
        return None
    record = folder / RECORDS[job["kind"]]
    if pid_alive(job.get("pid"), job.get("proc_start")):
        return {**job, "state": "running"}
    if record.is_file() and record.stat().st_mtime >= float(job.get("started") or 0.0):
        return {**job, "state": "done", "ended": record.stat().st_mtime}
    return {**job, "state": "failed"}


def running_jobs(workspace: Workspace) -> list[dict[str, Any]]:
    root = workspace.home / "studies"
    jobs = [job_state(d) for d in sorted(root.iterdir()) if d.is_dir()] if root.is_dir() else []
    return [j for j in jobs if j and j["state"] == "running"]


def launch_study(workspace: Workspace, kind: str) -> dict[str, Any]:
    """Start the quick ``kind`` study in the background and return its job record.

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
        started = time.time()
        proc = spawn_detached(command, folder / LOG_FILE, cwd=workspace.home, env={"OMP_NUM_THREADS": "1"})
        job = {"kind": kind, "pid": proc.pid, "proc_start": process_start(proc.pid), "started": started}
        atomic_write_text(folder / JOB_FILE, json.dumps(job))
    return {**job, "state": "running"}


def log_tail(folder: Path, lines: int = 12) -> str:
    try:
        text = (folder / LOG_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
