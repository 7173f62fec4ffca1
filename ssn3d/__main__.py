"""``python -m ssn3d <command>``: every module in ``ssn3d.cli`` adds one command.

A command module defines ``register(subparsers)``, which adds its parser and sets
``func=callable(args) -> int``. Errors that a user can fix (bad config, bad dataset layout, bad
checkpoint) are ``ValueError``/``FileNotFoundError`` subclasses; they print one line, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

import ssn3d.cli
from ssn3d.serving.redact import install_log_redaction


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ssn3d", description="SSN3D Studio: part-aligned video person re-identification."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(ssn3d.cli.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"ssn3d.cli.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_log_redaction()  # run logs are this process's output: no password or token reaches them
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
