"""``mars``: MARS (Zheng et al. 2016), 1,261 identities, 6 cameras, DPM + GMMCP tracklets.

Published layout (torchreid's ``Mars``)::

    ROOT/
      bbox_train/<pid4>/<pid4>C<cam>T<tracklet4>F<frame3>.jpg
      bbox_test/<pid4>/...
      info/train_name.txt          one frame name per line
      info/test_name.txt
      info/tracks_train_info.mat   'track_train_info': rows [start, end, pid, camera]
      info/tracks_test_info.mat    'track_test_info'
      info/query_IDX.mat           'query_IDX': 1-based rows of track_test_info

A track-info row covers the 1-based inclusive range ``start..end`` of the name list. Rows with
pid -1 (junk) are dropped; pid 0 (distractors) is kept as a negative; cameras 1-6 become 0-5.
Every frame of a tracklet must carry the row's pid and camera in its name.

Gallery protocols (option ``gallery``):

* ``query+rest`` (default): the gallery is the query tracklets followed by the rest of the test
  tracklets, 11,310 in all. This is the AP3D lineage's protocol (AP3D, TCLNet, and the papers that
  report against them) and the one most MARS tables use; each query's own copy is removed as
  same-pid-same-camera junk by the evaluation, so it only adds the other queries as candidates.
* ``rest``: the test tracklets not in ``query_IDX`` (9,330), torchreid's protocol.

``min_seq_len`` (default 0) drops shorter tracklets, as torchreid's option of that name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ssn3d.data.datasets.base import (
    DatasetError,
    VideoReIDDataset,
    as_int,
    choice,
    coerce_options,
    locate_root,
    relabel,
    require_dir,
    require_file,
)
from ssn3d.data.tracklet import Tracklet

GALLERY_PROTOCOLS = ("query+rest", "rest")


def load_mat(path: Path, key: str) -> np.ndarray:
    """The array ``key`` of a MATLAB file, or a DatasetError naming the file and the key."""
    from scipy.io import loadmat

    require_file(path, f"a MATLAB file holding {key!r}")
    try:
        data = loadmat(path)
    except Exception as e:  # scipy raises several types for non-MATLAB or v7.3 (HDF5) files
        raise DatasetError(
            f"{path} cannot be read as a MATLAB v5 file ({e}); restore it from the download."
        ) from None
    if key not in data:
        found = ", ".join(k for k in data if not k.startswith("__")) or "nothing"
        raise DatasetError(f"{path} has no array {key!r} (found {found}); restore it from the download.")
    return np.asarray(data[key])


def read_names(path: Path) -> list[str]:
    require_file(path, "one frame name per line")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _int_matrix(arr: np.ndarray, path: Path, cols: int) -> np.ndarray:
    if arr.ndim != 2 or arr.shape[1] != cols or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
        raise DatasetError(
            f"{path} must hold an N x {cols} matrix of whole numbers; found shape {arr.shape}."
        )
    return arr.astype(np.int64)


def tracklets_from_info(
    info: np.ndarray, names: list[str], image_dir: Path, info_path: Path, min_seq_len: int
) -> list[Tracklet | None]:
    """One Tracklet per row of a track-info matrix (None for junk or too-short rows, keeping row numbers)."""
    out: list[Tracklet | None] = []
    prefix = os.fspath(image_dir) + os.sep
    for row, (start, end, pid, cam) in enumerate(info.tolist(), start=1):
        if pid == -1:
            out.append(None)
            continue
        where = f"{info_path} row {row} [{start}, {end}, {pid}, {cam}]"
        if not 1 <= start <= end <= len(names):
            raise DatasetError(
                f"{where}: frames {start}..{end} fall outside the {len(names)} names of the name list."
            )
        if not 1 <= cam <= 6:
            raise DatasetError(f"{where}: camera {cam} is not one of MARS's cameras 1-6.")
        frames = names[start - 1 : end]
        for name in frames:
            if len(name) < 6 or name[4] != "C" or not name[5].isdigit():
                raise DatasetError(
                    f"{where}: frame name {name!r} is not <pid4>C<cam>T<tracklet>F<frame>.jpg."
                )
        pids, cams = {n[:4] for n in frames}, {n[5] for n in frames}
        if len(pids) != 1 or len(cams) != 1:
            raise DatasetError(f"{where}: its frames mix persons {sorted(pids)} or cameras {sorted(cams)}.")
        if int(next(iter(cams))) != cam or (next(iter(pids)).isdigit() and int(next(iter(pids))) != pid):
            raise DatasetError(
                f"{where}: its frames are named {frames[0]!r}; the name list does not match this info file."
            )
        if len(frames) < min_seq_len:
            out.append(None)
            continue
        out.append(Tracklet(tuple(f"{prefix}{n[:4]}{os.sep}{n}" for n in frames), pid, cam - 1))
    for t in out:
        if t is not None and not os.path.isfile(t.paths[0]):
            raise DatasetError(
                f"{t.paths[0]} is missing; the images of {info_path.name} belong in {image_dir}/<pid4>/."
            )
    return out


def build_mars(root: str | os.PathLike, **options) -> VideoReIDDataset:
    """Read MARS under ``root`` (options: ``gallery`` = query+rest | rest, ``min_seq_len``)."""
    opts = coerce_options(
        "mars", options, {"gallery": (choice(*GALLERY_PROTOCOLS), "query+rest"), "min_seq_len": (as_int, 0)}
    )
    base = locate_root(root, "info", ("mars", "MARS"))
    info = base / "info"
    train_dir = require_dir(base / "bbox_train", "the training frames in bbox_train/<pid4>/")
    test_dir = require_dir(base / "bbox_test", "the test frames in bbox_test/<pid4>/")
    train_names = read_names(info / "train_name.txt")
    test_names = read_names(info / "test_name.txt")
    p = info / "tracks_train_info.mat"
    train_info = _int_matrix(load_mat(p, "track_train_info"), p, 4)
    p = info / "tracks_test_info.mat"
    test_info = _int_matrix(load_mat(p, "track_test_info"), p, 4)
    q_path = info / "query_IDX.mat"
    raw_idx = load_mat(q_path, "query_IDX").ravel()
    if raw_idx.size == 0 or np.any(raw_idx != np.round(raw_idx)):
        raise DatasetError(f"{q_path} must hold whole-number row indices into tracks_test_info.mat.")
    query_rows = raw_idx.astype(np.int64) - 1  # 1-based MATLAB rows -> 0-based
    if query_rows.min() < 0 or query_rows.max() >= len(test_info):
        raise DatasetError(
            f"{q_path} points at rows {query_rows.min() + 1}..{query_rows.max() + 1}, "
            f"but tracks_test_info.mat has {len(test_info)} rows."
        )

    train = [
        t
        for t in tracklets_from_info(
            train_info, train_names, train_dir, info / "tracks_train_info.mat", opts["min_seq_len"]
        )
        if t is not None
    ]
    test = tracklets_from_info(
        test_info, test_names, test_dir, info / "tracks_test_info.mat", opts["min_seq_len"]
    )
    is_query = np.zeros(len(test), dtype=bool)
    is_query[query_rows] = True
    query = [test[i] for i in query_rows.tolist() if test[i] is not None]
    rest = [t for i, t in enumerate(test) if t is not None and not is_query[i]]
    gallery = query + rest if opts["gallery"] == "query+rest" else rest
    train, names = relabel(train)
    return VideoReIDDataset(
        name="mars", root=base, train=train, query=query, gallery=gallery, options=opts, train_pid_names=names
    )
