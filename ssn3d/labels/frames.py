"""The frames of a dataset as the label store names them: the frame key, and matching foreign names to it.

A frame's key is its POSIX path relative to the dataset root (``frame_key``): the label store, the
training loader, the evaluation and the importers all name a frame this way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image

from ssn3d.labels.importing import InterchangeError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def frame_key(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """The label-store key of the frame at ``path``: its POSIX path relative to the dataset ``root``.

    A path spelled under ``root`` is cut textually (the common case, no disk access); any other
    spelling (a link, ``..``) is resolved first.

    Raises:
        ValueError: ``path`` does not lie under ``root``.
    """
    text, prefix = os.fspath(path), os.fspath(root).rstrip(os.sep) + os.sep
    if text.startswith(prefix):
        rel = text[len(prefix) :]
        return rel.replace(os.sep, "/") if os.sep != "/" else rel
    try:
        return Path(text).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        raise ValueError(f"{text} does not lie under the dataset root {os.fspath(root)}.") from None


def _norm_name(name: str) -> PurePosixPath:
    return PurePosixPath(*[p for p in name.replace("\\", "/").split("/") if p not in ("", ".", "..")])


class FrameIndex:
    """The frames of one dataset (paths relative to its root), to match names found in foreign files.

    A name matches the frame with the same stem (``0001C1T0001F001`` in ``.../0001C1T0001F001.jpg``
    or ``0001C1T0001F001_keypoints.json``); among several, the one sharing the most trailing folders
    wins, and a tie is reported as ambiguous rather than guessed.

    Args:
        frames: relative POSIX paths, exactly the keys the label store uses.
        root: the dataset root, to read image sizes for export (optional).
    """

    def __init__(self, frames: Iterable[str], root: str | os.PathLike | None = None) -> None:
        self.root = None if root is None else Path(root)
        self.frames = sorted(set(frames))
        self._frame_set = set(self.frames)
        self._by_stem: dict[str, list[str]] = {}
        for f in self.frames:
            self._by_stem.setdefault(PurePosixPath(f).stem, []).append(f)

    @classmethod
    def from_root(cls, root: str | os.PathLike) -> FrameIndex:
        """Every image file under ``root`` (``.jpg``, ``.png``, ...)."""
        root = Path(root)
        if not root.is_dir():
            raise InterchangeError(
                f"dataset root {root} is not a folder; choose the folder that holds the frames."
            )
        frames = [
            frame_key(Path(d) / n, root)
            for d, _, names in os.walk(root)
            for n in names
            if n.lower().endswith(IMAGE_SUFFIXES)
        ]
        return cls(frames, root)

    @classmethod
    def from_tracklets(cls, tracklets: Iterable[Any], root: str | os.PathLike) -> FrameIndex:
        """The frames of ``(paths, pid, camid)`` tracklets, relative to ``root``."""
        root = Path(root).resolve()
        return cls((frame_key(Path(p).resolve(), root) for t in tracklets for p in t[0]), root)

    def __len__(self) -> int:
        return len(self.frames)

    def match(self, name: str) -> tuple[str | None, str]:
        """(frame, "") for a name found in a foreign file, or (None, why it matches none)."""
        path = _norm_name(name)
        stem = path.stem.removesuffix("_keypoints") if path.suffix.lower() == ".json" else path.stem
        candidates = self._by_stem.get(stem, [])
        if len(candidates) == 1:
            return candidates[0], ""
        if not candidates:
            return None, "no frame of that name in the dataset"
        folders = path.parts[:-1]

        def shared(frame: str) -> int:
            theirs, n = PurePosixPath(frame).parts[:-1], 0
            while n < min(len(folders), len(theirs)) and folders[-1 - n] == theirs[-1 - n]:
                n += 1
            return n

        scores = sorted(((shared(f), f) for f in candidates), reverse=True)
        if scores[0][0] > scores[1][0]:
            return scores[0][1], ""
        return None, "ambiguous: several frames have that name; give its folders too"

    def size(self, frame: str) -> tuple[int, int] | None:
        """(width, height) of a frame read from its header, or None when unknown.

        Only the index's own frames are opened: a label store edited by hand to name
        ``../../elsewhere`` gets no size rather than a peek outside the dataset.
        """
        if self.root is None or frame not in self._frame_set:
            return None
        try:
            with Image.open(self.root / frame) as img:
                return img.size
        except Exception:  # a missing or damaged frame has no size; the export omits it
            return None


def as_frame_index(dataset: FrameIndex | str | os.PathLike | Iterable[str]) -> FrameIndex:
    """``dataset`` as a ``FrameIndex``: an index as is, a root folder scanned, frame keys listed."""
    if isinstance(dataset, FrameIndex):
        return dataset
    if isinstance(dataset, str | os.PathLike):
        return FrameIndex.from_root(dataset)
    return FrameIndex(dataset)
