"""Canonical left/right parts named by a facing head (``model.facing``, NOT in the paper)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from tiny import TRAINING, tiny_overrides

from ssn3d.alignment_losses import AlignmentTerms
from ssn3d.config import ConfigError, load_config
from ssn3d.keypoints import FLIP_PERMUTATION
from ssn3d.models import build_model
from ssn3d.models.facing import canonical_keypoints, facing_targets, person_sides

PAIRS = ((3, 4), (5, 6), (7, 8))  # (left, right): elbows, knees, feet


def _person(faces_camera: bool, width: float = 32.0) -> torch.Tensor:
    """(9, 3) visible keypoints of an upright person; facing the camera, the left limbs are on the image's right."""
    kps = torch.zeros(9, 3)
    kps[:, 0] = width / 2
    kps[:, 1] = torch.arange(9, dtype=torch.float32) * 6 + 4
    kps[:, 2] = 2
    for left, right in PAIRS:
        kps[left, 0] = width / 2 + (6 if faces_camera else -6)
        kps[right, 0] = width / 2 - (6 if faces_camera else -6)
    return kps


def test_the_labels_own_positions_tell_the_facing_and_unknown_stays_unknown() -> None:
    kps = torch.stack([_person(True), _person(False), torch.zeros(9, 3)])
    one_sided = _person(False)
    one_sided[[4, 6, 8], 2] = 0  # only the left limbs labeled: no pair to compare
    target = facing_targets(torch.cat([kps, one_sided[None]]))
    assert target[:2].tolist() == [1.0, 0.0]
    assert torch.isnan(target[2:]).all()


def test_canonical_order_swaps_the_pairs_of_frames_facing_away_only() -> None:
    kps = torch.stack([_person(True), _person(False), torch.zeros(9, 3)])
    canon = canonical_keypoints(kps, facing_targets(kps))
    torch.testing.assert_close(canon[0], kps[0])  # facing the camera: already canonical
    torch.testing.assert_close(canon[2], kps[2])  # unknown: as labeled
    torch.testing.assert_close(canon[1], kps[1][list(FLIP_PERMUTATION)])
    # canonical "left" is the image's right in both frames
    for left, right in PAIRS:
        assert (canon[:2, left, 0] > canon[:2, right, 0]).all()


def test_person_sides_swaps_each_clips_pairs_by_the_mean_of_its_frames_logits() -> None:
    maps = torch.rand(2, 3, 9, 4, 2)
    logits = torch.tensor([[2.0, -1.0, 0.5], [-2.0, 1.0, -0.5]])  # clip means +0.5 (camera), -0.5 (away)
    out = person_sides(maps, logits)
    torch.testing.assert_close(out[0], maps[0])
    torch.testing.assert_close(out[1], maps[1][:, list(FLIP_PERMUTATION)])


def _semi(*extra: str):
    return load_config(
        None, [*tiny_overrides(TRAINING), "model.strategy=semi", "model.facing=true", "loss.facing=1", *extra]
    )


def test_attention_maps_name_the_parts_person_side_from_the_facing_head() -> None:
    """The same frames give the canonical maps when the head says "camera" and their pairs exchanged when
    it says "away"; the embedding (canonical parts) does not depend on the head."""
    torch.manual_seed(0)
    model = build_model(_semi().model).eval()
    clips = torch.randn(2, 3, 3, 64, 32)
    with torch.no_grad():
        b, t = clips.shape[:2]
        feats = model.backbone(clips.flatten(0, 1)).unflatten(0, (b, t))
        canonical = torch.stack([model.ssn[0].attention(feats[:, i]) for i in range(t)], 1)
        emb = model(clips)
        model.facing.fc.weight.zero_()  # the answer is the bias alone
        model.facing.fc.bias.fill_(1.0)  # "faces the camera", whatever the frame
        camera = model.attention_maps(clips)
        model.facing.fc.bias.fill_(-1.0)
        away = model.attention_maps(clips)
        torch.testing.assert_close(model(clips), emb)
    torch.testing.assert_close(camera, canonical)
    torch.testing.assert_close(away, canonical[:, :, list(FLIP_PERMUTATION)])


