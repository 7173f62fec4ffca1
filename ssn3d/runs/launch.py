"""Training runs as background processes: launch, resume and cancel, refusing what would clash.

Training a video re-id model as the paper does (150 epochs, "Implementation Details") takes hours:
longer than a browser tab stays open. So a run is launched as a detached process of the same CLI
(``python -m ssn3d train``) in its own session (``ssn3d.runs.process``), writing to its folder
(``ssn3d.runs.folder``); the app keeps no training state in memory and reads the folder again on
every rerun.

* ``launch_run`` / ``resume_run``: start (or continue from ``last.pt``) under a lock that a double
  click or a second browser tab cannot pass, refusing a run that is already running and more
  than ``Workspace.max_runs`` runs at once.
* ``start_detached``: the last step of every launch (a run's, a study job's): the process, its
  inherited writer's lock and its "starting" status.
* ``cancel_run``: SIGTERM to the run's process group (the loop finishes its step, saves ``last``
  and marks itself cancelled), SIGKILL after a grace period.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssn3d.config import Config, save_config
from ssn3d.io import file_lock
from ssn3d.runs.folder import RunBusyError, RunError, RunPaths
from ssn3d.runs.lock import LOCK_TOKEN_ENV, RunLock, acquire_run_lock
from ssn3d.runs.process import child_env, process_start, run_alive, signal_run, spawn_detached
from ssn3d.runs.status import (
    ACTIVE_STATES,
    active_runs,
    fresh_status,
    read_status,
    refresh_status,
    status_lock,
    write_status,
)
from ssn3d.serving.workspace import Workspace

_logger = logging.getLogger(__name__)

GRACE_S = 30.0  # a training step on a big batch, plus saving a checkpoint, fits well inside


class TooManyRunsError(RunError):
    """The workspace's cap on concurrent runs is reached."""


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


# Long on purpose: every check and the start happen under the launch lock and the run lock, so they stay together.
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
        if status.get("state") == "failed" and run_alive(status):
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
            keep = {
                k: status.get(k)
                for k in ("progress", "step", "total_steps", "epoch")
                if resume and k in status
            }
            new_status = start_detached(
                run_dir, command, lock, log=paths.log, cwd=workspace.home, env=env, resumed=resume, **keep
            )
    _logger.info("Launched run %s (pid %d): %s", run_dir.name, new_status["pid"], " ".join(command))
    return new_status


def start_detached(
    run_dir: Path,
    command: Sequence[str],
    lock: RunLock,
    *,
    log: Path,
    cwd: Path,
    env: dict[str, str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Start ``command`` detached as the writer of ``run_dir`` and write its "starting" status.

    The caller holds ``lock`` (``acquire_run_lock``); it passes to the child with its descriptor, so
    there is no moment without a writer's lock, and the child finds it held for it through
    ``SSN3D_RUN_LOCK_TOKEN``.

    Args:
        run_dir: the run folder.
        command: the process to start.
        lock: the run's lock, held by this process.
        log: the file that receives the process's stdout and stderr.
        cwd: the process's working directory.
        env: extra environment variables for the process.
        **fields: more status fields (e.g. ``resumed``, a study job's ``kind``).

    Returns:
        The status written.
    """
    proc = spawn_detached(
        command, log, cwd=cwd, env={**(env or {}), LOCK_TOKEN_ENV: lock.token}, pass_fds=(lock.fd,)
    )
    lock.set_holder(proc.pid)
    status = fresh_status(
        "starting",
        proc.pid,
        pgid=proc.pid,
        proc_start=process_start(proc.pid),
        command=list(command),
        **fields,
    )
    write_status(run_dir, status)
    return status


def resume_run(run_dir: str | os.PathLike, overrides: Sequence[str] = (), **kwargs: Any) -> dict[str, Any]:
    """``launch_run(run_dir, resume=True, ...)``: continue from ``last.pt`` with its optimizer, sampler and RNG."""
    return launch_run(run_dir, overrides=overrides, resume=True, **kwargs)


# --------------------------------------------------------------------------- cancelling


# Long on purpose: long only by its docstring; the body is signal, wait, escalate, record.
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
    hung = status.get("state") == "failed" and run_alive(status)  # marked stale, process still there
    if status.get("state") not in ACTIVE_STATES and not hung:
        return status
    signal_run(status, signal.SIGTERM)
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
            env=child_env(None),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return read_status(run_dir)
    deadline = time.monotonic() + grace_s
    while run_alive(status) and time.monotonic() < deadline:
        time.sleep(0.2)
    killed = False
    if run_alive(status):
        _logger.warning("Run %s still alive %.0f s after SIGTERM; sending SIGKILL.", run_dir.name, grace_s)
        signal_run(status, signal.SIGKILL)
        killed = True
        end = time.monotonic() + 10.0
        while run_alive(status) and time.monotonic() < end:
            time.sleep(0.1)
    with status_lock(run_dir):  # a watcher's "failed" lands before this read or not at all
        final = read_status(run_dir)
        # a watcher (the app's runs table) may have marked it failed first, having seen the process gone
        if final.get("state") in ACTIVE_STATES or (final.get("state") == "failed" and final.get("stale")):
            how = (
                f"killed after {grace_s:.0f} s without stopping" if killed else "stopped before it could save"
            )
            final = {
                **{k: v for k, v in final.items() if k != "stale"},
                "state": "cancelled",
                "error": f"cancelled: the process was {how}; resume from the last checkpoint.",
            }
            write_status(run_dir, final)
    return final
