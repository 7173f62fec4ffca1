"""A new run's config from the app's form: choices on a base, the session's dataset, confined weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssn3d.config import Config
from ssn3d.runs.prepare import launch_config


def _config(tmp_path: Path, **choices) -> Config:
    return launch_config(
        Config(),
        {"model.strategy": "unsupervised", "data.seq_len": 6, "train.epochs": 2, **choices},
        dataset="folder",
        data_root=tmp_path / "data",
        options={"min_frames": 2},
        annotations=tmp_path / "labels.json",
        weight_roots=(tmp_path,),
    )


def test_the_forms_choices_and_the_sessions_dataset_make_the_runs_config(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    assert cfg.model.strategy == "unsupervised" and cfg.train.epochs == 2
    assert cfg.data.seq_len == cfg.model.num_frames == 6  # one T for the clip and the model
    assert cfg.data.dataset == "folder" and Path(cfg.data.root) == tmp_path / "data"
    assert cfg.data.options == {"min_frames": 2} and cfg.data.annotations == str(tmp_path / "labels.json")
    assert cfg.model.weights == Config().model.weights  # not chosen: the base config's


def test_a_weights_file_must_lie_inside_the_workspace(tmp_path: Path) -> None:
    inside = tmp_path / "w.pth"
    inside.write_bytes(b"x")
    assert _config(tmp_path, **{"model.weights": "w.pth"}).model.weights == str(inside.resolve())
    outside = tmp_path.parent / f"{tmp_path.name}-outside.pth"
    outside.write_bytes(b"x")
    with pytest.raises(ValueError, match="backbone weights file"):
        _config(tmp_path, **{"model.weights": str(outside)})
