"""Processes of a run: starting one detached, knowing whether it still lives, signalling its group.

A run (or a study job) is a process of the same CLI started in its own session, so it outlives the app
and its terminal; it is then known only by what its status file records: its pid, the start time
that tells it apart from a later process with the same pid, and its process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssn3d.serving.redact import is_secret_name

LAUNCHED_ENV = "SSN3D_LAUNCHED"  # set in a launched process: its process group may be signalled whole


def _reap(pid: int) -> bool:
    """Collect ``pid`` if it is an exited child of this process; True if it was."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        return False
    return done == pid


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), None where unreadable (not Linux)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: with the pid, it names one process (pids are reused)."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def pid_alive(pid: int | None, start: int | None = None) -> bool:
    """Whether process ``pid`` exists, is not a zombie, and (given ``start``) is the process that started then."""
    if not pid or pid <= 0:
        return False
    if _reap(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _proc_stat(pid)
    if fields is None:
        return True
    if start is not None and len(fields) > 19 and int(fields[19]) != int(start):
        return False  # the pid now belongs to another process
    return fields[0] not in ("Z", "X")


def signal_run(status: dict[str, Any], sig: signal.Signals) -> None:
    """Send ``sig`` to the run's process group when it has its own, else to its process."""
    pgid, pid = status.get("pgid"), status.get("pid")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if pgid and pgid > 1 and pgid != os.getpgid(0):  # never our own group (the app's)
            os.killpg(pgid, sig)
        elif pid and pid > 1 and pid != os.getpid():
            os.kill(pid, sig)


def run_alive(status: dict[str, Any]) -> bool:
    if status.get("pgid"):
        _reap(int(status["pgid"]))  # the launcher's direct child, if this process launched it
    return pid_alive(status.get("pid"), status.get("proc_start"))


def child_env(extra: dict[str, str] | None) -> dict[str, str]:
    """This process's environment without its secrets (the app's password stays in the app), plus ``extra``."""
    env = {
        k: v for k, v in os.environ.items() if not is_secret_name(k)
    }  # the app's password stays in the app
    package_parent = str(Path(__file__).resolve().parents[2])  # so a source checkout imports without install
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
    env[LAUNCHED_ENV] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def spawn_detached(
    command: Sequence[str],
    log_path: Path,
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen:
    """Start ``command`` in its own session (it outlives the app), appending its output to ``log_path``.

    The process gets the app's environment without its secrets, plus ``env``, and inherits ``pass_fds``.
    """
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} launch: {' '.join(command)}\n".encode())
        log.flush()
        return subprocess.Popen(
            list(command),
            cwd=cwd,
            env=child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            pass_fds=tuple(pass_fds),
        )
