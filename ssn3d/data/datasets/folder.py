"""``folder``: a simple layout anyone can make from their own videos (the synthetic generators write it).

::

    ROOT/
      train/<pid>/c<cam>_<tracklet>/<frame>.jpg|png
      query/<pid>/c<cam>_<tracklet>/<frame>.jpg|png     (optional, with gallery)
      gallery/<pid>/c<cam>_<tracklet>/<frame>.jpg|png   (optional, with query)
      keypoints.json                                     (optional ground-truth label store)

``<pid>`` is a whole number (``0007``); a tracklet folder is ``c<cam>_<name>`` with a 1-based camera
(``c1_t00`` is camera 0 in the tracklets); frames sort by the numbers in their names (``f2`` before
``f10``). ``train`` must exist; a train-only folder has empty query and gallery lists.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ssn3d.data.datasets.base import (
    DatasetError,
    VideoReIDDataset,
    coerce_options,
    image_files,
    relabel,
    require_dir,
    visible_entries,
)
from ssn3d.data.tracklet import Tracklet, natural_sorted

_TRACKLET_DIR = re.compile(r"^[cC](\d+)_(.+)$")
SPLITS = ("train", "query", "gallery")


def read_split(split_dir: Path) -> list[Tracklet]:
    """Tracklets of one ``<split>/<pid>/c<cam>_<name>/`` tree, ordered by pid then folder name."""
    tracklets = []
    for pid_entry in visible_entries(split_dir):
        pid_dir = split_dir / pid_entry.name
        if not pid_entry.is_dir() or not pid_entry.name.isdigit():
            raise DatasetError(
                f"{pid_dir} is not a person folder; expected folders named by a whole number (0007)."
            )
        pid = int(pid_entry.name)
        for tr_entry in visible_entries(pid_dir):
            tr_dir = pid_dir / tr_entry.name
            match = _TRACKLET_DIR.match(tr_entry.name)
            if not tr_entry.is_dir() or match is None or int(match.group(1)) < 1:
                raise DatasetError(
                    f"{tr_dir} is not a tracklet folder; expected folders named c<camera>_<name> "
                    "with a 1-based "
                    "camera, e.g. c1_t00."
                )
            frames = natural_sorted(image_files(tr_dir))
            prefix = os.fspath(tr_dir) + os.sep
            tracklets.append(Tracklet(tuple(prefix + f for f in frames), pid, int(match.group(1)) - 1))
    return tracklets


def build_folder(root: str | os.PathLike, **options) -> VideoReIDDataset:
    """Read the ``folder`` layout under ``root`` (no options)."""
    opts = coerce_options("folder", options, {})
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DatasetError(f"dataset root {base} is not a directory; pass the folder that holds train/.")
    base = base.resolve()
    require_dir(base / "train", "train/<pid>/c<cam>_<tracklet>/<frame>.jpg|png (the folder layout)")
    has_query, has_gallery = (base / "query").is_dir(), (base / "gallery").is_dir()
    if has_query != has_gallery:
        missing = "gallery" if has_query else "query"
        raise DatasetError(f"{base / missing} is missing; query/ and gallery/ come together (or neither).")
    train, names = relabel(read_split(base / "train"))
    if not train:
        raise DatasetError(f"{base / 'train'} holds no tracklets; expected <pid>/c<cam>_<tracklet>/ folders.")
    query = read_split(base / "query") if has_query else []
    gallery = read_split(base / "gallery") if has_gallery else []
    return VideoReIDDataset(
        name="folder",
        root=base,
        train=train,
        query=query,
        gallery=gallery,
        options=opts,
        train_pid_names=names,
    )
