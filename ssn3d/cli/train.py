"""``python -m ssn3d train CONFIG.yaml [key=value ...] [--run-dir DIR] [--resume DIR]``.

The same command runs on one process or under ``torchrun --nproc_per_node=G`` (DistributedDataParallel).
A progress bar on a terminal, plain lines in the run's ``train.log``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ssn3d.config import Config, ConfigError, load_config

if TYPE_CHECKING:  # torch is imported only when a command runs
    from ssn3d.engine.distributed import DistInfo
    from ssn3d.runs.folder import RunPaths

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def split_args(items: list[str]) -> tuple[str | None, list[str]]:
    """The config path (the first item without '=') and the key=value overrides."""
    config, overrides = None, []
    for item in items:
        if "=" in item and not item.endswith((".yaml", ".yml")):
            overrides.append(item)
        elif config is None:
            config = item
        else:
            raise ConfigError(
                f"two config files given ({config}, {item}); pass one, then key=value overrides."
            )
    return config, overrides


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), path.stat()
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _attach_log(log_path: Path) -> None:
    """Log to the run's train.log too, unless stderr already goes there (a launched run)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.touch()
    if _same_file(2, log_path):
        return
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FORMAT))
    logging.getLogger().addHandler(handler)


class _Rank:
    """This process's rank from torchrun's environment, read before torch is imported (fast errors)."""

    def __init__(self, rank: int) -> None:
        self.is_main = rank == 0


def _prepare(args: argparse.Namespace, info: DistInfo | _Rank) -> tuple[Config, RunPaths]:
    """The resolved Config and the run's paths, or a one-sentence error."""
    from ssn3d.runs.folder import RunPaths, new_run_dir
    from ssn3d.serving.workspace import Workspace

    config, overrides = split_args(args.items)
    if args.resume:
        if config is not None or args.run_dir:
            raise ConfigError(
                "--resume DIR continues a run with its own config; drop the config file and --run-dir."
            )
        run_dir = Path(args.resume)
        paths = RunPaths(run_dir)
        if not paths.last.is_file():
            raise FileNotFoundError(
                f"{paths.last} does not exist; --resume needs a run folder with a checkpoint."
            )
        cfg = load_config(paths.config, overrides)
    else:
        if config is None:
            raise ConfigError(
                "no config given; pass a YAML file, e.g. python -m ssn3d train configs/walkers-tiny.yaml."
            )
        cfg = load_config(config, overrides)
        run_dir = (
            Path(args.run_dir) if args.run_dir else new_run_dir(Workspace.from_env().runs, Path(config).stem)
        )
        paths = RunPaths(run_dir)
        if info.is_main and (
            paths.last.exists() or (paths.metrics.exists() and paths.metrics.stat().st_size)
        ):
            raise ConfigError(
                f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick a new --run-dir."
            )
    return cfg, paths


def _report_launch_failure(args: argparse.Namespace, info: DistInfo | _Rank, error: Exception) -> None:
    """A launched run that cannot start says why in its status file (the app shows it), not only in its log."""
    from ssn3d.runs.process import LAUNCHED_ENV
    from ssn3d.runs.status import read_status, write_status

    run_dir = args.resume or args.run_dir
    if not (run_dir and info.is_main and os.environ.get(LAUNCHED_ENV) == "1"):
        return
    status = read_status(run_dir)
    if status.get("state") in ("starting", "running"):
        write_status(run_dir, {**status, "state": "failed", "error": str(error), "traceback": "train.log"})


def _run(args: argparse.Namespace) -> int:
    info = _Rank(int(os.environ.get("RANK", "0") or 0))  # enough to check arguments, without torch
    try:
        cfg, paths = _prepare(args, info)
    except (ValueError, FileNotFoundError) as e:
        _report_launch_failure(args, info, e)
        raise
    from ssn3d.engine.distributed import env_dist_info  # imports torch
    from ssn3d.engine.train import main

    info = env_dist_info()
    run_dir = paths.root
    if info.is_main:
        _attach_log(paths.log)
    else:
        logging.getLogger().setLevel(logging.WARNING)  # one voice: rank 0's
    bar = None
    if info.is_main and sys.stderr.isatty() and not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(desc=run_dir.name, unit="step", dynamic_ncols=True)

    def progress(p: dict) -> None:
        bar.total = p["total"]
        bar.n = p["step"]
        bar.set_postfix(epoch=p["epoch"], loss=f"{p['loss']:.4f}", refresh=False)
        bar.refresh()

    if bar is not None:
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm():
            state = main(cfg, run_dir, resume=bool(args.resume), progress=progress)
        bar.close()
    else:
        state = main(cfg, run_dir, resume=bool(args.resume))
    if info.is_main:
        print(f"{state}: {run_dir}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model into a run folder (also under torchrun for several GPUs)",
        description="Train SSN3D (or a baseline) from a YAML config plus key=value overrides.",
    )
    p.add_argument(
        "items", nargs="*", metavar="CONFIG.yaml [key=value ...]", help="config file, then overrides"
    )
    p.add_argument("--run-dir", help="the run folder (default: $SSN3D_HOME/runs/<config>-<time>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    p.set_defaults(func=_run)
