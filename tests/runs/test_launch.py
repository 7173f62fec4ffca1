"""Background runs with real processes: launch, duplicate refusal, cap, cancel, kill -9, resume, stale runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tiny import TRAINING, write_tiny_config

from ssn3d.engine.checkpoint import load_checkpoint
from ssn3d.runs.folder import RunBusyError, RunError, RunPaths
from ssn3d.runs.launch import TooManyRunsError, cancel_run, launch_run, resume_run
from ssn3d.runs.metrics import read_metrics
from ssn3d.runs.process import pid_alive, process_start
from ssn3d.runs.status import list_runs, read_status, refresh_status, status_lock, write_status
from ssn3d.serving.workspace import Workspace

ENV = {"OMP_NUM_THREADS": "1"}  # tiny models; threads only fight over a busy machine's 2 cores
LONG = {  # runs until cancelled: the tests stop, kill and resume it
    "model": {"strategy": "unsupervised"},
    "train": {"epochs": 10000, "iters_per_epoch": 2, "ckpt_every": 1},
}


def write_config(tmp_path: Path, root: Path) -> Path:
    return write_tiny_config(tmp_path / "tiny.yaml", TRAINING, LONG, {"data": {"root": str(root)}})


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def train_steps(run: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run).records if r.get("kind") == "train"]


def test_launch_refuses_duplicates_and_the_cap_then_sigterm_cancels_cleanly(
    tiny_walkers: Path, tmp_path: Path, workspace: Workspace
) -> None:
    config = write_config(tmp_path, tiny_walkers)
    run = workspace.runs / "a"
    outcomes: list[str] = []

    def click() -> None:  # a double click, or two browser tabs, at the same moment
        try:
            launch_run(run, config=config, workspace=workspace, env=ENV)
            outcomes.append("launched")
        except RunBusyError:
            outcomes.append("busy")

    threads = [threading.Thread(target=click) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["busy", "busy", "launched"]
    status = read_status(run)
    assert status["state"] in ("starting", "running") and pid_alive(status["pid"])
    with pytest.raises(TooManyRunsError, match="SSN3D_MAX_RUNS"):
        launch_run(workspace.runs / "b", config=config, workspace=workspace, env=ENV)
    assert not (workspace.runs / "b" / "status.json").exists()

    wait_for(lambda: read_status(run).get("step", 0) >= 2, 120, "two training steps")
    pid = read_status(run)["pid"]
    final = cancel_run(run, grace_s=60)
    assert final["state"] == "cancelled" and "SIGTERM" in final["error"]
    assert not pid_alive(pid)
    _, _, meta = load_checkpoint(RunPaths(run).last)
    assert meta["step"] == train_steps(run)[-1] >= 2
    assert "SIGTERM received" in RunPaths(run).log.read_text()
    assert cancel_run(run)["state"] == "cancelled"  # nothing left to stop: a no-op


def test_kill_9_then_resume_continues_the_steps_with_intact_checkpoints(
    tiny_walkers: Path, tmp_path: Path, workspace: Workspace
) -> None:
    run = workspace.runs / "k"
    status = launch_run(run, config=write_config(tmp_path, tiny_walkers), workspace=workspace, env=ENV)
    paths = RunPaths(run)
    wait_for(
        lambda: paths.last.exists() and read_status(run).get("step", 0) >= 3, 120, "a checkpoint and 3 steps"
    )
    os.killpg(status["pgid"], signal.SIGKILL)
    wait_for(lambda: not pid_alive(status["pid"]), 30, "the killed process to go")
    failed = refresh_status(run)
    assert failed["state"] == "failed" and "ended without a final status" in failed["error"]
    _, _, meta = load_checkpoint(paths.last)  # an atomic write: never half a file
    done = meta["step"]
    with pytest.raises(RunError, match="already holds a run"):
        launch_run(run, config=tmp_path / "tiny.yaml", workspace=workspace, env=ENV)
    resume_run(run, [f"train.max_steps={done + 3}"], workspace=workspace, env=ENV)
    wait_for(lambda: read_status(run).get("state") not in ("starting", "running"), 120, "the resumed run")
    final = read_status(run)
    assert final["state"] == "done" and final["resumed"] is True and final["step"] == done + 3
    assert train_steps(run) == list(range(1, done + 4))  # no gap, no duplicate: curves continue
    assert load_checkpoint(paths.last)[2]["step"] == done + 3
    assert f"Resuming {run} at step {done}" in paths.log.read_text()


def test_a_launched_run_that_cannot_start_says_why_in_its_status(
    tiny_walkers: Path, tmp_path: Path, workspace: Workspace
) -> None:
    run = workspace.runs / "bad"
    launch_run(
        run,
        config=write_config(tmp_path, tiny_walkers),
        overrides=["model.num_parts=1"],
        workspace=workspace,
        env=ENV,
    )
    wait_for(lambda: refresh_status(run)["state"] == "failed", 60, "the run to fail")
    assert "model.num_parts=1" in read_status(run)["error"]  # the config error itself, not "process ended"
    # the process writes its status, then prints its error and exits: the log may lag the status
    wait_for(lambda: "error: " in RunPaths(run).log.read_text(), 30, "the error in the run's log")


def test_resume_needs_a_checkpoint(tmp_path: Path, workspace: Workspace) -> None:
    (workspace.runs / "empty").mkdir(parents=True)
    with pytest.raises(RunError, match="no checkpoint"):
        resume_run(workspace.runs / "empty", workspace=workspace)


def _fake_run(root: Path, name: str, **status) -> Path:
    run = root / name
    run.mkdir(parents=True)
    now = time.time()
    write_status(run, {"state": "running", "started": now, "heartbeat": now, **status})
    return run


def test_dead_or_silent_processes_are_marked_failed(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        now = time.time()
        dead = _fake_run(tmp_path, "dead", pid=gone.pid)
        silent = _fake_run(tmp_path, "silent", pid=alive.pid, heartbeat=now - 600, started=now - 700)
        fresh = _fake_run(tmp_path, "fresh", pid=alive.pid, started=now - 800)
        done = _fake_run(tmp_path, "done", pid=gone.pid, state="done")
        runs = {r.name: r.status for r in list_runs(tmp_path, stale_after=300)}
        assert runs["dead"]["state"] == "failed" and "ended without a final status" in runs["dead"]["error"]
        assert runs["silent"]["state"] == "failed" and "has not reported for 600 s" in runs["silent"]["error"]
        assert runs["fresh"]["state"] == "running" and runs["done"]["state"] == "done"
        assert read_status(dead)["state"] == read_status(silent)["state"] == "failed"  # written back
        assert read_status(fresh)["state"] == "running" and read_status(done)["state"] == "done"
        assert [r.name for r in list_runs(tmp_path)][0] == "done"  # newest first
        with pytest.raises(RunBusyError, match="still alive"):  # a hung process keeps its run
            resume_run(silent, workspace=Workspace(home=tmp_path, max_runs=4))
        assert cancel_run(silent, grace_s=10)["state"] == "cancelled"
        assert not pid_alive(alive.pid)
    finally:
        alive.kill()
        alive.wait()


FINISHER = """
import json, os, sys, time
run = sys.argv[1]
sys.stdin.readline()  # the watcher has read the status and is about to check on this process
tmp = os.path.join(run, "status.tmp")
with open(tmp, "w") as f:
    json.dump({"state": "done", "pid": os.getpid(), "heartbeat": time.time(), "progress": 1.0}, f)
