"""The labels' part-position prior on the attention maps (``model.position_prior``, NOT in the paper)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TRAINING, tiny_overrides

from ssn3d.config import ConfigError, load_config
from ssn3d.engine.checkpoint import load_model_state
from ssn3d.keypoints import CellGeometry
from ssn3d.models import build_model
from ssn3d.models.position_prior import counted_log_prior

GRID = CellGeometry((4.0, 4.0), (0.5, 0.5))  # a ResNet-like stride-4 map of 8 x 16 cells for 32 x 64 pixels


def _labels(frames: int = 40, seed: int = 0) -> np.ndarray:
    """(F, 9, 3) visible keypoints: part i near x = 16, y = 4 + 7 i (a standing person), one pixel of jitter."""
    rng = np.random.default_rng(seed)
    kps = np.zeros((frames, 9, 3), np.float32)
    kps[..., 0] = 16 + rng.normal(0, 1, (frames, 9))
    kps[..., 1] = 4 + 7 * np.arange(9)[None] + rng.normal(0, 1, (frames, 9))
    kps[..., 2] = 2
    return kps


def test_counted_prior_peaks_at_each_parts_usual_cell_and_is_a_distribution() -> None:
    log_p = counted_log_prior(_labels(), GRID, (8, 16))  # (9, 16, 8)
    assert log_p.shape == (9, 16, 8)
    torch.testing.assert_close(log_p.exp().flatten(1).sum(-1), torch.ones(9))
    for i in range(9):
        row, col = divmod(int(log_p[i].argmax()), 8)
        want_col, want_row = GRID.cell_of(np.array([16.0, 4 + 7 * i]), (8, 16))
        assert (col, row) == (int(want_col), int(want_row)), i


def test_a_part_never_labeled_visible_gets_the_uniform_prior() -> None:
    kps = _labels()
    kps[:, 3, 2] = 1  # left elbow labeled "not visible" everywhere
    log_p = counted_log_prior(kps, GRID, (8, 16))
    torch.testing.assert_close(log_p[3], torch.full((16, 8), -np.log(128.0)))
    assert log_p[0].max() > log_p[0].min() + 3  # the others are peaked


def _semi(*extra: str):
    return load_config(None, [*tiny_overrides(TRAINING), "model.strategy=semi", *extra])


def test_featureless_frames_put_every_part_at_its_prior_mode_and_weight_zero_is_the_paper() -> None:
    """With nothing in the features (a constant frame gives every cell the same logit) the maps are the
    prior; without the option the same model's maps are flat."""
    cfg = _semi("model.position_prior=1.0")
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    size = (cfg.data.width, cfg.data.height)
    kps = _labels()
    kps[..., 0] *= size[0] / 32
    kps[..., 1] *= size[1] / 64
    model.set_position_prior(kps, size)
    x = torch.zeros(1, 3, size[1], size[0])
    feats = model.backbone(x)
    attn = model.ssn[0].attention(feats)[0]  # (9, h, w)
    prior = model.ssn[0].prior.log_prior
    assert attn.shape == prior.shape
    assert [int(a.argmax()) for a in attn] == [int(p.argmax()) for p in prior]
    torch.manual_seed(0)
    paper = build_model(_semi().model).eval()
    flat = paper.ssn[0].attention(paper.backbone(x))[0]
    assert paper.ssn[0].prior is None
    torch.testing.assert_close(flat, torch.full_like(flat, 1.0 / flat[0].numel()))


def test_a_checkpoints_prior_loads_into_a_freshly_built_model_whatever_its_map_size() -> None:
    cfg = _semi("model.position_prior=0.5")
    trained = build_model(cfg.model)
    trained.set_position_prior(_labels(), (32, 64))
    fresh = build_model(cfg.model)
    assert fresh.ssn[0].prior.log_prior.shape == (9, 1, 1)
    load_model_state(fresh, trained.state_dict(), "trained.pt")
    torch.testing.assert_close(fresh.ssn[0].prior.log_prior, trained.ssn[0].prior.log_prior)
    logits = torch.zeros(2, 9, 32, 16)  # a map of twice the size: the prior is resampled, not refused
    assert fresh.ssn[0].prior(logits).shape == logits.shape


def test_config_refuses_the_prior_without_labels_to_count_and_a_negative_weight() -> None:
    with pytest.raises(ConfigError, match="model.position_prior=1.0 needs model.strategy=semi"):
        load_config(
            None, [*tiny_overrides(TRAINING), "model.strategy=unsupervised", "model.position_prior=1.0"]
        )
    with pytest.raises(ConfigError, match="must be >= 0"):
        _semi("model.position_prior=-1")


def test_a_run_counts_the_prior_from_its_label_store_and_refuses_one_without_labels(
    tiny_walkers: Path, tmp_path: Path
) -> None:
    from ssn3d.engine.train import main
    from ssn3d.labels.store import AnnotationStore

    data = shutil.copytree(tiny_walkers, tmp_path / "walkers")
    truth = AnnotationStore(data / "keypoints.json").frames()
    labels = AnnotationStore(tmp_path / "labels.json")
    labels.update({k: v for k, v in truth.items() if k.startswith("train/") and k.endswith("00.jpg")})
    base = [
        *tiny_overrides(TRAINING, {"data": {"seq_len": 4}}),
        f"data.root={data}",
        "model.strategy=semi",
        "model.position_prior=1.0",
        "train.max_steps=1",
        "train.epochs=1",
        "train.eval_every=0",
        "train.device=cpu",
    ]
    assert main(load_config(None, [*base, f"data.annotations={labels.path}"]), tmp_path / "run") == "done"
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    prior = state["ssn.0.prior.log_prior"]
    assert prior.shape[0] == 9 and prior.shape[1] > 1  # counted on the training map, saved with the weights
    head = prior[0].flatten().argmax().item() // prior.shape[2]
    feet = prior[7].flatten().argmax().item() // prior.shape[2]
    assert head < feet  # the head's usual cell is above the foot's
    empty = AnnotationStore(tmp_path / "empty.json")
    empty.update({})
    with pytest.raises(ConfigError, match="position_prior"):
        main(load_config(None, [*base, f"data.annotations={empty.path}"]), tmp_path / "run2")
