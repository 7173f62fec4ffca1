"""The shipped demo model loads safely and gives the attention maps the app overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssn3d.engine.checkpoint import load_checkpoint
from ssn3d.engine.inference import FeatureExtractor

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo_model.pt"


def test_demo_model_is_small_and_rebuilds_itself() -> None:
    assert DEMO.stat().st_size < 4_000_000  # keep assets small
    model, cfg, _ = load_checkpoint(DEMO)
    assert cfg.model.arch == "ssn3d" and cfg.model.num_parts == 9
    assert cfg.data.root == "data/demo-walkers"  # workspace-relative, so it works on any machine


def test_demo_model_attention_on_real_frames(tiny_walkers) -> None:
    fx = FeatureExtractor.from_checkpoint(DEMO)
    frames = sorted((Path(tiny_walkers) / "train").glob("*/*/*.jpg"))[:4]
    maps = fx.attention([str(f) for f in frames])
    assert maps.shape[:2] == (4, 9)
    np.testing.assert_allclose(maps.sum(axis=(2, 3)), 1.0, rtol=1e-4)
    emb = fx.embed([str(f) for f in frames])
    assert emb.shape == (fx.embed_dim,) and np.isfinite(emb).all()