os.replace(tmp, os.path.join(run, "status.json"))
"""


def test_a_run_that_finishes_while_it_is_checked_stays_done(tmp_path: Path, monkeypatch) -> None:
    from ssn3d.runs import status as runs

    run = tmp_path / "r"
    run.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", FINISHER, str(run)], stdin=subprocess.PIPE, text=True)
    now = time.time()
    write_status(run, {"state": "running", "pid": proc.pid, "started": now, "heartbeat": now})
    check = runs.run_alive

    def finish_first(status):  # the process writes its final status and exits between read and check
        proc.stdin.write("go\n")
        proc.stdin.close()
        proc.wait(timeout=30)
        return check(status)

    monkeypatch.setattr(runs, "run_alive", finish_first)
    assert refresh_status(run)["state"] == "done"
    assert read_status(run)["state"] == "done"  # not overwritten with "failed" by the watcher


STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"


def _stubborn(tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path]:
    """A process that ignores SIGTERM, in its own session, posing as a running run."""
    proc = subprocess.Popen(
        [sys.executable, "-c", STUBBORN], start_new_session=True, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc, _fake_run(tmp_path, name, pid=proc.pid, pgid=proc.pid)


def test_a_reused_pid_is_not_the_run_s_process() -> None:
    me, start = os.getpid(), process_start(os.getpid())
    assert start is not None and pid_alive(me, start)
    assert not pid_alive(me, start + 1)  # same pid, another start time: the run's process is gone


def test_a_run_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path, caplog) -> None:
    proc, run = _stubborn(tmp_path, "stubborn")
    t0 = time.monotonic()
    final = cancel_run(run, grace_s=1.0)
    assert not pid_alive(proc.pid)  # cancel_run reaps its own children, so Popen sees no exit code
    assert time.monotonic() - t0 >= 1.0 and "sending SIGKILL" in caplog.text
    assert final["state"] == "cancelled" and "killed after 1 s" in final["error"]
    proc.wait(timeout=10)


def test_a_killed_run_is_cancelled_even_when_a_watcher_saw_it_die_first(tmp_path: Path) -> None:
    proc, run = _stubborn(tmp_path, "watched")
    stop = threading.Event()

    def watch() -> None:  # the app's runs table refreshes statuses while the cancel waits
        while not stop.is_set():
            refresh_status(run)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        final = cancel_run(run, grace_s=0.5)
    finally:
        stop.set()
        watcher.join()
    assert final["state"] == "cancelled" and "killed after" in final["error"]
    assert read_status(run)["state"] == "cancelled"
    proc.wait(timeout=10)


def test_a_watchers_failed_verdict_never_overwrites_a_cancel_written_while_it_looked(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run = _fake_run(tmp_path, "dead", pid=gone.pid)
    verdict: list[dict] = []
    with status_lock(run):  # a cancel holds the lock: the watcher has seen the process gone and must wait
        watcher = threading.Thread(target=lambda: verdict.append(refresh_status(run)))
        watcher.start()
        watcher.join(timeout=0.5)
        assert watcher.is_alive() and read_status(run)["state"] == "running"
        write_status(run, {**read_status(run), "state": "cancelled"})
    watcher.join(timeout=10)
    assert verdict[0]["state"] == read_status(run)["state"] == "cancelled"


def test_cancel_without_waiting_leaves_the_sigkill_to_a_detached_helper(tmp_path: Path) -> None:
    proc, run = _stubborn(tmp_path, "stubborn")
    t0 = time.monotonic()
    assert (
        cancel_run(run, grace_s=1.0, wait=False)["state"] == "running"
    )  # returns at once (the app's button)
    assert time.monotonic() - t0 < 1.0
    wait_for(lambda: proc.poll() is not None, 60, "the helper's SIGKILL")
    assert proc.returncode == -signal.SIGKILL
    wait_for(lambda: read_status(run)["state"] == "cancelled", 30, "the helper to write the status")


def test_runs_cli_lists_and_shows_status(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from ssn3d.__main__ import main as cli

    _fake_run(tmp_path, "r1", pid=os.getpid(), progress=0.5)
    assert cli(["runs", "--root", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    assert "r1" in out and "running" in out and "50.0%" in out
    assert cli(["runs", "status", str(tmp_path / "r1")]) == 0
    assert '"state": "running"' in capsys.readouterr().out


def test_training_processes_do_not_inherit_the_apps_secrets(monkeypatch) -> None:
    from ssn3d.runs.process import child_env

    monkeypatch.setenv("SSN3D_PASSWORD", "hunter2-correct-horse")
    monkeypatch.setenv("SSN3D_OPERATOR_PASSWORD", "op-secret-phrase")
    monkeypatch.setenv("SSN3D_HOME", "/srv/ssn3d")
    env = child_env({"CUDA_VISIBLE_DEVICES": "0"})
    assert "SSN3D_PASSWORD" not in env and "SSN3D_OPERATOR_PASSWORD" not in env
    assert env["SSN3D_HOME"] == "/srv/ssn3d" and env["CUDA_VISIBLE_DEVICES"] == "0"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, **ENV, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("SSN3D_RUN_LOCK_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "ssn3d", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_one_writer_per_run_whichever_command_starts_it(tmp_path: Path) -> None:
    from ssn3d.runs.lock import acquire_run_lock

    run = tmp_path / "runs" / "r"
    with acquire_run_lock(run):
        with pytest.raises(RunBusyError, match=f"being written by another process \\(pid {os.getpid()}\\)"):
            acquire_run_lock(run)  # a second descriptor, even in the same process, is another writer
        with pytest.raises(RunBusyError, match="being written by another process"):
            launch_run(run, config=tmp_path / "x.yaml", workspace=Workspace(home=tmp_path), env=ENV)
        assert not RunPaths(run).status.exists()  # refused before anything was written
    with acquire_run_lock(run):  # released: a killed holder's lock goes with its descriptors
        pass


def test_train_resume_is_locked_and_a_refused_resume_changes_nothing(
    tiny_walkers: Path, tmp_path: Path, workspace: Workspace
) -> None:
    run = workspace.runs / "r"
    status = launch_run(run, config=write_config(tmp_path, tiny_walkers), workspace=workspace, env=ENV)
    paths = RunPaths(run)
    wait_for(lambda: paths.last.exists() and read_status(run).get("step", 0) >= 2, 120, "a checkpoint")
    second = _cli("train", "--resume", str(run), cwd=tmp_path)  # the launched process holds the lock
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"being written by another process (pid {status['pid']})" in second.stderr
    assert read_status(run)["pid"] == status["pid"]
    assert cancel_run(run, grace_s=60)["state"] == "cancelled"

    before = (paths.config.read_bytes(), paths.status.read_bytes())
    refused = {
        "model.num_parts=6": "another architecture",
        f"data.root={tmp_path / 'missing'}": "does not exist",
    }
    for override, words in refused.items():
        res = _cli("train", "--resume", str(run), override, cwd=tmp_path)
        assert res.returncode == 2 and words in res.stderr and "Traceback" not in res.stderr, res.stderr
        with pytest.raises(ValueError, match=words):
            resume_run(run, [override], workspace=workspace, env=ENV)
        assert (paths.config.read_bytes(), paths.status.read_bytes()) == before, override