def test_training_anchors_take_the_canonical_keypoints_and_the_facing_term_trains_the_head() -> None:
    cfg = _semi("loss.position_ce=1")
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    frames = torch.randn(2, 3, 64, 32)
    kps = torch.stack([_person(True), _person(False)])
    out = model(torch.randn(2, 2, 3, 64, 32), None, frames, kps)
    a = out.anchors
    assert a.facing_target.tolist() == [1.0, 0.0]
    # the away frame's anchors are its labels with the pairs exchanged: left knee's cell on the image's right
    left_knee_col, right_knee_col = a.cells[1, 5, 0].item(), a.cells[1, 6, 0].item()
    assert left_knee_col > right_knee_col
    terms = AlignmentTerms(cfg.loss)
    assert "facing" in terms.active
    loss = terms(out)["facing"]
    want = torch.nn.functional.binary_cross_entropy_with_logits(a.facing_logits, a.facing_target)
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert model.facing.fc.weight.grad.abs().sum() > 0
    assert model.backbone.body[0].weight.grad.abs().sum() > 0  # the features learn facing too


def test_the_position_prior_is_counted_in_canonical_order() -> None:
    cfg = _semi("model.position_prior=1")
    model = build_model(cfg.model)
    kps = torch.stack([_person(True)] * 10 + [_person(False)] * 10).numpy()
    model.set_position_prior(kps, (32, 64))
    prior = model.ssn[0].prior.log_prior  # (9, h, w)
    w = prior.shape[-1]
    for left, right in PAIRS:  # canonical left is the image's right in every frame: one mode, not two
        assert prior[left].flatten().argmax() % w > prior[right].flatten().argmax() % w


def test_config_refuses_the_head_without_its_loss_or_labels() -> None:
    with pytest.raises(ConfigError, match="model.facing=True needs model.strategy=semi and loss.facing"):
        load_config(None, [*tiny_overrides(TRAINING), "model.strategy=semi", "model.facing=true"])
    with pytest.raises(ConfigError, match="model.facing=True needs"):
        load_config(
            None,
            [*tiny_overrides(TRAINING), "model.strategy=unsupervised", "model.facing=true", "loss.facing=1"],
        )
    with pytest.raises(ConfigError, match="loss.facing=1.0 needs model.facing=true"):
        load_config(None, [*tiny_overrides(TRAINING), "model.strategy=semi", "loss.facing=1"])


def test_a_facing_run_trains_saves_and_reloads_with_its_head(tiny_walkers: Path, tmp_path: Path) -> None:
    from ssn3d.engine.checkpoint import load_checkpoint
    from ssn3d.engine.train import main
    from ssn3d.labels.store import AnnotationStore

    data = shutil.copytree(tiny_walkers, tmp_path / "walkers")
    truth = AnnotationStore(data / "keypoints.json").frames()
    labels = AnnotationStore(tmp_path / "labels.json")
    labels.update({k: v for k, v in truth.items() if k.startswith("train/")})
    cfg = _semi(
        *tiny_overrides({"data": {"seq_len": 4}}),
        f"data.root={data}",
        f"data.annotations={labels.path}",
        "train.max_steps=2",
        "train.epochs=1",
        "train.device=cpu",
    )
    assert main(cfg, tmp_path / "run") == "done"
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert '"facing"' in metrics  # the term is logged per step
    model, _, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert model.facing is not None
    maps = model.attention_maps(torch.randn(1, 2, 3, 64, 32))
    torch.testing.assert_close(maps.flatten(3).sum(-1), torch.ones(1, 2, 9))


def test_the_head_reads_through_the_backbones_next_stage_with_its_weights(tmp_path: Path) -> None:
    """The trunk is the network's stage after the cut (ResNet18 layer2 after layer1), loaded from the same
    weights file as the backbone; the last stage has no next one, and the head then reads the map itself."""
    from ssn3d.models.backbone import Backbone

    full = Backbone(name="resnet18", stages=2).state_dict()  # a torchvision-keyed file of both stages
    torch.save({k.replace("body.4.", "layer1.").replace("body.5.", "layer2."): v for k, v in full.items()
                if k.startswith(("body.4.", "body.5."))}, tmp_path / "r18.pth")  # fmt: skip
    cut = Backbone(name="resnet18", stages=1)
    trunk, channels = cut.next_stage(str(tmp_path / "r18.pth"))
    assert channels == 128
    torch.testing.assert_close(trunk[0][0].conv1.weight, full["body.5.0.conv1.weight"])
    assert Backbone(name="resnet18", stages=4).next_stage() is None
    model = build_model(_semi().model)
    assert model.facing.trunk is not None
    assert model.facing(torch.randn(2, 64, 16, 8)).shape == (2,)
