"""A run's status written by a short job (``tracked_run``), and a study writing its folder as a run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ssn3d.runs.folder import RunBusyError
from ssn3d.runs.lock import acquire_run_lock
from ssn3d.runs.status import read_status, run_has_ended, tracked_run


def test_a_tracked_job_says_running_then_done_or_failed_with_its_error(tmp_path: Path) -> None:
    with tracked_run(tmp_path / "ok", kind="random") as status:
        assert read_status(tmp_path / "ok")["state"] == "running" and status.status["kind"] == "random"
        assert not run_has_ended(tmp_path / "ok")
    done = read_status(tmp_path / "ok")
    assert done["state"] == "done" and done["ended"] >= done["started"] and done["pid"] == os.getpid()
    assert run_has_ended(tmp_path / "ok")
    with pytest.raises(ValueError, match="bad size"), tracked_run(tmp_path / "bad", kind="amber"):
        raise ValueError("bad size")
    failed = read_status(tmp_path / "bad")
    assert failed["state"] == "failed" and failed["error"] == "ValueError: bad size"


def test_a_tracked_job_is_refused_while_another_process_writes_the_folder(tmp_path: Path) -> None:
    with acquire_run_lock(tmp_path), pytest.raises(RunBusyError, match="being written by another process"):
        with tracked_run(tmp_path):
            pass
    assert read_status(tmp_path)["state"] == "unknown"  # refused before it wrote anything


def test_a_study_with_an_output_folder_leaves_a_done_status_there(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("SSN3D_RUN_LOCK_TOKEN", None)
    args = ["--parts", "3", "--iters", "2", "--channels", "4", "--size", "6", "--batch", "4", "--quiet"]
    r = subprocess.run(
        [sys.executable, "-m", "ssn3d", "study", "random", *args, "--out", str(tmp_path / "s")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    status = read_status(tmp_path / "s")
    assert status["state"] == "done" and status["kind"] == "random" and status["pgid"] is None
    assert (tmp_path / "s" / "random.json").is_file()
