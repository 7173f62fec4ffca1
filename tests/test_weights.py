"""Backbone weights: local files only, loaded with weights_only=True, loudly."""

from __future__ import annotations

import logging

import pytest
import torch
import torchvision

from ssn3d.models.backbone import Backbone, WeightsError, find_imagenet_file


def test_truncated_resnet_channels_and_stride() -> None:
    b = Backbone(name="resnet50", stages=3)
    assert (b.out_channels, b.stride) == (1024, 16)
    assert b(torch.randn(1, 3, 64, 32)).shape == (1, 1024, 4, 2)
    b34 = Backbone(name="resnet34", stages=2)
    assert b34(torch.randn(1, 3, 120, 60)).shape == (1, 128, 15, 8)  # the paper's 128 x 8 x 15
    assert Backbone(name="none", in_channels=5)(torch.ones(1, 5, 3, 3)).shape == (1, 5, 3, 3)


def test_loads_a_torchvision_state_dict_and_reports_prefixes(tmp_path, caplog) -> None:
    net = torchvision.models.resnet18(weights=None)
    sd = {f"module.{k}": v for k, v in net.state_dict().items()}
    path = tmp_path / "r18.pth"
    torch.save(sd, path)
    with caplog.at_level(logging.INFO):
        b = Backbone(name="resnet18", stages=2, weights=str(path))
    torch.testing.assert_close(b.body[0].weight, net.conv1.weight)
    torch.testing.assert_close(b.body[5][0].conv1.weight, net.layer2[0].conv1.weight)
    assert "Loaded resnet18 weights" in caplog.text


def test_missing_imagenet_file_starts_random_and_says_so(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        assert find_imagenet_file("resnet18") is None
        with caplog.at_level(logging.WARNING):
            Backbone(name="resnet18", stages=1, weights="imagenet")
        assert "starts from random init" in caplog.text
        (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
        torch.save(
            torchvision.models.resnet18(weights=None).state_dict(),
            tmp_path / "hub/checkpoints/resnet18-f37072fd.pth",
        )
        assert find_imagenet_file("resnet18") is not None
    finally:
        torch.hub.set_dir(str(torch.hub._get_torch_home() + "/hub"))


def test_refuses_pickles_and_wrong_shapes(tmp_path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, bad)
    with pytest.raises(WeightsError, match="cannot be loaded as plain tensors"):
        Backbone(name="resnet18", stages=1, weights=str(bad))
    wrong = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), wrong)
    with pytest.raises(WeightsError, match="does not fit resnet18"):
        Backbone(name="resnet18", stages=1, weights=str(wrong))
    with pytest.raises(WeightsError, match="does not exist"):
        Backbone(name="resnet18", stages=1, weights=str(tmp_path / "nope.pth"))


def test_a_run_checkpoint_seeds_the_backbone_of_another_model(tmp_path) -> None:
    from ssn3d.config import load_config
    from ssn3d.engine.checkpoint import save_model
    from ssn3d.models import build_model

    cfg = load_config(
        None,
        [
            "model.arch=temporal_pooling",
            "model.backbone=resnet18",
            "model.backbone_stages=2",
            "model.weights=none",
        ],
    )
    torch.manual_seed(0)
    trained = build_model(cfg.model, load_weights=False)
    path = save_model(tmp_path / "run.pt", trained, cfg)
    b = Backbone(name="resnet18", stages=2, weights=str(path))
    for mine, theirs in zip(b.state_dict().values(), trained.backbone.state_dict().values(), strict=True):
        torch.testing.assert_close(mine, theirs)
    assert not torch.equal(b.body[0].weight, Backbone(name="resnet18", stages=2).body[0].weight)

    raw = build_model(
        load_config(None, ["model.backbone=none", "model.in_channels=3", "model.weights=none"]).model
    )
    torch.save(
        {"format": "ssn3d-checkpoint", "version": 1, "model": raw.state_dict(), "config": {}},
        tmp_path / "raw.pt",
    )
    with pytest.raises(WeightsError, match="without a ResNet backbone"):
        Backbone(name="resnet18", stages=2, weights=str(tmp_path / "raw.pt"))
