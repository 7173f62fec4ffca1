"""FeatureExtractor (embeddings, attention maps, threads) and evaluation reports, checked against each other."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import tiny_overrides

from ssn3d.config import load_config
from ssn3d.data.datasets import build_dataset
from ssn3d.data.transforms import ClipTransform
from ssn3d.engine.checkpoint import save_model
from ssn3d.engine.inference import FeatureExtractor, InferenceError
from ssn3d.metrics import evaluate_rank
from ssn3d.models import build_model

TINY = tiny_overrides({"data": {"dataset": "folder", "test_chunk": 4, "workers": 0}})


def checkpoint(tmp_path: Path, root: Path, *overrides: str) -> tuple[Path, torch.nn.Module]:
    cfg = load_config(None, [*TINY, f"data.root={root}", *overrides])
    torch.manual_seed(0)
    model = build_model(cfg.model, load_weights=False)
    with torch.no_grad():  # non-trivial BN statistics
        model(torch.randn(4, 4, 3, 64, 32) * 2 + 0.5)
    model.eval()
    return save_model(tmp_path / "model.pt", model, cfg, step=5), model


def test_embed_matches_the_model_on_the_test_protocol_for_paths_arrays_and_images(
    tiny_walkers: Path, tmp_path: Path
) -> None:
    ckpt, model = checkpoint(tmp_path, tiny_walkers)
    fx = FeatureExtractor.from_checkpoint(ckpt)
    assert fx.image_size == (32, 64) and fx.feature_size == (8, 16) and fx.meta["step"] == 5
    paths = build_dataset("folder", tiny_walkers).query[0].paths  # 8 frames: two 4-frame chunks
    emb = fx.embed(list(paths))
    images = [Image.open(p).convert("RGB") for p in paths]
    clip = ClipTransform(64, 32, train=False)(images)[0]
    with torch.no_grad():
        want = (model(clip[None, :4]) + model(clip[None, 4:])).squeeze(0).numpy() / 2  # mean of equal chunks
    assert emb.shape == (32,)
    np.testing.assert_allclose(emb, want, atol=1e-5)
    np.testing.assert_allclose(fx.embed(images), emb, atol=1e-6)
    np.testing.assert_allclose(fx.embed([np.asarray(im) for im in images]), emb, atol=1e-6)


def test_attention_maps_are_distributions_on_the_feature_grid(tiny_walkers: Path, tmp_path: Path) -> None:
    ckpt, model = checkpoint(tmp_path, tiny_walkers)
    fx = FeatureExtractor.from_checkpoint(ckpt)
    paths = list(build_dataset("folder", tiny_walkers).train[0].paths[:6])
    maps = fx.attention(paths)
    w, h = fx.feature_size
    assert maps.shape == (6, 9, h, w)
    np.testing.assert_allclose(maps.reshape(6, 9, -1).sum(-1), 1.0, atol=1e-5)
    clip = ClipTransform(64, 32, train=False)([Image.open(p) for p in paths])[0]
    np.testing.assert_allclose(maps[:4], model.attention_maps(clip[None, :4])[0].numpy(), atol=1e-6)


def test_the_facing_answer_comes_per_chunk_as_the_maps_are_named_and_none_without_a_head(
    tiny_walkers: Path, tmp_path: Path
) -> None:
    ckpt, model = checkpoint(
        tmp_path, tiny_walkers, "model.strategy=semi", "model.facing=true", "loss.facing=1"
    )
    fx = FeatureExtractor.from_checkpoint(ckpt)
    paths = list(build_dataset("folder", tiny_walkers).train[0].paths[:6])  # chunks 0-4 and 4-6
    maps, answers = fx.attention_and_facing(paths)
    assert [(s, e) for s, e, _ in answers] == [(0, 4), (4, 6)]
    np.testing.assert_allclose(fx.attention(paths), maps)
    clip = ClipTransform(64, 32, train=False)([Image.open(p) for p in paths])[0]
    with torch.no_grad():
        b, t = 1, 4
        feats = model.backbone(clip[:4]).unflatten(0, (b, t))
        canonical = torch.stack([model.ssn[0].attention(feats[:, i]) for i in range(t)], 1)[0].numpy()
        want = torch.sigmoid(model.facing(model.backbone(clip[:4])).mean()).item()
    assert answers[0][2] == pytest.approx(want, abs=1e-5)
    from ssn3d.keypoints import FLIP_PERMUTATION

    named = canonical if want >= 0.5 else canonical[:, list(FLIP_PERMUTATION)]
    np.testing.assert_allclose(maps[:4], named, atol=1e-6)  # the maps follow the answer reported
    plain, _ = checkpoint(tmp_path / "plain", tiny_walkers)
    assert FeatureExtractor.from_checkpoint(plain).attention_and_facing(paths)[1] is None


def test_one_extractor_serves_many_threads(tiny_walkers: Path, tmp_path: Path) -> None:
    ckpt, _ = checkpoint(tmp_path, tiny_walkers)
    fx = FeatureExtractor.from_checkpoint(ckpt)
    tracklets = build_dataset("folder", tiny_walkers).gallery[:4]
    serial = [fx.embed(list(t.paths)) for t in tracklets]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = fx.embed(list(tracklets[i % 4].paths))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        np.testing.assert_array_equal(results[i], serial[i % 4])


def test_refusals(tiny_walkers: Path, tmp_path: Path) -> None:
    ckpt, _ = checkpoint(tmp_path, tiny_walkers, "model.arch=temporal_pooling")
    fx = FeatureExtractor.from_checkpoint(ckpt)
    frame = build_dataset("folder", tiny_walkers).train[0].paths[0]
    assert fx.embed([frame]).shape == (32,)
    with pytest.raises(InferenceError, match="no attention maps"):
        fx.attention([frame])
    with pytest.raises(InferenceError, match="uint8"):
        fx.embed([np.zeros((64, 32, 3), np.float32)])
    with pytest.raises(InferenceError, match="no frames"):
        fx.embed([])
    with pytest.raises(FileNotFoundError):
        fx.embed([tmp_path / "missing.jpg"])


def test_evaluate_report_agrees_with_an_independent_computation(
    tiny_walkers: Path, tmp_path: Path, capsys
) -> None:
    from ssn3d.__main__ import main as cli

    ckpt, _ = checkpoint(tmp_path, tiny_walkers)
    out = tmp_path / "eval.json"
    assert (
        cli(["evaluate", str(ckpt), "--topk", "3", "--workers", "0", "--device", "cpu", "--out", str(out)])
        == 0
    )
    assert "mAP" in capsys.readouterr().out
    report = json.loads(out.read_text())
    ds = build_dataset("folder", tiny_walkers)
    fx = FeatureExtractor.from_checkpoint(ckpt)
    qf = np.stack([fx.embed(list(t.paths)) for t in ds.query])
    gf = np.stack([fx.embed(list(t.paths)) for t in ds.gallery])
    dist = np.sqrt(((qf[:, None] - gf[None]) ** 2).sum(-1))
    qp, qc = np.array([t.pid for t in ds.query]), np.array([t.camid for t in ds.query])
    gp, gc = np.array([t.pid for t in ds.gallery]), np.array([t.camid for t in ds.gallery])
    cmc, mean_ap = evaluate_rank(dist, qp, gp, qc, gc)
    assert report["metrics"]["mAP"] == pytest.approx(mean_ap, abs=1e-5)
    assert report["metrics"]["top1"] == pytest.approx(float(cmc[0]))
    assert report["step"] == 5 and report["dataset"]["id"] == ds.dataset_id
    assert len(report["query"]) == len(ds.query) and len(report["gallery"]) == len(ds.gallery)
    for i, q in enumerate(report["queries"]):
        keep = [j for j in np.argsort(dist[i], kind="stable") if not (gp[j] == qp[i] and gc[j] == qc[i])][:3]
        assert [r["index"] for r in q["ranked"]] == keep
        assert [r["match"] for r in q["ranked"]] == [bool(gp[j] == qp[i]) for j in keep]
    for entry in report["query"] + report["gallery"]:
        assert entry["frames"] and all((tiny_walkers / f).is_file() for f in entry["frames"])
