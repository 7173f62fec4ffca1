"""Training runs as background processes, seen only through their folders (for the app and the shell).

Training a video re-id model as the paper does (150 epochs, "Implementation Details") takes hours:
longer than a browser tab stays open. So a run is launched as a detached process of the same CLI
(``python -m ssn3d train``) in its own session, writing to its folder (``ssn3d.engine.rundir``);
the app keeps no training state in memory and reads the folder again on every rerun.

* ``launch_run`` / ``resume_run``: start (or continue from ``last.pt``) under a lock that a double
  click or a second browser tab cannot pass, refusing a run that is already running and more
  than ``Workspace.max_runs`` runs at once.
* ``cancel_run``: SIGTERM to the run's process group (the loop finishes its step, saves ``last``
  and marks itself cancelled), SIGKILL after a grace period.
* ``refresh_status`` / ``list_runs``: a run whose process died without a final status, or whose
  heartbeat is older than ``stale_after`` seconds, is marked failed with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from ssn3d.config import Config, save_config
from ssn3d.engine.rundir import (
    ACTIVE_STATES,
    LOCK_TOKEN_ENV,
    RunBusyError,
    RunError,
    RunPaths,
    acquire_run_lock,
    fresh_status,
    read_status,
    write_status,
)
from ssn3d.io import file_lock
from ssn3d.serving.workspace import Workspace

_logger = logging.getLogger(__name__)

STALE_AFTER_S = 120.0  # 12 missed heartbeats (StatusWriter beats every 10 s)
GRACE_S = 30.0  # a training step on a big batch, plus saving a checkpoint, fits well inside
LAUNCHED_ENV = "SSN3D_LAUNCHED"  # set in a launched process: its process group may be signalled whole


class TooManyRunsError(RunError):
    """The workspace's cap on concurrent runs is reached."""


class RunInfo(NamedTuple):
    name: str
    path: Path
    status: dict[str, Any]  # refreshed: stale runs already marked failed
    config: dict[str, Any]  # the run's config.yaml, {} when missing or unreadable


# --------------------------------------------------------------------------- processes


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


def _signal_run(status: dict[str, Any], sig: signal.Signals) -> None:
    """Send ``sig`` to the run's process group when it has its own, else to its process."""
    pgid, pid = status.get("pgid"), status.get("pid")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if pgid and pgid > 1 and pgid != os.getpgid(0):  # never our own group (the app's)
            os.killpg(pgid, sig)
        elif pid and pid > 1 and pid != os.getpid():
            os.kill(pid, sig)


def _run_alive(status: dict[str, Any]) -> bool:
    if status.get("pgid"):
        _reap(int(status["pgid"]))  # the launcher's direct child, if this process launched it
    return pid_alive(status.get("pid"), status.get("proc_start"))


# --------------------------------------------------------------------------- status


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
    if not _run_alive(status):
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


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def list_runs(root: str | os.PathLike, *, stale_after: float = STALE_AFTER_S) -> list[RunInfo]:
    """Every run folder under ``root`` (a folder with a status or config file), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = []
    for d in root.iterdir():
        paths = RunPaths(d)
        if d.is_dir() and not d.name.startswith(".") and (paths.status.exists() or paths.config.exists()):
            runs.append(
                RunInfo(d.name, d, refresh_status(d, stale_after=stale_after), _read_config(paths.config))
            )
    return sorted(runs, key=lambda r: (float(r.status.get("started") or 0.0), r.name), reverse=True)


def active_runs(root: str | os.PathLike, *, stale_after: float = STALE_AFTER_S) -> list[RunInfo]:
    """The runs under ``root`` that are starting or running (stale ones are marked failed first)."""
    return [r for r in list_runs(root, stale_after=stale_after) if r.status.get("state") in ACTIVE_STATES]


def new_run_dir(root: str | os.PathLike, name: str) -> Path:
    """A fresh folder name under ``root``: ``name-YYYYmmdd-HHMMSS`` (with a suffix if taken)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip(".-") or "run"
    base = f"{safe}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, i = Path(root) / base, 1
    while path.exists():
        path, i = Path(root) / f"{base}-{i}", i + 1
    return path


# --------------------------------------------------------------------------- checking a resume


def load_resume_config(run_dir: str | os.PathLike, overrides: Sequence[str] = ()) -> Config:
    """The run's config.yaml with ``overrides`` on top, validated (nothing is written)."""
    from ssn3d.config import load_config

    paths = RunPaths(Path(run_dir))
    if not paths.config.is_file():
        raise RunError(f"run {paths.root.name} has no config.yaml; it cannot be resumed, so start a new run.")
    return load_config(paths.config, overrides)


