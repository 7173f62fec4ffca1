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

from ssn3d.config import ConfigError, load_config

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


def _run(args: argparse.Namespace) -> int:
    from ssn3d.engine.distributed import env_dist_info
    from ssn3d.engine.rundir import RunPaths
    from ssn3d.engine.runs import new_run_dir
    from ssn3d.engine.train import main
    from ssn3d.workspace import Workspace

    config, overrides = split_args(args.items)
    info = env_dist_info()
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
