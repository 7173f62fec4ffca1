"""Path confinement: a typed path is used only if it resolves inside the folders the operator allows.

Whoever reaches the app's port can type a dataset root, a checkpoint or an export folder; the CLI
takes the same from a command line that may be assembled by the app. ``resolve_inside(path, roots)``
accepts such a path only if it resolves (``..``, symbolic links and absolute paths included) inside
one of the allowed folders (``Workspace.allowed_roots``), and refuses it otherwise with an
``UnsafePathError`` whose message is one sentence naming the path and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path


class UnsafePathError(ValueError):
    """A path that leads outside the folders the operator allows."""


def _roots(roots: Iterable[str | os.PathLike]) -> list[Path]:
    return [Path(r).expanduser().resolve() for r in roots]


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


# Long on purpose: long only by its docstring (what is refused and why); the body is one check sequence.
def resolve_inside(
    path: str | os.PathLike,
    roots: Iterable[str | os.PathLike],
    *,
    must_exist: bool = False,
    what: str = "path",
) -> Path:
    """The resolved path, if it lies inside one of ``roots``; refuse it otherwise.

    A relative path is taken relative to the first root. ``..`` components are refused outright
    (even when they would stay inside), and symbolic links are followed before the check, so a
    link inside a root that points elsewhere is refused too.

    Args:
        path: what the user typed or the app received.
        roots: the allowed folders (e.g. ``Workspace.allowed_roots``); they need not exist yet.
        must_exist: raise ``FileNotFoundError`` when the resolved path does not exist.
        what: how the message calls the path ("dataset root", "checkpoint", ...).

    Returns:
        The absolute, symlink-free path.
    """
    text = os.fspath(path)
    allowed = _roots(roots)
    where = ", ".join(str(r) for r in allowed)
    if not allowed:
        raise UnsafePathError(
            f"{what} {text!r} cannot be used because no allowed folders are configured; set SSN3D_HOME."
        )
    if not text.strip() or "\x00" in text:
        raise UnsafePathError(f"{what} {text!r} is not a usable path; type a path inside {where}.")
    try:
        candidate = Path(text).expanduser()
    except RuntimeError:  # "~someone" with no such user
        raise UnsafePathError(
            f"{what} {text!r} names an unknown home folder; type a path inside {where}."
        ) from None
    if ".." in candidate.parts:
        raise UnsafePathError(
            f"{what} {text!r} contains '..'; type the path inside {where} without going up."
        )
    if not candidate.is_absolute():
        candidate = allowed[0] / candidate
    try:
        resolved = candidate.resolve()
    except (RuntimeError, OSError) as e:  # a symbolic link loop, a name too long for the system
        raise UnsafePathError(
            f"{what} {text!r} cannot be resolved ({type(e).__name__}); type another path."
        ) from None
    if not _inside(resolved, allowed):
        if _inside(Path(os.path.normpath(candidate)), allowed):
            raise UnsafePathError(
                f"{what} {text!r} leads through a symbolic link to {resolved}, outside the allowed folders ({where}); "
                "the operator can add that folder to SSN3D_DATA_ROOTS."
            )
        raise UnsafePathError(
            f"{what} {text!r} lies outside the allowed folders ({where}); choose a path inside them "
            "or ask the operator to add its folder to SSN3D_DATA_ROOTS."
        )
    if must_exist and not resolved.exists():
        raise FileNotFoundError(f"{what} {text!r} does not exist under {where}; check the spelling.")
    return resolved


def is_inside(path: str | os.PathLike, roots: Iterable[str | os.PathLike]) -> bool:
    """True when ``resolve_inside`` would accept ``path``."""
    try:
        resolve_inside(path, roots)
    except UnsafePathError:
        return False
    return True
