"""Writes that a crash or a second writer cannot half-do: atomic replacement and file locks.

Every file the library writes for another process to read (label stores, configs, a run's status,
checkpoints, study results) goes through here, so that a reader sees the old file or the new one,
never a mix, and two writers of one shared file take turns:

* ``atomic_open(path, mode)``: a file object on a temporary beside ``path``; on a clean exit it is
  flushed, fsynced and renamed over ``path``, on an error it is removed and ``path`` is untouched.
* ``atomic_write_text`` / ``atomic_write_bytes`` / ``atomic_write_json``: the one-call forms.
* ``file_lock(path)``: an exclusive advisory lock on ``<path>.lock`` for a ``with`` block.

The temporary is a hidden sibling (``.<name>.<random>.tmp``, or with the caller's ``tmp_prefix``),
in the same folder so that the rename stays on one file system and is atomic.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike,
    mode: str = "w",
    *,
    tmp_prefix: str | None = None,
    sync_dir: bool = False,
) -> Iterator[IO[Any]]:
    """A file to write that replaces ``path`` only once the ``with`` block has finished without error.

    Args:
        path: the file to replace; its folder is created when missing.
        mode: ``"w"`` (UTF-8 text) or ``"wb"``.
        tmp_prefix: how the temporary's name starts (default ``.<name>.``); a writer that must find
            its own leftovers later (checkpoints name theirs after the pid) passes its own.
        sync_dir: also fsync the folder after the rename, so that the rename itself survives a power
            loss (worth it for large, rare writes; skipped for frequent small ones).

    Yields:
        The open temporary file.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes with mode 'w' or 'wb', not {mode!r}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=tmp_prefix or f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        with contextlib.suppress(OSError):  # a folder that cannot be opened still got the rename
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a mix."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = None) -> None:
    """Atomic JSON write; compact by default, since only ``indent=None`` uses json's C encoder
    (a 20k-frame label store then saves in tens of milliseconds instead of seconds)."""
    atomic_write_text(
        path, json.dumps(obj, indent=indent, sort_keys=True, separators=None if indent else (",", ":"))
    )


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive advisory lock on ``<path>.lock``, held for the ``with`` block."""
    lock_path = Path(f"{path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
