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
    with pytest.raises(WeightsError, match="without a backbone"):
        Backbone(name="resnet18", stages=2, weights=str(tmp_path / "raw.pt"))


# --------------------------------------------------------------------------- foreign files and matching


def _foreign_mobilenet(seed: int, drop_classifier: bool = True) -> dict[str, torch.Tensor]:
    """A mobilenet_v2 state dict under names that are not torchvision's: the same tensors, in order."""
    torch.manual_seed(seed)
    sd = torchvision.models.mobilenet_v2(weights=None).state_dict()
    items = [(k, v) for k, v in sd.items() if not (drop_classifier and k.startswith("classifier."))]
    names = [k for k, _ in items]
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
    # every key name is another tensor's (shuffled), so only the position tells which tensor it is
    return {f"net.{names[j]}": v for j, (_, v) in zip(order, items, strict=True)}


def test_converter_maps_by_position_and_loaded_weights_change_the_features(tmp_path) -> None:
    from ssn3d.models.backbone import convert_by_position

    foreign = _foreign_mobilenet(seed=3)
    converted = convert_by_position(foreign, "mobilenet_v2")
    torch.manual_seed(3)
    truth = torchvision.models.mobilenet_v2(weights=None)
    assert list(converted) == [k for k in truth.state_dict() if k.startswith("features.")]
    for k, v in truth.state_dict().items():
        if k.startswith("features."):
            torch.testing.assert_close(converted[k], v)
    with_head = convert_by_position(_foreign_mobilenet(seed=3, drop_classifier=False), "mobilenet_v2")
    torch.testing.assert_close(with_head["classifier.1.weight"], truth.classifier[1].weight)

    path = tmp_path / "mobilenet_v2.pth"
    torch.save(converted, path)
    x = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(0))
    loaded = Backbone(name="mobilenet_v2", stages=3, weights=str(path)).eval()
    random = Backbone(name="mobilenet_v2", stages=3).eval()
    with torch.no_grad():
        ours, theirs, rand = loaded(x), truth.eval().features[:14](x), random(x)
    torch.testing.assert_close(ours, theirs)
    assert (ours - rand).abs().mean() > 0.1 * rand.abs().mean()


def test_converter_refuses_a_shape_or_count_that_does_not_fit() -> None:
    from ssn3d.models.backbone import convert_by_position

    foreign = _foreign_mobilenet(seed=0)
    key = list(foreign)[7]
    wrong = dict(foreign)
    wrong[key] = torch.zeros(5, 5)
    with pytest.raises(WeightsError, match=r"tensor 7 .* does not fit torchvision's features\.1\."):
        convert_by_position(wrong, "mobilenet_v2")
    with pytest.raises(WeightsError, match="cannot be matched by position"):
        convert_by_position(dict(list(foreign.items())[:-1]), "mobilenet_v2")
    with pytest.raises(WeightsError, match="cannot be matched by position"):
        convert_by_position(foreign, "resnet18")


def test_convert_command_writes_a_loadable_file_and_refuses_in_one_line(tmp_path) -> None:
    import os
    import subprocess
    import sys

    src, dst = tmp_path / "foreign.pt", tmp_path / "out" / "mnv2.pth"
    torch.save(_foreign_mobilenet(seed=1), src)
    bad = tmp_path / "bad.pt"
    broken = _foreign_mobilenet(seed=1)
    broken[list(broken)[0]] = torch.zeros(1)
    torch.save(broken, bad)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "ssn3d", "weights", "convert"]
    ok = subprocess.run(
        [*cmd, str(src), str(dst), "--arch", "mobilenet_v2"], capture_output=True, text=True, env=env
    )
    assert ok.returncode == 0, ok.stderr
    assert "312 tensors" in ok.stdout
    state = torch.load(dst, weights_only=True)
    assert next(iter(state)) == "features.0.0.weight"
    Backbone(name="mobilenet_v2", stages=2, weights=str(dst))  # loads without refusal
    no = subprocess.run(
        [*cmd, str(bad), str(tmp_path / "b.pth"), "--arch", "mobilenet_v2"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert no.returncode == 2
    assert "Traceback" not in no.stderr and no.stderr.count("\n") == 1
    assert "does not fit torchvision's features.0.0.weight" in no.stderr
    assert not (tmp_path / "b.pth").exists()


def test_a_file_that_fits_no_tensor_is_refused_not_loaded(tmp_path, caplog) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save(_foreign_mobilenet(seed=0), foreign)
    with pytest.raises(WeightsError, match=r"fits 0 of the \d+ tensors of resnet18 .*keys look like net\."):
        Backbone(name="resnet18", stages=2, weights=str(foreign))
    renamed = tmp_path / "renamed.pth"
    torch.save({f"encoder.{k}": v for k, v in torchvision.models.resnet18().state_dict().items()}, renamed)
    with caplog.at_level(logging.INFO), pytest.raises(WeightsError, match="fits 0 of the"):
        Backbone(name="resnet18", stages=2, weights=str(renamed))
    assert "Loaded" not in caplog.text


def test_partial_match_loads_with_a_warning_naming_the_missing_layers(tmp_path, caplog) -> None:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18_to_layer2.pth"
    keep = ("conv1.", "bn1.", "layer1.", "layer2.")
    torch.save({k: v for k, v in net.state_dict().items() if k.startswith(keep)}, path)
    with caplog.at_level(logging.WARNING):
        b = Backbone(name="resnet18", stages=3, weights=str(path))
    torch.testing.assert_close(b.body[5][0].conv1.weight, net.layer2[0].conv1.weight)
    assert "layers keep their random init: layer3" in caplog.text
    # the stem and layer1 alone are under half of the tensors up to layer3: refused
    few = tmp_path / "stem.pth"
    torch.save({k: v for k, v in net.state_dict().items() if k.startswith(keep[:3])}, few)
    with pytest.raises(WeightsError, match=r"fits \d+ of the \d+ tensors of resnet18 with 3 stages"):
        Backbone(name="resnet18", stages=3, weights=str(few))


def test_the_command_lines_network_names_are_the_backbones_with_imagenet_files() -> None:
    from ssn3d.config import NETWORKS
    from ssn3d.models.backbone import IMAGENET_FILES

    assert sorted(NETWORKS) == sorted(IMAGENET_FILES)
