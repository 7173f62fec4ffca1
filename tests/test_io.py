"""ssn3d.io: atomic replacement (old file or new, never a mix, no temporaries left) and file locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ssn3d.io import atomic_open, atomic_write_bytes, atomic_write_json, atomic_write_text, file_lock

REPO = Path(__file__).resolve().parents[1]


def test_writes_replace_the_file_and_leave_only_it(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "status.json"
    atomic_write_json(path, {"b": 1, "a": [1, 2]})
    assert path.read_text() == '{"a":[1,2],"b":1}'  # compact and sorted: the C encoder's fast path
    atomic_write_json(path, {"a": 1}, indent=1)
    assert json.loads(path.read_text()) == {"a": 1} and "\n" in path.read_text()
    atomic_write_text(tmp_path / "t.txt", "héllo\n")
    assert (tmp_path / "t.txt").read_bytes() == "héllo\n".encode()
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\xff")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["b.bin", "deep", "status.json", "t.txt"]


def test_an_error_inside_the_block_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    path.write_bytes(b"old")
    with (
        pytest.raises(RuntimeError),
        atomic_open(path, "wb", tmp_prefix=".last.pt.123.", sync_dir=True) as fh,
    ):
        fh.write(b"half of the new")
        assert [p.name.startswith(".last.pt.123.") for p in tmp_path.iterdir() if p != path] == [True]
        raise RuntimeError("killed mid-save")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["last.pt"]
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(path, "a"):
            pass


def test_a_reader_never_sees_half_a_file(tmp_path: Path) -> None:
    """A second process rewrites the file as fast as it can while this one reads it."""
    path = tmp_path / "doc.json"
    atomic_write_json(path, {"n": 0, "pad": "x" * 100_000})
    writer = textwrap.dedent(
        f"""
        from ssn3d.io import atomic_write_json
        for n in range(1, 200):
            atomic_write_json({str(path)!r}, {{"n": n, "pad": "x" * 100_000}})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", writer], env={**os.environ, "PYTHONPATH": str(REPO)})
    seen = set()
    while proc.poll() is None:
        seen.add(json.loads(path.read_text())["n"])  # a torn file would not parse
    assert proc.returncode == 0 and json.loads(path.read_text())["n"] == 199 and len(seen) >= 1


def test_file_lock_makes_a_second_process_wait(tmp_path: Path) -> None:
    target = tmp_path / "store.json"
    other = textwrap.dedent(
        f"""
        import time
        from ssn3d.io import file_lock
        with file_lock({str(target)!r}):
            print(time.time(), flush=True)
        """
    )
    with file_lock(target):
        proc = subprocess.Popen(
            [sys.executable, "-c", other],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        time.sleep(1.0)  # long enough for the child to start and block on the lock
        released = time.time()
    acquired = float(proc.communicate(timeout=60)[0])
    assert acquired >= released and Path(f"{target}.lock").exists()
