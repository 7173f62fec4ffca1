"""``ilidsvid``: iLIDS-VID (Wang et al. 2014), 300 people seen by two cameras, 23-192 frames each.

Published layout (torchreid's ``iLIDSVID``)::

    ROOT/
      i-LIDS-VID/sequences/cam1/personNNN/cam1_personNNN_FFFFF.png
      i-LIDS-VID/sequences/cam2/personNNN/...
      train-test people splits/train_test_splits_ilidsvid.mat   'ls_set': 10 x 300

Row ``split`` of ``ls_set`` is a permutation of 1-based indices into the sorted person folders:
its first half are the test people, its second half the training people. Training uses both
cameras of the training people; query is cam1 and gallery cam2 of the test people (paper and
field protocol, 10 random splits). Frames are sorted by the numbers in their names.
"""

from __future__ import annotations

import os
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
from ssn3d.data.datasets.mars import load_mat
from ssn3d.data.tracklet import Tracklet, natural_sorted

SPLIT_FILE = Path("train-test people splits") / "train_test_splits_ilidsvid.mat"


def person_number(name: str, where: Path) -> int:
    digits = "".join(c for c in name if c.isdigit())
    if not digits:
        raise DatasetError(f"{where / name} is not a person folder; expected names like person001.")
    return int(digits)


def person_tracklet(person_dir: Path, pid: int, camid: int, exts: tuple[str, ...]) -> Tracklet:
    frames = natural_sorted(image_files(person_dir, exts))
    prefix = os.fspath(person_dir) + os.sep
    return Tracklet(tuple(prefix + f for f in frames), pid, camid)


def read_camera_people(cam_dirs: list[Path]) -> list[str]:
    """Sorted person folder names, which must be the same in every camera folder."""
    people = [sorted(e.name for e in visible_entries(d) if e.is_dir()) for d in cam_dirs]
    for d, names in zip(cam_dirs[1:], people[1:]):
        if names != people[0]:
            extra = sorted(set(names) ^ set(people[0]))
            raise DatasetError(
                f"{d} and {cam_dirs[0]} hold different people (e.g. {extra[0]}); both need every person."
            )
    if not people[0]:
        raise DatasetError(f"{cam_dirs[0]} holds no person folders.")
    return people[0]


def build_ilidsvid(root: str | os.PathLike, **options) -> VideoReIDDataset:
    """Read iLIDS-VID under ``root`` (option ``split``: the row of ``ls_set``, 0-9)."""
    opts = coerce_options("ilidsvid", options, {"split": (as_int, 0)})
    base = locate_root(root, "i-LIDS-VID", ("ilids-vid", "iLIDS-VID"))
    seq = base / "i-LIDS-VID" / "sequences"
    cams = [require_dir(seq / f"cam{c}", f"cam{c}/personNNN/*.png") for c in (1, 2)]
    people = read_camera_people(cams)
    split_path = base / SPLIT_FILE
    ls_set = load_mat(split_path, "ls_set")
    if ls_set.ndim != 2 or ls_set.shape[1] != len(people) or ls_set.shape[1] % 2:
        raise DatasetError(
            f"{split_path}: ls_set has shape {ls_set.shape}; expected (splits, {len(people)}), "
            "one column per person folder."
        )
    if not 0 <= opts["split"] < ls_set.shape[0]:
        raise DatasetError(
            f"ilidsvid option split={opts['split']} is out of range; "
            f"{split_path} holds splits 0-{ls_set.shape[0] - 1}."
        )
    row = ls_set[opts["split"]]
    if sorted(row.tolist()) != list(range(1, len(people) + 1)):
        raise DatasetError(
            f"{split_path}: row {opts['split']} of ls_set is not a permutation of 1..{len(people)}."
        )
    half = len(people) // 2
    test_people = [people[i - 1] for i in sorted(int(v) for v in row[:half])]
    train_people = [people[i - 1] for i in sorted(int(v) for v in row[half:])]
    exts = (".png",)

    def tracklets(names: list[str], cam_index: int) -> list[Tracklet]:
        return [
            person_tracklet(cams[cam_index] / n, person_number(n, cams[cam_index]), cam_index, exts)
            for n in names
        ]

    train = [t for n in train_people for c in (0, 1) for t in tracklets([n], c)]
    train, names = relabel(train)
    query, gallery = tracklets(test_people, 0), tracklets(test_people, 1)
    return VideoReIDDataset(
        name="ilidsvid",
        root=base,
        train=train,
        query=query,
        gallery=gallery,
        options=opts,
        train_pid_names=names,
    )
