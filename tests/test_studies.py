"""The Amber and Pedestrian-128 SSN studies: their measures on hand-made cases, their augmentation,
and both quick studies end to end through the CLI with sane numbers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ssn3d.attention import peak_cells, peak_points
from ssn3d.keypoints import FLIP_PERMUTATION, NUM_PARTS, PARTS
from ssn3d.part_pck import pck_report
from ssn3d.studies.amber import motif_hits
from ssn3d.studies.pedestrian_crops import augment, features
from ssn3d.studies.pedestrians import baselines


def run_study(*args: str) -> subprocess.CompletedProcess:
    # one thread: the quick studies' small convolutions gain nothing from two, and on a busy machine
    # OpenMP threads that wait on each other make them several times slower
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "ssn3d", "study", *args, "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def is_png(path: Path) -> bool:
    return path.stat().st_size > 2000 and path.read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------- measures


def test_pck_counts_visible_keypoints_within_tolerance() -> None:
    rng = np.random.default_rng(0)
    kps = np.full((5, NUM_PARTS, 3), 2.0)
    kps[..., 0] = 30 + rng.uniform(-1, 1, (5, NUM_PARTS))
    kps[..., 1] = np.linspace(5, 115, NUM_PARTS) + rng.uniform(-0.5, 0.5, (5, NUM_PARTS))  # 13.75 px apart
    kps[0, 3, 2] = 1  # not visible: does not count
    exact = pck_report(kps[..., :2].copy(), kps, tol=12, match=False)
    assert exact["overall"] == 1.0 and set(exact["per_part"].values()) == {1.0}
    off = kps[..., :2].copy()
    off[:, 0, 0] += 13  # the head misses by 13 px on every crop
    rep = pck_report(off, kps, tol=12, match=False)
    assert rep["per_part"]["head"] == 0.0 and rep["per_part"]["body"] == 1.0
    assert abs(rep["overall"] - (44 - 5) / 44) < 1e-4  # 45 points, one invisible, 5 heads missed
    perm = np.roll(np.arange(NUM_PARTS), 3)  # unsupervised parts come in any order
    matched = pck_report(kps[:, perm, :2], kps, tol=12, match=True)
    assert matched["overall"] == 1.0 and matched["assignment"] == perm.tolist()
    assert pck_report(kps[:, perm, :2], kps, tol=12, match=False)["overall"] < 0.3


def test_peaks_are_cell_centres_and_baselines_are_sane() -> None:
    maps = torch.zeros(2, NUM_PARTS, 15, 8)
    maps[0, :, 4, 2] = 1.0  # every part peaks at cell (col 2, row 4)
    maps[1, :, 14, 7] = 1.0
    pts = peak_points(maps.numpy(), (60, 120))
    np.testing.assert_allclose(pts[0, 0], [(2 + 0.5) * 7.5, (4 + 0.5) * 8.0])
    np.testing.assert_allclose(pts[1, 5], [60 - 3.75, 120 - 4.0])
    np.testing.assert_array_equal(peak_cells(maps.numpy())[0, 0], [2, 4])
    kps = np.zeros((3, NUM_PARTS, 3), dtype=np.float32)
    kps[..., 0], kps[..., 1], kps[..., 2] = 30, np.linspace(10, 110, NUM_PARTS), 2
    base = baselines(kps, kps, (120, 60), (15, 8), tol=12)
    assert base["mean_position"]["overall"] == 1.0  # every crop alike: the mean position is exact
    assert 0.03 < base["chance"] < 0.15  # a disc of 12 px in a 60 x 120 crop holds a few of 120 cells


def test_the_shared_pck_gives_the_study_the_numbers_its_own_copy_gave() -> None:
    # recorded from the study's own peak_points / pck_report / baselines before they moved to
    # ssn3d.attention and ssn3d.metrics: the same inputs must give the same record
    rng = np.random.default_rng(7)
    maps = rng.random((6, NUM_PARTS, 15, 8)).astype(np.float32)
    kps = np.zeros((6, NUM_PARTS, 3), np.float32)
    kps[..., 0], kps[..., 1] = rng.uniform(0, 60, (6, NUM_PARTS)), rng.uniform(0, 120, (6, NUM_PARTS))
    kps[..., 2] = rng.choice([1, 2, 2, 2], (6, NUM_PARTS))
    pts = peak_points(maps, (60, 120))
    plain = pck_report(pts, kps, 12.0, match=False)
    assert plain["overall"] == 0.087 and plain["assignment"] == list(range(NUM_PARTS))
    assert list(plain["per_part"].values()) == [0.1667, 0.0, 0.0, 0.1667, 0.2, 0.0, 0.25, 0.0, 0.0]
    matched = pck_report(pts, kps, 24.0, match=True)
    assert matched["overall"] == 0.4348 and matched["assignment"] == [0, 7, 3, 2, 1, 4, 8, 6, 5]
    assert list(matched["per_part"].values()) == [0.6667, 0.2, 0.5, 0.4, 0.4, 0.2, 0.4, 0.75, 0.4]
    base = baselines(kps, kps[:3], (120, 60), (15, 8), 12.0)
    assert base["chance"] == 0.0569 and base["mean_position"]["overall"] == 0.0435
    assert [PARTS[k] for k, v in enumerate(base["mean_position"]["per_part"].values()) if v] == [
        "body",
        "left_knee",
    ]


def test_motif_hits_count_peaks_inside_boxes() -> None:
    meta = {
        "size": [480, 640],
        "motifs": {"block": {}, "diamond_stripe": {}},
        "paintings": {
            "a.jpg": [{"motif": "block", "box": [40, 40, 80, 80]}],
            "b.jpg": [
                {"motif": "block", "box": [400, 200, 440, 240]},
                {"motif": "diamond_stripe", "box": [0, 0, 96, 96]},
            ],
        },
    }
    peaks = np.zeros((2, 3, 2), dtype=np.int64)  # (paintings, parts, col/row) at 120 x 160
    peaks[...] = [150, 110]  # far from every motif
    peaks[0, 1] = [15, 15]  # part 1 on a's block (40..80 px -> 10..20 cells)
    peaks[1, 1] = [105, 55]  # and on b's block (400..440 -> 100..110, 200..240 -> 50..60)
    peaks[1, 2] = [5, 5]  # part 2 on b's diamond
    hits = motif_hits(peaks, ["a.jpg", "b.jpg"], meta, (120, 160))
    assert hits["per_part"]["block"] == [0.0, 1.0, 0.0]
    assert hits["best"]["block"]["part"] == 1 and hits["best"]["diamond_stripe"]["part"] == 2
    assert hits["motif_hit_rate"] == 1.0
    assert abs(hits["chance"]["block"] - (10 * 10) / (120 * 160)) < 1e-4


# ---------------------------------------------------------------------------- augmentation


def test_augment_moves_keypoints_with_the_pixels() -> None:
    h, w = 120, 60
    kps = torch.zeros(6, NUM_PARTS, 3)
    kps[..., 0] = torch.linspace(12, 48, NUM_PARTS)
    kps[..., 1] = torch.linspace(10, 110, NUM_PARTS)
    kps[..., 2] = 2
    x = torch.zeros(6, 3, h, w)
    for i in range(NUM_PARTS):  # a bright dot per keypoint, its channel-0 value encoding the part
        xi, yi = int(kps[0, i, 0]), int(kps[0, i, 1])
        x[:, 0, yi - 1 : yi + 2, xi - 1 : xi + 2] = (i + 1) / NUM_PARTS
    gen = torch.Generator().manual_seed(3)
    out, moved = augment(x, kps, gen)
    flipped_any = False
    for b in range(6):
        for i in range(NUM_PARTS):
            if moved[b, i, 2] < 2:
                continue
            mx, my = moved[b, i, :2].round().long().clamp(min=0).tolist()
            patch = out[b, 0, max(0, my - 2) : my + 3, max(0, mx - 2) : mx + 3]
            # the pixel under the moved keypoint is the dot of the part it now names (swapped when flipped)
            source = i if abs(patch.max().item() * NUM_PARTS - (i + 1)) < 0.6 else FLIP_PERMUTATION[i]
            assert abs(patch.max().item() * NUM_PARTS - (source + 1)) < 0.6
            flipped_any |= source != i
    assert flipped_any  # some crops were mirrored, and their left/right labels swapped


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_augment_runs_on_cuda() -> None:
    x, kps = torch.rand(4, 3, 120, 60, device="cuda"), torch.full((4, NUM_PARTS, 3), 30.0, device="cuda")
    gen = torch.Generator().manual_seed(0)
    out, moved = augment(x, kps, gen)
    cpu_out, cpu_moved = augment(x.cpu(), kps.cpu(), torch.Generator().manual_seed(0))
    assert out.is_cuda and moved.is_cuda
    torch.testing.assert_close(moved.cpu(), cpu_moved)
    torch.testing.assert_close(out.cpu(), cpu_out, atol=1e-4, rtol=1e-4)


def test_context_padding_keeps_the_feature_size() -> None:
    from ssn3d.models.backbone import Backbone

    bb = Backbone(name="resnet18", stages=2, weights="none").eval()
    x = torch.randn(2, 3, 120, 60)
    with torch.no_grad():
        plain, padded = bb(x), features(bb, x, 16)
    assert plain.shape == padded.shape == (2, 128, 15, 8)
    diff = (plain - padded).abs().mean((0, 1))  # (15, 8): what the zero border changed, per cell
    corners = torch.stack([diff[0, 0], diff[0, -1], diff[-1, 0], diff[-1, -1]])
    assert corners.min() > 2 * diff[5:10, 3:5].mean()  # the corners change most: they saw zeros before


# ---------------------------------------------------------------------------- end to end


def test_quick_amber_study_finds_the_planted_motifs(tmp_path: Path) -> None:
    r = run_study("amber", "--quick", "--out", str(tmp_path), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / "amber.json").read_text())
    assert len(rec["loss"]) == rec["iters"] and rec["window"] == 9 and rec["parts"] == 9
    assert rec["final_loss"] < 0.5 * math.log(9)  # SSN separates parts on real-looking pictures
    hits = rec["hits"]
    assert hits["motif_hit_rate"] > max(0.3, 10 * hits["chance_rate"])
    assert all(len(v) == 9 for v in hits["per_part"].values())
    for name in ("amber_loss.png", "amber_attention.png", "amber_parts.png"):
        assert is_png(tmp_path / name)
    assert "motif hit rate" in r.stdout


def test_quick_pedestrian_study_semi_beats_chance(tmp_path: Path) -> None:
    r = run_study("pedestrians", "--quick", "--out", str(tmp_path), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / "pedestrians.json").read_text())
    semi, unsup = rec["results"]["semi"], rec["results"]["unsupervised"]
    chance = rec["baselines"]["chance"]
    assert rec["feature_size"] == [15, 8] and rec["tolerance_px"] == 12.0
    assert semi["overall"] > 3 * chance  # a wide margin over a random peak (measured: 0.31 vs 0.06)
    assert set(semi["per_part"]) == set(PARTS) and sorted(unsup["assignment"]) == list(range(NUM_PARTS))
    assert 0.0 <= unsup["overall"] <= 1.0 and rec["unlabeled"] == rec["count"] - rec["labeled"]
    for name in (
        "pedestrians_loss.png",
        "pedestrians_pck.png",
        "pedestrians_attention_semi.png",
        "pedestrians_attention_unsupervised.png",
    ):
        assert is_png(tmp_path / name)
    assert "semi" in r.stdout and "PCK" in r.stdout


def test_the_pedestrian_studys_position_prior_is_counted_from_its_labeled_crops_for_semi_only(
    tmp_path: Path,
) -> None:
    """``position_prior`` (NOT in the paper): the semi SSN starts with each part's prior peaked where the
    labeled crops hold it (head above feet); the unsupervised SSN has none, as it has no labels."""
    from ssn3d.studies.pedestrian_crops import load_crops
    from ssn3d.studies.pedestrian_training import train_strategy
    from ssn3d.studies.pedestrians import _crop_folder, quick_config

    cfg = quick_config(count=24, labeled=8, iters=1, position_prior=1.0, augment=False)
    _, images, kps, _ = load_crops(_crop_folder(cfg, tmp_path, False), (cfg.height, cfg.width))
    labeled = np.arange(8)
    anchors = np.zeros_like(kps)
    anchors[labeled] = kps[labeled]
    semi = train_strategy(cfg, "semi", images, anchors, labeled, progress=False).ssn
    prior = semi.prior.log_prior  # (9, h, w) on the study's feature map
    assert tuple(prior.shape[1:]) == (15, 8)
    rows = [int(p.flatten().argmax()) // prior.shape[2] for p in prior]
    assert rows[PARTS.index("head")] < rows[PARTS.index("crotch")] < rows[PARTS.index("left_foot")]
    unsup = train_strategy(cfg, "unsupervised", images, anchors, labeled, progress=False).ssn
    assert unsup.prior is None


def test_the_pedestrian_studys_facing_option_trains_a_head_and_names_the_maps_by_it(tmp_path: Path) -> None:
    """``facing`` (NOT in the paper): the semi SSN gets a facing head trained on the labeled crops, and its
    maps of a crop are the canonical maps with the pairs exchanged exactly where the head says "away"."""
    import torch

    from ssn3d.keypoints import FLIP_PERMUTATION
    from ssn3d.studies.pedestrian_crops import load_crops
    from ssn3d.studies.pedestrian_training import attention_of, train_strategy
    from ssn3d.studies.pedestrians import _crop_folder, quick_config

    cfg = quick_config(count=24, labeled=8, iters=3, facing=1.0, position_prior=1.0)
    _, images, kps, _ = load_crops(_crop_folder(cfg, tmp_path, False), (cfg.height, cfg.width))
    labeled = np.arange(8)
    anchors = np.zeros_like(kps)
    anchors[labeled] = kps[labeled]
    trained = train_strategy(cfg, "semi", images, anchors, labeled, progress=False)
    assert trained.facing is not None
    assert train_strategy(cfg, "unsupervised", images, anchors, labeled, progress=False).facing is None
    canonical = attention_of(trained.backbone, trained.ssn, images, "cpu", cfg.context_pad)
    with torch.no_grad():
        trained.facing.fc.weight.zero_()  # the answer is the bias alone
        trained.facing.fc.bias.fill_(1.0)  # "faces the camera" for every crop
        camera = attention_of(trained.backbone, trained.ssn, images, "cpu", cfg.context_pad, trained.facing)
        trained.facing.fc.bias.fill_(-1.0)  # "away" for every crop
        away = attention_of(trained.backbone, trained.ssn, images, "cpu", cfg.context_pad, trained.facing)
    torch.testing.assert_close(camera, canonical)
    torch.testing.assert_close(away, canonical[:, list(FLIP_PERMUTATION)])
