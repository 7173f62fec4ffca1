"""ONNX export: onnxruntime matches torch on the same clips, for any clip length where the model allows it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import tiny_overrides

from ssn3d.config import load_config
from ssn3d.engine.checkpoint import save_model
from ssn3d.engine.export import ExportError, export_onnx
from ssn3d.models import build_model

ort = pytest.importorskip("onnxruntime")

TINY = tiny_overrides({"data": {"test_chunk": 8}})


def checkpoint(tmp_path: Path, *overrides: str) -> tuple[Path, torch.nn.Module]:
    cfg = load_config(None, [*TINY, *overrides])
    torch.manual_seed(0)
    model = build_model(cfg.model, load_weights=False)
    model.train()
    with torch.no_grad():  # move BN running statistics away from 0/1 so eval-mode BN is really exported
        for _ in range(3):
            model(torch.randn(4, 4, 3, 64, 32) * 2 + 0.5, torch.zeros(4, 4, 9, 3))  # no anchors
    model.eval()
    return save_model(tmp_path / "model.pt", model, cfg), model


def test_cli_export_matches_torch_for_any_batch_and_clip_length(tmp_path: Path, capsys) -> None:
    from ssn3d.__main__ import main as cli

    ckpt, model = checkpoint(tmp_path)
    out = tmp_path / "model.onnx"
    assert cli(["export", str(ckpt), "--onnx", str(out)]) == 0
    assert "any T" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["clips"]
    rng = np.random.default_rng(0)
    for b, t in ((1, 4), (3, 7), (1, 32), (2, 1)):
        clips = rng.standard_normal((b, t, 3, 64, 32)).astype(np.float32)
        got = session.run(None, {"clips": clips})[0]
        with torch.no_grad():
            want = model(torch.from_numpy(clips)).numpy()
        assert got.shape == (b, 32)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_non_shared_classifiers_export_with_a_fixed_clip_length(tmp_path: Path) -> None:
    ckpt, model = checkpoint(tmp_path, "model.shared_classifier=false")
    result = export_onnx(ckpt, tmp_path / "ns.onnx")
    assert not result.dynamic_frames and result.frames == 8  # data.test_chunk
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    clips = np.random.default_rng(1).standard_normal((1, 8, 3, 64, 32)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(
            session.run(None, {"clips": clips})[0],
            model(torch.from_numpy(clips)).numpy(),
            atol=1e-4,
            rtol=1e-4,
        )


def test_supervised_models_are_not_exported(tmp_path: Path) -> None:
    ckpt, _ = checkpoint(tmp_path, "model.strategy=supervised")
    with pytest.raises(ExportError, match="keypoints"):
        export_onnx(ckpt, tmp_path / "sup.onnx")
    assert not (tmp_path / "sup.onnx").exists()


def test_a_refused_export_leaves_the_earlier_good_file_untouched(tmp_path: Path, capsys) -> None:
    from ssn3d.__main__ import main as cli

    ckpt, _ = checkpoint(tmp_path)
    out = tmp_path / "model.onnx"
    assert cli(["export", str(ckpt), "--onnx", str(out)]) == 0
    good = out.read_bytes()
    capsys.readouterr()
    refused = {
        "--opset 1": (["--onnx", str(out), "--opset", "1"], "cannot write opset 1"),
        "a failed check": (["--onnx", str(out), "--atol", "-1"], "disagrees with torch"),
        "--frames -3": (["--onnx", str(out), "--frames", "-3"], "not a clip length"),
        "a folder": (["--onnx", str(tmp_path)], "is a folder"),
    }
    for case, (args, words) in refused.items():
        assert cli(["export", str(ckpt), *args]) == 2, case
        err = capsys.readouterr().err
        assert words in err and "\n" not in err.strip() and "Traceback" not in err, (case, err)
        assert out.read_bytes() == good, case
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.pt"]  # no temporary left