def check_resume(cfg: Config, run_dir: str | os.PathLike, *, cwd: str | os.PathLike | None = None) -> None:
    """Refuse a resume that would fail once started, before anything of the run is written.

    The checkpoint must load (safely) and be of ``cfg.model``'s architecture, and ``data.root`` must
    be a folder: a resume refused for any of these leaves config.yaml and status.json as they were.

    Args:
        cfg: the config the resumed run would train with.
        run_dir: the run folder.
        cwd: the training process's working directory, against which a relative data.root is read
            (default: this process's).

    Raises:
        RunError: no checkpoint, or no dataset folder.
        CheckpointError: a damaged checkpoint, or one of another architecture.
    """
    from ssn3d.engine.checkpoint import CheckpointError, checkpoint_config, model_differences, read_checkpoint

    paths = RunPaths(Path(run_dir))
    if not paths.last.is_file():
        raise RunError(
            f"run {paths.root.name} has no checkpoint to resume from ({paths.last}); start a new run."
        )
    stored = checkpoint_config(read_checkpoint(paths.last), paths.last)
    diff = model_differences(stored.model, cfg.model)
    if diff:
        raise CheckpointError(
            f"checkpoint {paths.last} is of another architecture ({'; '.join(diff[:3])}); resume without model "
            "overrides."
        )
    root = Path(cwd or Path.cwd()) / Path(cfg.data.root).expanduser() if cfg.data.root else None
    if root is None or not root.is_dir():
        raise RunError(
            f"the dataset folder data.root={cfg.data.root!r} does not exist; resume with data.root=PATH of the "
            f"{cfg.data.dataset} dataset."
        )


# --------------------------------------------------------------------------- launching


def _command(
    run_dir: Path, config: Path | None, overrides: Sequence[str], resume: bool, nproc: int
) -> list[str]:
    if nproc > 1:
        head = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    else:
        head = [sys.executable]
    args = ["-m", "ssn3d", "train"]
    if config is not None:
        args.append(str(config))
    args += list(overrides)
    args += ["--resume", str(run_dir)] if resume else ["--run-dir", str(run_dir)]
    return head + args


def _child_env(extra: dict[str, str] | None) -> dict[str, str]:
    from ssn3d.serving.redact import is_secret_name

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
            env=_child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            pass_fds=tuple(pass_fds),
        )


