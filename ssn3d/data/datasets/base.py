"""What every video re-identification dataset loader returns, and the helpers they share.

A loader reads a dataset's published layout, checks it, and returns a ``VideoReIDDataset`` with
``train``/``query``/``gallery`` lists of ``Tracklet``. Conventions (torchreid's, unless noted):

* training ids are relabeled to 0..n-1 (``train_pid_names`` maps them back); query and gallery keep
  the dataset's own person numbers, so a retrieval viewer can show them;
* cameras are 0-based;
* nothing is downloaded and nothing is written into the dataset folder.

Loaders accept their options as strings too (from the CLI and the app) and coerce them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ssn3d.data.tracklet import Tracklet, split_stats
from ssn3d.labels.frames import frame_key

IMAGE_EXTS = (".jpg", ".jpeg", ".png")


class DatasetError(ValueError):
    """A dataset folder that does not follow its layout; the message names the file and what was expected."""


class VideoReIDDataset:
    """Train, query and gallery tracklets of one video re-identification dataset.

    Args:
        name: the loader's name (mars, ilidsvid, dukev, prid2011, folder).
        root: the dataset folder; every frame path lies under it.
        train: training tracklets (pids relabeled 0..n-1).
        query: query tracklets.
        gallery: gallery tracklets.
        options: the coerced loader options, for display and for rebuilding the dataset.
        train_pid_names: training label -> the dataset's own person number.
    """

    def __init__(
        self,
        *,
        name: str,
        root: str | os.PathLike,
        train: list[Tracklet],
        query: list[Tracklet],
        gallery: list[Tracklet],
        options: dict[str, Any] | None = None,
        train_pid_names: dict[int, int] | None = None,
    ) -> None:
        self.name = name
        self.root = Path(root)
        self.train = train
        self.query = query
        self.gallery = gallery
        self.options = dict(options or {})
        self.train_pid_names = dict(train_pid_names or {})

    @property
    def dataset_id(self) -> str:
        """A stable, filesystem-safe id, e.g. ``folder-demo-walkers``: names the label store file."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.root.name.lower()).strip("-") or "root"
        return f"{self.name}-{slug}"

    @property
    def ground_truth_path(self) -> Path | None:
        """``ROOT/keypoints.json`` (ground-truth keypoints written by the synthetic generators) if present."""
        path = self.root / "keypoints.json"
        return path if path.is_file() else None

    def relpath(self, frame_path: str | os.PathLike) -> str:
        """The posix path of a frame relative to ``root``: the key of the label store."""
        try:
            return frame_key(frame_path, self.root)
        except ValueError as e:
            raise DatasetError(str(e)) from None

    def splits(self) -> dict[str, list[Tracklet]]:
        return {"train": self.train, "query": self.query, "gallery": self.gallery}

    def all_frames(self) -> list[str]:
        """Every distinct frame path of the dataset, in split order (a frame listed twice counts once)."""
        seen: dict[str, None] = {}
        for tracklets in self.splits().values():
            for t in tracklets:
                seen.update(dict.fromkeys(t.paths))
        return list(seen)

    def summary(self) -> str:
        """A small table: ids, tracklets, frames and frames per tracklet for each split."""
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        lines = [
            f"{self.name} ({self.dataset_id}){f'  [{opts}]' if opts else ''}",
            f"  {'split':8s} {'ids':>6s} {'tracklets':>10s} {'frames':>10s}   frames/tracklet min/mean/max",
        ]
        for split, tracklets in self.splits().items():
            s = split_stats(tracklets)
            lines.append(
                f"  {split:8s} {s['ids']:6d} {s['tracklets']:10d} {s['frames']:10d}"
                f"   {s['min_len']}/{s['mean_len']:.1f}/{s['max_len']}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"VideoReIDDataset(name={self.name!r}, root={str(self.root)!r}, train={len(self.train)}, "
            f"query={len(self.query)}, gallery={len(self.gallery)})"
        )


# --------------------------------------------------------------------------- options


def coerce_options(
    name: str, given: dict[str, Any], spec: dict[str, tuple[Callable[[Any], Any], Any]]
) -> dict:
    """Fill defaults and coerce ``given`` options (maybe strings); ``spec[key] = (convert, default)``."""
    unknown = sorted(set(given) - set(spec))
    if unknown:
        known = ", ".join(sorted(spec)) or "none"
        raise DatasetError(f"dataset {name} has no option {unknown[0]!r}; its options are: {known}.")
    out = {}
    for key, (convert, default) in spec.items():
        value = given.get(key, default)
        try:
            out[key] = convert(value)
        except (TypeError, ValueError) as e:
            raise DatasetError(f"dataset {name}: option {key}={value!r} is invalid ({e}).") from None
    return out


def as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("expected a whole number")
    return int(str(value).strip()) if isinstance(value, str) else int(value)


def choice(*allowed: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = str(value).strip()
        if text not in allowed:
            raise ValueError(f"choose one of: {', '.join(allowed)}")
        return text

    return convert


# --------------------------------------------------------------------------- layout helpers


def locate_root(root: str | os.PathLike, marker: str, subdirs: Sequence[str]) -> Path:
    """The dataset folder: ``root`` itself if ``root/marker`` exists, else ``root/<subdir>`` that has it.

    torchreid puts each dataset in a named subfolder of its data root (``mars/``, ``ilids-vid/``...);
    both the dataset folder and that parent are accepted.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DatasetError(f"dataset root {base} is not a directory; pass the folder that holds {marker}.")
    base = base.resolve()
    for candidate in (base, *(base / s for s in subdirs)):
        if (candidate / marker).exists():
            return candidate
    raise DatasetError(f"{base / marker} is missing; expected the dataset's published layout under {base}.")


def require_dir(path: Path, expected: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path} is missing; expected {expected}.")
    return path


def require_file(path: Path, expected: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path} is missing; expected {expected}.")
    return path


def visible_entries(folder: Path) -> list[os.DirEntry]:
    """Entries of ``folder`` except hidden ones (``.DS_Store``, ``.cache``...), sorted by name."""
    with os.scandir(folder) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def image_files(folder: Path, exts: Iterable[str] = IMAGE_EXTS) -> list[str]:
    """Names of the frames in ``folder``; any other visible file is an error (no silent drops)."""
    exts = tuple(exts)
    names = []
    for entry in visible_entries(folder):
        if entry.is_dir() or not entry.name.lower().endswith(exts):
            raise DatasetError(
                f"{folder / entry.name} is not a frame; a tracklet folder holds only {'/'.join(exts)} images."
            )
        names.append(entry.name)
    if not names:
        raise DatasetError(f"{folder} holds no frames; expected {'/'.join(exts)} images.")
    return names


def relabel(tracklets: list[Tracklet]) -> tuple[list[Tracklet], dict[int, int]]:
    """Training ids -> 0..n-1 in sorted order of the original ids (torchreid's ``relabel=True``)."""
    pids = sorted({t.pid for t in tracklets})
    label = {pid: i for i, pid in enumerate(pids)}
    return [t._replace(pid=label[t.pid]) for t in tracklets], {i: pid for pid, i in label.items()}
