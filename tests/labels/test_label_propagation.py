"""Label propagation (not in the paper): matches, the mutual check, manual labels, training and the CLI."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TRAINING, tiny_overrides

from ssn3d.config import ConfigError, load_config
from ssn3d.data.datasets import build_dataset
from ssn3d.data.synth.labels import pick_labeled_frames
from ssn3d.engine.checkpoint import save_model
from ssn3d.engine.train import main
from ssn3d.keypoints import NUM_PARTS, VISIBLE, CellGeometry
from ssn3d.labels.propagated import read_propagated
from ssn3d.labels.propagation import (
    SOURCE,
    PropagationParams,
    match_cells,
    propagate_features,
    propagate_labels,
    propagation_accuracy,
)
from ssn3d.labels.store import AnnotationStore
from ssn3d.models import build_model
from ssn3d.models.backbone import Backbone
from ssn3d.models.cells import measure_geometry
from ssn3d.serving.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
TINY = tiny_overrides(TRAINING, {"data": {"seq_len": 4}})
SIZE = (24, 24)  # (W, H) of the hand-made maps' frames: 6 x 6 cells of 4 px
GEOMETRY = CellGeometry.uniform(SIZE, (6, 6))


def _tiny_backbone() -> Backbone:
    torch.manual_seed(0)
    return Backbone(name="resnet18", stages=1, weights="none")  # 16 x 8 cells at stride 4 on 64 x 32


def _maps(cells: dict[tuple[int, int, int], np.ndarray], frames: int = 2) -> torch.Tensor:
    """6 x 6 maps of 8 channels: background e7 everywhere, ``{(frame, col, row): vector}`` on top."""
    feats = torch.zeros(frames, 8, 6, 6)
    feats[:, 7] = 1.0
    for (f, col, row), v in cells.items():
        feats[f, :, row, col] = torch.as_tensor(v, dtype=torch.float32)
    return feats


def _one_part(col: int, row: int) -> np.ndarray:
    """Keypoints with only the head labeled, at the centre of cell (col, row)."""
    kps = np.zeros((NUM_PARTS, 3), np.float32)
    kps[0] = (*GEOMETRY.centre_of(np.array([col, row])), VISIBLE)
    return kps


E0, E1 = np.eye(8)[0], np.eye(8)[1]


def test_a_similar_mutual_match_is_kept_and_a_low_similarity_is_rejected() -> None:
    near = 0.7 * E0 + np.sqrt(1 - 0.49) * E1  # cosine 0.7 to the keypoint's feature
    feats = _maps({(0, 2, 2): E0, (1, 3, 2): near})
    labeled = {0: _one_part(2, 2)}
    low = propagate_features(feats, labeled, GEOMETRY, PropagationParams(threshold=0.8))
    assert low == {}  # the best match is mutual but only 0.7 similar
    kept = propagate_features(feats, labeled, GEOMETRY, PropagationParams(threshold=0.6))
    kps, conf = kept[1]
    assert kps[0].tolist() == pytest.approx([*GEOMETRY.centre_of(np.array([3, 2])), VISIBLE])
    assert conf[0] == pytest.approx(0.7, abs=1e-5)
    assert (kps[1:, 2] == 0).all() and (conf[1:] == 0).all()  # parts never labeled stay unlabeled


def test_a_match_whose_best_match_back_is_elsewhere_is_rejected() -> None:
    f = 0.85 * E0 + np.sqrt(1 - 0.85**2) * E1  # 0.85 similar to the keypoint: passes the threshold
    cells = torch.tensor([[2, 2]])
    src, dst = torch.tensor([0]), torch.tensor([1])
    # the labeled frame holds f itself two cells to the right: the match's best match back is there
    m = match_cells(
        _maps({(0, 2, 2): E0, (0, 4, 2): f, (1, 3, 2): f}), src, dst, cells, search=2, threshold=0.8
    )
    assert m.cells.tolist() == [[3, 2]] and m.similarity.item() == pytest.approx(0.85, abs=1e-5)
    assert m.back.tolist() == [[4, 2]] and not m.mutual.item() and not m.keep.item()
    control = match_cells(_maps({(0, 2, 2): E0, (1, 3, 2): f}), src, dst, cells, search=2, threshold=0.8)
    assert control.mutual.item() and control.keep.item()  # the same match, without the rival cell


def test_the_search_window_bounds_the_match() -> None:
    feats = _maps({(0, 1, 1): E0, (1, 4, 4): E0})  # the twin lies 3 cells away
    labeled = {0: _one_part(1, 1)}
    assert propagate_features(feats, labeled, GEOMETRY, PropagationParams(threshold=0.5, search=2)) == {}
    found = propagate_features(feats, labeled, GEOMETRY, PropagationParams(threshold=0.5, search=3))
    assert found[1][1][0] == pytest.approx(1.0)


def test_two_labeled_frames_reaching_one_frame_keep_the_more_similar_match() -> None:
    a = 0.9 * E0 + np.sqrt(1 - 0.81) * E1  # frame 5 looks 0.9 like frame 3's keypoint
    feats = _maps({(0, 2, 2): E0, (1, 3, 2): a, (2, 1, 2): a}, frames=3)  # rows: frames 3, 5 and 8
    labeled = {3: _one_part(2, 2), 8: _one_part(1, 2)}  # frame 8's keypoint is a itself: similarity 1
    found = propagate_features(feats, labeled, GEOMETRY, PropagationParams(threshold=0.5), frames=[3, 5, 8])
    assert set(found) == {5}  # frame numbers, not rows; 3 and 8 are labeled
    kps, conf = found[5]
    assert (
        conf[0] == pytest.approx(1.0) and kps[0, :2].tolist() == GEOMETRY.centre_of(np.array([3, 2])).tolist()
    )
    far = propagate_features(
        feats, labeled, GEOMETRY, PropagationParams(threshold=0.5, radius=2), frames=[3, 5, 8]
    )
    assert far[5][1][0] == pytest.approx(0.9, abs=1e-5)  # frame 8 is 3 frames away: only frame 3 reaches


def test_propagated_points_land_on_the_truth_more_often_than_chance(tiny_walkers: Path) -> None:
    ds = build_dataset("folder", tiny_walkers)
    truth = AnnotationStore(ds.ground_truth_path).frames()
    labels = pick_labeled_frames(truth, ds.train, per_tracklet=1, root=ds.root)
    calls: list[tuple[int, int]] = []
    found = propagate_labels(
        _tiny_backbone(),
        ds.train,
        labels,
        ds.relpath,
        height=64,
        width=32,
        params=PropagationParams(threshold=0.8, radius=3),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls[-1] == (len(ds.train), len(ds.train))
    assert not set(found) & set(labels)
    acc = propagation_accuracy(found, truth, alpha=0.1)
    assert acc["frames"] >= 2 * len(ds.train) and acc["points"] >= 5 * acc["frames"]
    # chance: a uniformly random cell of the map, over the same visible true keypoints
    geometry = measure_geometry(_tiny_backbone())
    cols, rows = np.meshgrid(np.arange(8), np.arange(16))
    centres = geometry.centre_of(np.stack([cols.ravel(), rows.ravel()], -1))  # (128, 2) in 64 x 32 pixels
    near = [
        (np.linalg.norm(centres - truth[k][i, :2], axis=1) <= 6.4).mean()
        for k, f in found.items()
        for i in np.flatnonzero((f.keypoints[:, 2] == VISIBLE) & (truth[k][:, 2] == VISIBLE))
    ]
    chance = float(np.mean(near))
    assert acc["pck"] >= 0.6 and acc["pck"] > 4 * chance, (acc, chance)


def test_manual_labels_are_never_overwritten(tiny_walkers: Path) -> None:
    ds = build_dataset("folder", tiny_walkers)
    truth = AnnotationStore(ds.ground_truth_path).frames()
    t = ds.train[0]
    keys = [ds.relpath(p) for p in t.paths]
    labels = {keys[2]: truth[keys[2]], keys[4]: truth[keys[4]]}  # frame 4 lies within reach of frame 2
    found = propagate_labels(
        _tiny_backbone(),
        [t],
        labels,
        ds.relpath,
        height=64,
        width=32,
        params=PropagationParams(threshold=0.5, radius=3),
    )
    assert set(found) == {keys[i] for i in (0, 1, 3, 5, 6, 7)}
    for f in found.values():
        assert set(f.keypoints[:, 2].tolist()) <= {0.0, 2.0}
        assert ((f.confidence >= 0.5) == (f.keypoints[:, 2] == VISIBLE)).all()


def _tiny_cfg(root: Path, *overrides: str):
    return load_config(None, [*TINY, f"data.root={root}", *overrides])


def test_the_config_key_reaches_training_and_a_resume_reuses_the_cache(
    tiny_walkers: Path, tmp_path: Path, workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    ds = build_dataset("folder", tiny_walkers)
    truth = AnnotationStore(ds.ground_truth_path).frames()
    store = AnnotationStore(tmp_path / "labels.json")
    store.update(pick_labeled_frames(truth, ds.train, per_tracklet=1, root=ds.root))
    before = store.path.read_bytes()

    def labeled_frames(run: Path, *overrides: str, resume: bool = False) -> int:
        caplog.clear()
        cfg = _tiny_cfg(tiny_walkers, f"data.annotations={store.path}", *overrides)
        with caplog.at_level(logging.INFO, logger="ssn3d"):
            assert main(cfg, run, resume=resume) == "done"
        return int(re.search(r"(\d+) labeled frames from", caplog.text).group(1))

    assert labeled_frames(tmp_path / "off", "train.max_steps=1") == len(ds.train)
    run = tmp_path / "on"
    on = labeled_frames(run, "train.max_steps=1", "data.propagate_labels=0.8")
    assert on >= 3 * len(ds.train)  # each labeled frame reaches several of its neighbours
    cache, meta = read_propagated(run / "propagated-labels.json")
    assert len(cache) == on - len(ds.train) and meta["threshold"] == 0.8 and meta["radius"] == 3
    assert store.path.read_bytes() == before and not Path(f"{store.path}.journal").exists()
    assert labeled_frames(run, "train.max_steps=2", "data.propagate_labels=0.8", resume=True) == on
    assert "read from" in caplog.text and "Propagated labels to" not in caplog.text


def test_the_threshold_must_be_a_similarity() -> None:
    with pytest.raises(ConfigError, match="propagate_labels"):
        load_config(None, ["data.propagate_labels=1.5"])
    assert load_config(None, []).data.propagate_labels == 0.0  # off by default: the paper's method


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ssn3d", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_cli_writes_a_new_store_and_leaves_the_input_alone(tiny_walkers: Path, tmp_path: Path) -> None:
    ds = build_dataset("folder", tiny_walkers)
    truth = AnnotationStore(ds.ground_truth_path).frames()
    src = AnnotationStore(tmp_path / "labels.json")
    src.update(pick_labeled_frames(truth, ds.train, per_tracklet=1, root=ds.root))
    before = src.path.read_bytes()
    cfg = _tiny_cfg(tiny_walkers)
    torch.manual_seed(0)
    ckpt = save_model(tmp_path / "model.pt", build_model(cfg.model), cfg)
    out = tmp_path / "more.json"
    args = ["labels", "propagate", str(src.path), "--data", str(tiny_walkers), "--weights", str(ckpt)]
    r = _cli(*args, "--to", str(out), "--threshold", "0.8", "--quiet", "--split", "train")
    assert r.returncode == 0, r.stderr
    assert src.path.read_bytes() == before
    doc = json.loads(out.read_text())
    manual = {k: v for k, v in doc["frames"].items() if v["source"] != SOURCE}
    assert manual == src.read()["frames"]  # every input entry, as it was
    propagated = {k: v for k, v in doc["frames"].items() if v["source"] == SOURCE}
    assert len(propagated) >= 2 * len(ds.train) and f"{len(propagated)} frames got propagated" in r.stdout
    for v in propagated.values():
        vis = [p[2] for p in v["keypoints"]]
        assert set(vis) <= {0, 2} and all((c >= 0.8) == (p == 2) for c, p in zip(v["confidence"], vis))
    assert doc["propagation"]["threshold"] == 0.8 and len(AnnotationStore(out).frames()) == len(doc["frames"])


def test_cli_refuses_to_write_over_the_input_or_an_existing_store_in_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from ssn3d.__main__ import main as cli

    src = AnnotationStore(tmp_path / "labels.json")
    src.update({"train/0001/c1_t00/f0001.jpg": np.zeros((NUM_PARTS, 3))})
    (tmp_path / "old.json").write_text("{}")
    args = ["labels", "propagate", str(src.path), "--data", str(tmp_path), "--weights", "model.pt"]
    for to, says in ((src.path, "input store"), (tmp_path / "old.json", "--force")):
        assert cli([*args, "--to", str(to)]) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1 and "Traceback" not in err
    assert cli([*args, "--to", str(tmp_path / "new.json"), "--threshold", "0"]) == 2
    assert "threshold" in capsys.readouterr().err
