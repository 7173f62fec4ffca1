"""``python -m ssn3d runs list|status|launch|resume|cancel``: the app's run management, from a shell."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ssn3d.serving.workspace import Workspace


def _root(args: argparse.Namespace) -> Path:
    return Path(args.root) if args.root else Workspace.from_env().runs


def _list(args: argparse.Namespace) -> int:
    from ssn3d.runs.status import list_runs

    runs = list_runs(_root(args))
    if not runs:
        print(f"no runs in {_root(args)}")
    for r in runs:
        s = r.status
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(s["started"])) if s.get("started") else "-"
        progress = f"{100 * float(s.get('progress') or 0):5.1f}%"
        best = f"mAP {100 * s['best_map']:.1f}" if s.get("best_map") is not None else ""
        print(f"{r.name:40s} {s.get('state', '?'):10s} {progress} {started}  {best}")
    return 0


def _existing_run(run: str) -> Path:
    """``run`` when it is a run folder (one with a status or config file), else a one-sentence error."""
    from ssn3d.runs.folder import RunPaths

    paths = RunPaths(Path(run))
    if not paths.root.is_dir():
        raise FileNotFoundError(
            f"run folder {run} does not exist; list the runs with `python -m ssn3d runs list`."
        )
    if not (paths.status.exists() or paths.config.exists()):
        raise FileNotFoundError(f"{run} holds no run (no status.json or config.yaml); pass a run folder.")
    return paths.root


def _status(args: argparse.Namespace) -> int:
    from ssn3d.runs.status import refresh_status

    _existing_run(args.run)
    print(json.dumps(refresh_status(args.run), indent=1, sort_keys=True))
    return 0


def _launch(args: argparse.Namespace) -> int:
    from ssn3d.cli.train import split_args
    from ssn3d.config import load_config
    from ssn3d.runs.folder import new_run_dir
    from ssn3d.runs.launch import launch_run

    config, overrides = split_args(args.items)
    if config is None:
        raise ValueError("no config given; pass a YAML file, e.g. configs/walkers-tiny.yaml.")
    load_config(config, overrides)  # a malformed file is refused here, not in the launched process's log
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(_root(args), args.name or Path(config).stem)
    status = launch_run(run_dir, config=config, overrides=overrides, nproc=args.nproc)
    print(f"launched {run_dir} (pid {status['pid']}); follow it with: python -m ssn3d runs status {run_dir}")
    return 0


def _resume(args: argparse.Namespace) -> int:
    from ssn3d.runs.launch import resume_run

    status = resume_run(args.run, args.overrides, nproc=args.nproc)
    print(f"resumed {args.run} (pid {status['pid']})")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from ssn3d.runs.launch import cancel_run

    _existing_run(args.run)
    status = cancel_run(args.run, grace_s=args.grace, wait=not args.no_wait)
    print(f"{args.run}: {status.get('state')}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list, launch, resume and cancel background training runs")
    p.add_argument("--root", help="the runs folder (default: $SSN3D_HOME/runs)")
    cmds = p.add_subparsers(dest="runs_command", metavar="COMMAND", required=True)
    c = cmds.add_parser("list", help="every run with its state (stale runs are marked failed)")
    c.set_defaults(func=_list)
    c = cmds.add_parser("status", help="one run's status.json")
    c.add_argument("run", help="the run folder")
    c.set_defaults(func=_status)
    c = cmds.add_parser("launch", help="start a run in the background (detached)")
    c.add_argument("items", nargs="*", metavar="CONFIG.yaml [key=value ...]")
    c.add_argument("--name", help="run name (default: the config's name); a time stamp is added")
    c.add_argument("--run-dir", help="the run folder (default: ROOT/<name>-<time>)")
    c.add_argument("--nproc", type=int, default=1, help="processes (GPUs); more than 1 runs under torchrun")
    c.set_defaults(func=_launch)
    c = cmds.add_parser("resume", help="continue a stopped run in the background")
    c.add_argument("run", help="the run folder")
    c.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.epochs=200")
    c.add_argument("--nproc", type=int, default=1)
    c.set_defaults(func=_resume)
    c = cmds.add_parser("cancel", help="SIGTERM, then SIGKILL after a grace period")
    c.add_argument("run", help="the run folder")
    c.add_argument("--grace", type=float, default=30.0, help="seconds before SIGKILL")
    c.add_argument(
        "--no-wait", action="store_true", help="return at once; a detached process finishes the job"
    )
    c.set_defaults(func=_cancel)
