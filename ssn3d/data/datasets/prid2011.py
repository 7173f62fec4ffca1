"""``prid2011``: PRID-2011 (Hirzer et al. 2011), multi-shot: people seen by camera A and camera B.

Published layout (torchreid's ``PRID2011``)::

    ROOT/
      prid_2011/multi_shot/cam_a/person_XXXX/XXXX.png
      prid_2011/multi_shot/cam_b/person_XXXX/XXXX.png
      splits_prid2011.json   [{"train": ["person_0001", ...], "test": [...]}, ...]

The splits file is the one published with torchreid (10 splits of the people that appear in both
cameras); another file can be named with the ``split_file`` option (relative to ROOT). Training
uses both cameras of the training people; query is cam_a and gallery cam_b of the test people.
"""

from __future__ import annotations

import json
import os

from ssn3d.data.datasets.base import (
    DatasetError,
    VideoReIDDataset,
    as_int,
    coerce_options,
    locate_root,
    relabel,
    require_dir,
    require_file,
)
from ssn3d.data.datasets.ilidsvid import person_number, person_tracklet
from ssn3d.data.tracklet import Tracklet


def build_prid2011(root: str | os.PathLike, **options) -> VideoReIDDataset:
    """Read PRID-2011 under ``root`` (options: ``split``, ``split_file``)."""
    opts = coerce_options(
        "prid2011", options, {"split": (as_int, 0), "split_file": (str, "splits_prid2011.json")}
    )
    base = locate_root(root, "prid_2011", ("prid2011", "PRID2011"))
    shot = base / "prid_2011" / "multi_shot"
    cams = [require_dir(shot / c, f"{c}/person_XXXX/*.png") for c in ("cam_a", "cam_b")]
    split_path = require_file(
        base / opts["split_file"], 'a JSON list of {"train": [...], "test": [...]} splits'
    )
    try:
        splits = json.loads(split_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{split_path} is not valid JSON ({e}); restore it from the download.") from None
    if not isinstance(splits, list) or not splits:
        raise DatasetError(
            f'{split_path} must hold a non-empty list of {{"train": [...], "test": [...]}} splits.'
        )
    if not 0 <= opts["split"] < len(splits):
        raise DatasetError(
            f"prid2011 option split={opts['split']} is out of range; "
            f"{split_path} holds splits 0-{len(splits) - 1}."
        )
    split = splits[opts["split"]]
    if not isinstance(split, dict) or not all(isinstance(split.get(k), list) for k in ("train", "test")):
        raise DatasetError(
            f'{split_path}: split {opts["split"]} must be an object with "train" and "test" lists.'
        )
    overlap = sorted(set(map(str, split["train"])) & set(map(str, split["test"])))
    if overlap:
        raise DatasetError(f"{split_path}: split {opts['split']} lists {overlap[0]} in both train and test.")
    for name in split["train"] + split["test"]:
        for cam in cams:
            if not isinstance(name, str) or not (cam / name).is_dir():
                raise DatasetError(
                    f"{cam / str(name)} is missing; {split_path.name} lists {name!r} for both cameras."
                )

    def tracklets(names: list[str], cam_index: int) -> list[Tracklet]:
        d = cams[cam_index]
        return [person_tracklet(d / n, person_number(n, d), cam_index, (".png",)) for n in names]

    train, names = relabel([t for n in split["train"] for c in (0, 1) for t in tracklets([n], c)])
    query, gallery = tracklets(split["test"], 0), tracklets(split["test"], 1)
    return VideoReIDDataset(
        name="prid2011",
        root=base,
        train=train,
        query=query,
        gallery=gallery,
        options=opts,
        train_pid_names=names,
    )