def launch_run(
    run_dir: str | os.PathLike,
    *,
    config: str | os.PathLike | Config | None = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
    nproc: int = 1,
    workspace: Workspace | None = None,
    max_runs: int | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start ``python -m ssn3d train`` for ``run_dir`` as a detached process and return its status.

    The process gets its own session (closing the app or its terminal does not stop it), its
    stdout and stderr go to the run's log file, and its status file says "starting" before this
    function returns, all under the workspace's launch lock: a second call for the same run, even
    from another process, sees it running and is refused.

    Args:
        run_dir: the run folder (created for a new run).
        config: a YAML path or a Config for a new run (a Config is saved as the run's config.yaml).
        overrides: ``key=value`` strings on top of the config (for a resume: e.g. a larger train.epochs).
        resume: continue the run from its ``last.pt``.
        nproc: processes (GPUs) per run; more than 1 starts it under torchrun.
        workspace: where the concurrent-run cap and the working directory come from (default: from the env).
        max_runs: the cap (default ``workspace.max_runs``), counted over ``run_dir``'s sibling folders.
        env: extra environment variables for the process.

    Raises:
        RunBusyError: the run is already running.
        TooManyRunsError: ``max_runs`` runs are already running.
        RunError: a new run whose folder already holds one, or a resume without a checkpoint or dataset.
        CheckpointError: a resume whose checkpoint is damaged or of another architecture than the overrides.
    """
    run_dir = Path(run_dir).resolve()
    workspace = workspace or Workspace.from_env()
    cap = workspace.max_runs if max_runs is None else max_runs
    paths = RunPaths(run_dir)
    root = run_dir.parent
    root.mkdir(parents=True, exist_ok=True)
    workspace.home.mkdir(parents=True, exist_ok=True)  # the run's working directory
    with file_lock(root / ".launch"):
        status = refresh_status(run_dir)
        if status.get("state") == "failed" and _run_alive(status):
            raise RunBusyError(
                f"run {run_dir.name} was marked failed but its process (pid {status.get('pid')}) is still alive; "
                "cancel it first."
            )
        if status.get("state") in ACTIVE_STATES:
            raise RunBusyError(
                f"run {run_dir.name} is already running (pid {status.get('pid')}); wait for it or cancel it."
            )
        running = [r for r in active_runs(root) if r.path != run_dir]
        if len(running) >= cap:
            names = ", ".join(r.name for r in running)
            raise TooManyRunsError(
                f"{len(running)} runs are running ({names}) and this workspace allows {cap} at once (SSN3D_MAX_RUNS); "
                "wait for one to finish or cancel one."
            )
        if resume and not paths.last.is_file():
            raise RunError(
                f"run {run_dir.name} has no checkpoint to resume from ({paths.last}); start a new run."
            )
        # Refused while any process writes the run (a `train --resume` started from a shell, say).
        with acquire_run_lock(run_dir) as lock:
            config_path: Path | None = None
            if resume:
                # checked here, before the status below is written, so that a refused resume changes nothing
                check_resume(load_resume_config(run_dir, overrides), run_dir, cwd=workspace.home)
            else:
                if paths.last.exists() or (paths.metrics.exists() and paths.metrics.stat().st_size > 0):
                    raise RunError(
                        f"run folder {run_dir} already holds a run; resume it or choose another folder."
                    )
                if config is None:
                    raise RunError("a new run needs a config (a YAML path or a Config); pass config=...")
                run_dir.mkdir(parents=True, exist_ok=True)
                if isinstance(config, Config):
                    save_config(config, paths.config)
                    config_path = paths.config
                else:
                    config_path = Path(config).resolve()
                    if not config_path.is_file():
                        raise FileNotFoundError(
                            f"config file {config} does not exist; pass one of the files in configs/."
                        )
            command = _command(run_dir, config_path, overrides, resume, nproc)
            # The lock passes to the child with its descriptor: no moment without a writer's lock.
            proc = spawn_detached(
                command,
                paths.log,
                cwd=workspace.home,
                env={**(env or {}), LOCK_TOKEN_ENV: lock.token},
                pass_fds=(lock.fd,),
            )
            lock.set_holder(proc.pid)
            keep = {
                k: status.get(k)
                for k in ("progress", "step", "total_steps", "epoch")
                if resume and k in status
            }
            new_status = fresh_status(
                "starting",
                proc.pid,
                pgid=proc.pid,
                proc_start=process_start(proc.pid),
                resumed=resume,
                command=command,
                **keep,
            )
            write_status(run_dir, new_status)
    _logger.info("Launched run %s (pid %d): %s", run_dir.name, proc.pid, " ".join(command))
    return new_status


def resume_run(run_dir: str | os.PathLike, overrides: Sequence[str] = (), **kwargs: Any) -> dict[str, Any]:
    """``launch_run(run_dir, resume=True, ...)``: continue from ``last.pt`` with its optimizer, sampler and RNG."""
    return launch_run(run_dir, overrides=overrides, resume=True, **kwargs)


# --------------------------------------------------------------------------- cancelling


def cancel_run(run_dir: str | os.PathLike, *, grace_s: float = GRACE_S, wait: bool = True) -> dict[str, Any]:
    """Stop a running run: SIGTERM now, SIGKILL if it is still alive after ``grace_s`` seconds.

    With SIGTERM the loop finishes its current step, saves ``last.pt`` and writes "cancelled".

    Args:
        run_dir: the run folder.
        grace_s: seconds to wait before SIGKILL.
        wait: block until the process is gone; with False (the app), a detached
            ``python -m ssn3d runs cancel`` process does the waiting and the SIGKILL.

    Returns:
        The status after the call (still "running" when ``wait`` is False and it has not stopped yet).
    """
    run_dir = Path(run_dir)
    status = refresh_status(run_dir)
    hung = status.get("state") == "failed" and _run_alive(status)  # marked stale, process still there
    if status.get("state") not in ACTIVE_STATES and not hung:
        return status
    _signal_run(status, signal.SIGTERM)
    if not wait:
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ssn3d",
                "runs",
                "cancel",
                str(run_dir.resolve()),
                "--grace",
                str(grace_s),
            ],
            env=_child_env(None),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return read_status(run_dir)
    deadline = time.monotonic() + grace_s
    while _run_alive(status) and time.monotonic() < deadline:
        time.sleep(0.2)
    killed = False
    if _run_alive(status):
        _logger.warning("Run %s still alive %.0f s after SIGTERM; sending SIGKILL.", run_dir.name, grace_s)
        _signal_run(status, signal.SIGKILL)
        killed = True
        end = time.monotonic() + 10.0
        while _run_alive(status) and time.monotonic() < end:
            time.sleep(0.1)
    final = read_status(run_dir)
    # a watcher (the app's runs table) may have marked it failed first, having seen the process gone
    if final.get("state") in ACTIVE_STATES or (final.get("state") == "failed" and final.get("stale")):
        how = f"killed after {grace_s:.0f} s without stopping" if killed else "stopped before it could save"
        final = {
            **{k: v for k, v in final.items() if k != "stale"},
            "state": "cancelled",
            "error": f"cancelled: the process was {how}; resume from the last checkpoint.",
        }
        write_status(run_dir, final)
    return final
