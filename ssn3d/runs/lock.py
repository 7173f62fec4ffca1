"""The writer's lock of a run folder: one process writes a run, whichever command started it."""

from __future__ import annotations

import fcntl
import os
import secrets
from pathlib import Path

from ssn3d.runs.folder import RunBusyError, RunPaths

LOCK_TOKEN_ENV = (
    "SSN3D_RUN_LOCK_TOKEN"  # a launched process: the run lock is held for it (``acquire_run_lock``)
)


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
