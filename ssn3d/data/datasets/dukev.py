"""``dukev``: DukeMTMC-VideoReID (Wu et al. 2018), 8 cameras, tracklets sampled at 12 frames/s.

Published layout (torchreid's ``DukeMTMCVidReID``)::

    ROOT/
      train/<pid4>/<tracklet4>/<pid4>C<cam>F<frame4>X<x>.jpg       original frame names
      query/<pid4>/<tracklet4>/<pid4>_C<cam>_F<frame4>_X<x>.jpg    names with underscores (newer copies)
      gallery/...

Both frame-name styles are read. Unlike torchreid (which looks up F0001..F<count> and drops, with
a warning, any frame whose number falls outside that range), every frame of a tracklet folder is
kept, sorted by its frame number; a file that is not such a frame is an error, never a silent drop.
All frames of a tracklet must name the folder's person and one camera. ``min_seq_len`` (default 0)
drops shorter tracklets, as torchreid's option of that name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ssn3d.data.datasets.base import (
    DatasetError,
    VideoReIDDataset,
    as_int,
    coerce_options,
    image_files,
    locate_root,
    relabel,
    require_dir,
    visible_entries,
)
from ssn3d.data.tracklet import Tracklet

FRAME_NAME = re.compile(r"^(\d+)_?C(\d+)_?F(\d+)_?X(\d+)\.jpg$", re.IGNORECASE)


def read_tracklet(folder: Path, pid: int) -> Tracklet:
    """One tracklet folder: frames sorted by frame number, camera from the names."""
    parsed = []
    for name in image_files(folder, (".jpg",)):
        m = FRAME_NAME.match(name)
        if m is None:
            raise DatasetError(
                f"{folder / name} is not a DukeMTMC-VideoReID frame; expected 0001C6F0099X30823.jpg or "
                "0001_C6_F0099_X30823.jpg."
            )
        if int(m.group(1)) != pid:
            raise DatasetError(
                f"{folder / name} names person {m.group(1)} but lies in the folder of person {pid}."
            )
        parsed.append((int(m.group(3)), name, int(m.group(2))))
    parsed.sort()
    cams = {c for _, _, c in parsed}
    if len(cams) != 1:
        raise DatasetError(f"{folder} mixes cameras {sorted(cams)}; a tracklet comes from one camera.")
    cam = cams.pop()
    if cam < 1:
        raise DatasetError(f"{folder / parsed[0][1]} has camera {cam}; cameras are numbered from 1.")
    prefix = os.fspath(folder) + os.sep
    return Tracklet(tuple(prefix + n for _, n, _ in parsed), pid, cam - 1)


def read_split(split_dir: Path, min_seq_len: int) -> list[Tracklet]:
    out = []
    for pid_entry in visible_entries(split_dir):
        pid_dir = split_dir / pid_entry.name
        if not pid_entry.is_dir() or not pid_entry.name.isdigit():
            raise DatasetError(
                f"{pid_dir} is not a person folder; expected folders named by a 4-digit id (0001)."
            )
        for tr_entry in visible_entries(pid_dir):
            if not tr_entry.is_dir():
                raise DatasetError(
                    f"{pid_dir / tr_entry.name} is not a tracklet folder; expected <pid>/<tracklet>/*.jpg."
                )
            t = read_tracklet(pid_dir / tr_entry.name, int(pid_entry.name))
            if len(t.paths) >= min_seq_len:
                out.append(t)
    return out


def build_dukev(root: str | os.PathLike, **options) -> VideoReIDDataset:
    """Read DukeMTMC-VideoReID under ``root`` (option ``min_seq_len``)."""
    opts = coerce_options("dukev", options, {"min_seq_len": (as_int, 0)})
    base = locate_root(root, "query", ("DukeMTMC-VideoReID", "dukemtmc-vidreid/DukeMTMC-VideoReID"))
    splits = {
        s: read_split(
            require_dir(base / s, f"{s}/<pid>/<tracklet>/*.jpg (DukeMTMC-VideoReID)"), opts["min_seq_len"]
        )
        for s in ("train", "query", "gallery")
    }
    train, names = relabel(splits["train"])
    return VideoReIDDataset(
        name="dukev",
        root=base,
        train=train,
        query=splits["query"],
        gallery=splits["gallery"],
        options=opts,
        train_pid_names=names,
    )
