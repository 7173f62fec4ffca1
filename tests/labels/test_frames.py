"""The frame key and the workspace label-store path: one implementation each (ssn3d.labels.frames, .store)."""

from __future__ import annotations

import os

import pytest

from ssn3d.data.datasets import build_dataset
from ssn3d.data.datasets.base import DatasetError
from ssn3d.labels.frames import FrameIndex, frame_key
from ssn3d.labels.store import default_store_path


def test_frame_key_is_the_posix_path_under_the_root_however_the_path_is_spelled(tmp_path):
    root = tmp_path / "ds"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f.jpg").write_bytes(b"")
    assert frame_key(root / "a" / "b" / "f.jpg", root) == "a/b/f.jpg"
    os.symlink(root, tmp_path / "link")
    assert frame_key(tmp_path / "link" / "a" / "b" / "f.jpg", root) == "a/b/f.jpg"
    with pytest.raises(ValueError, match="does not lie under the dataset root"):
        frame_key(tmp_path / "elsewhere.jpg", root)


def test_the_dataset_the_importers_and_the_store_path_agree(tiny_walkers, workspace, tmp_path):
    ds = build_dataset("folder", tiny_walkers)
    paths = [p for t in ds.train for p in t.paths]
    keys = [ds.relpath(p) for p in paths]
    assert keys == [frame_key(p, ds.root) for p in paths]
    assert set(keys) <= set(FrameIndex.from_root(ds.root).frames)
    with pytest.raises(DatasetError):
        ds.relpath(tmp_path / "x.jpg")
    assert (
        default_store_path(workspace, ds.dataset_id)
        == workspace.home / "annotations" / f"{ds.dataset_id}.json"
    )
