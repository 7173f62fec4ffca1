"""evaluate_rank, distances and rankings: hand-computed cases, ragged galleries, and a per-query oracle;
part PCK on the tiny walkers' true keypoints, and the evaluate CLI that reports it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssn3d.keypoints import NUM_PARTS, PARTS, VISIBLE, image_to_feature_cell
from ssn3d.labels.store import AnnotationStore
from ssn3d.metrics import compute_distance, evaluate_rank, rank_gallery
from ssn3d.part_pck import maps_pck, mean_positions, pck_report

# 3 queries x 4 gallery items. Query pids 1, 2, 3 from camera 0.
DIST = np.array(
    [
        [0.1, 0.5, 0.3, 0.9],
        [0.2, 0.6, 0.4, 0.1],
        [0.7, 0.2, 0.3, 0.8],
    ]
)
Q_PIDS, Q_CAMS = np.array([1, 2, 3]), np.array([0, 0, 0])
G_PIDS, G_CAMS = np.array([1, 2, 1, 3]), np.array([0, 1, 1, 1])


def test_hand_computed_cmc_map_minp() -> None:
    # q0: g0 is junk (pid 1, cam 0); kept by distance: g2 (match, 0.3), g1 (0.5), g3 (0.9) -> AP 1, rank 1
    # q1: kept g3 (0.1), g0 (0.2), g2 (0.4), g1 (match, 0.6) -> rank 4, AP 1/4, INP 1/4
    # q2: kept g1 (0.2), g2 (0.3), g0 (0.7), g3 (match, 0.8) -> rank 4, AP 1/4
    cmc, m_ap, det = evaluate_rank(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=4, return_details=True)
    np.testing.assert_allclose(cmc, [1 / 3, 1 / 3, 1 / 3, 1.0])
    assert m_ap == pytest.approx((1 + 0.25 + 0.25) / 3)
    np.testing.assert_allclose(det.ap, [1, 0.25, 0.25])
    np.testing.assert_array_equal(det.first_hit, [1, 4, 4])
    assert det.mINP == pytest.approx((1 + 0.25 + 0.25) / 3)
    assert det.valid.all() and det.num_valid == 3


def test_two_matches_ap_and_mars_matlab_trapezoid() -> None:
    # one query (pid 5, cam 0); gallery by distance: x, M, x, M -> matches at ranks 2 and 4
    d = np.array([[0.1, 0.2, 0.3, 0.4]])
    g_pids, g_cams = np.array([9, 5, 8, 5]), np.array([1, 1, 1, 2])
    cmc, m_ap = evaluate_rank(d, [5], g_pids, [0], g_cams, max_rank=4)
    np.testing.assert_allclose(cmc, [0, 1, 1, 1])
    assert m_ap == pytest.approx((1 / 2 + 2 / 4) / 2)
    # compute_AP.m: mean over matches of (precision before + precision at) / 2:
    # ((0 + 1/2) / 2 + (1/3 + 2/4) / 2) / 2
    _, matlab = evaluate_rank(d, [5], g_pids, [0], g_cams, max_rank=4, ap_mode="mars_matlab")
    assert matlab == pytest.approx(((0 + 0.5) / 2 + (1 / 3 + 0.5) / 2) / 2)
    # a match at rank 1: the precision "before" it is 1 in the MATLAB code
    _, first = evaluate_rank(np.array([[0.1, 0.2]]), [5], [5, 9], [0], [1, 1], ap_mode="mars_matlab")
    assert first == pytest.approx(1.0)


def test_queries_without_match_skipped_standard_counted_in_mars_matlab() -> None:
    q_pids = np.array([1, 7])  # pid 7 is not in the gallery
    d = np.array([[0.3, 0.1, 0.5, 0.9], [0.1, 0.2, 0.3, 0.4]])
    cmc, m_ap, det = evaluate_rank(d, q_pids, G_PIDS, [0, 0], G_CAMS, max_rank=3, return_details=True)
    assert det.valid.tolist() == [True, False] and det.num_valid == 1
    assert np.isnan(det.ap[1]) and det.first_hit[1] == 0
    assert m_ap == pytest.approx(1 / 2)  # q0 kept: g1 (0.1), g2 (match, 0.5), g3 -> rank 2
    np.testing.assert_allclose(cmc, [0, 1, 1])
    cmc_m, map_m = evaluate_rank(d, q_pids, G_PIDS, [0, 0], G_CAMS, max_rank=3, ap_mode="mars_matlab")
    np.testing.assert_allclose(cmc_m, [0, 0.5, 0.5])
    assert map_m == pytest.approx((0 + 0.5) / 2 / 2)


def test_ragged_small_gallery_pads_cmc_instead_of_crashing() -> None:
    # G = 4 < max_rank; q0 (pid 1, cam 0) loses g0, g1 as junk and keeps only 2 items (torchreid crashes here)
    d = np.array([[0.2, 0.1, 0.3, 0.4], [0.3, 0.2, 0.1, 0.4]])
    g_pids, g_cams = np.array([1, 1, 2, 1]), np.array([0, 0, 1, 1])
    cmc, m_ap = evaluate_rank(d, [1, 2], g_pids, [0, 0], g_cams, max_rank=50)
    assert cmc.shape == (4,)  # capped at G
    # q0 kept: g2 (0.3), g3 (match, 0.4) -> rank 2; q1 (pid 2) kept all: g2 (match, 0.1) -> rank 1
    np.testing.assert_allclose(cmc, [0.5, 1, 1, 1])
    assert m_ap == pytest.approx((1 / 2 + 1) / 2)
    cmc1, _ = evaluate_rank(np.array([[0.5, 0.1]]), [1], [1, 1], [0], [0, 1], max_rank=10)  # keeps one item
    np.testing.assert_allclose(cmc1, [1, 1])


def test_no_valid_query_raises_clear_error() -> None:
    with pytest.raises(ValueError, match="no query has a match in the gallery"):
        evaluate_rank(np.ones((2, 2)), [1, 2], [1, 2], [0, 0], [0, 0])  # only same-camera matches
    with pytest.raises(ValueError, match=r"must be \(num queries, num gallery\) = \(2, 3\)"):
        evaluate_rank(np.ones((2, 2)), [1, 2], [1, 2, 3], [0, 0], [0, 0, 0])
    with pytest.raises(ValueError, match="NaN"):
        evaluate_rank(np.array([[np.nan, 1.0]]), [1], [1, 2], [0], [1, 1])


def test_ties_rank_impostors_first() -> None:
    # constant distances: a model with constant features must not look perfect
    cmc, m_ap = evaluate_rank(np.zeros((1, 4)), [1], [2, 1, 3, 4], [0], [1, 1, 1, 1], max_rank=4)
    np.testing.assert_allclose(cmc, [0, 0, 0, 1])
    assert m_ap == pytest.approx(1 / 4)


def oracle(d, q_pids, g_pids, q_cams, g_cams, max_rank, mode):
    """A straightforward per-query loop over a full sort: the definition, no tricks."""
    max_rank = min(max_rank, d.shape[1])
    cmcs, aps = [], []
    for i in range(d.shape[0]):
        keep = ~((g_pids == q_pids[i]) & (g_cams == q_cams[i]))
        hit = (g_pids == q_pids[i])[keep]
        order = np.lexsort((hit, d[i][keep]))  # by distance, impostors first on ties
        hit = hit[order]
        if not hit.any():
            if mode == "mars_matlab":
                cmcs.append(np.zeros(max_rank))
                aps.append(0.0)
            continue
        ranks = np.flatnonzero(hit) + 1
        cmcs.append((np.arange(1, max_rank + 1) >= ranks[0]).astype(float))
        prec = np.arange(1, len(ranks) + 1) / ranks
        if mode == "standard":
            aps.append(prec.mean())
        else:
            before = np.where(ranks > 1, np.arange(len(ranks)) / np.maximum(ranks - 1, 1), 1.0)
            aps.append(((before + prec) / 2).mean())
    return np.mean(cmcs, 0), np.mean(aps)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 10),
    st.integers(0, 2**31 - 1),
    st.sampled_from(["standard", "mars_matlab"]),
    st.booleans(),
)
def test_matches_per_query_oracle(num_q: int, num_g: int, seed: int, mode: str, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    q_pids, g_pids = rng.integers(0, 3, num_q), rng.integers(0, 3, num_g)
    q_cams, g_cams = rng.integers(0, 2, num_q), rng.integers(0, 2, num_g)
    d = rng.integers(0, 4, (num_q, num_g)).astype(float) if ties else rng.random((num_q, num_g))
    has_match = ((g_pids[None] == q_pids[:, None]) & (g_cams[None] != q_cams[:, None])).any()
    if not has_match:
        with pytest.raises(ValueError):
            evaluate_rank(d, q_pids, g_pids, q_cams, g_cams, max_rank=5, ap_mode=mode)
        return
    cmc, m_ap = evaluate_rank(torch.from_numpy(d), q_pids, g_pids, q_cams, g_cams, max_rank=5, ap_mode=mode)
    ref_cmc, ref_ap = oracle(d, q_pids, g_pids, q_cams, g_cams, 5, mode)
    np.testing.assert_allclose(cmc, ref_cmc, atol=1e-6)
    assert m_ap == pytest.approx(ref_ap)


def test_compute_distance_euclidean_cosine_and_chunks() -> None:
    rng = np.random.default_rng(0)
    qf, gf = rng.normal(size=(7, 5)), rng.normal(size=(9, 5))
    direct = np.sqrt(((qf[:, None] - gf[None]) ** 2).sum(-1))
    np.testing.assert_allclose(compute_distance(qf, gf), direct, atol=1e-5)
    chunked = compute_distance(
        torch.from_numpy(qf), torch.from_numpy(gf), max_elements=10
    )  # 1 query row at a time
    np.testing.assert_allclose(chunked, direct, atol=1e-5)
    cos = 1 - (qf @ gf.T) / np.linalg.norm(qf, axis=1)[:, None] / np.linalg.norm(gf, axis=1)[None]
    np.testing.assert_allclose(compute_distance(qf, gf, "cosine", max_elements=20), cos, atol=1e-5)
    assert compute_distance(qf, qf).diagonal().max() < 1e-3
    with pytest.raises(ValueError, match="same D"):
        compute_distance(qf, gf[:, :3])


def test_rank_gallery_removes_junk_and_pads() -> None:
    r = rank_gallery(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, topk=4)
    assert r.indices[0].tolist() == [2, 1, 3, -1]  # g0 is junk for q0
    assert r.matches[0].tolist() == [True, False, False, False]
    assert r.indices[1].tolist() == [3, 0, 2, 1] and r.matches[1].tolist() == [False, False, False, True]
    np.testing.assert_allclose(r.distances[1], [0.1, 0.2, 0.4, 0.6])
    assert np.isinf(r.distances[0, 3])
    top1 = rank_gallery(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, topk=1)
    assert top1.indices.shape == (3, 1)
    _, _, det = evaluate_rank(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, return_details=True)
    first = [int(np.flatnonzero(row)[0]) + 1 for row in r.matches]
    assert first == det.first_hit.tolist()


# ----------------------------------------------------------------------------- part PCK

SIZE, GRID = (32, 64), (8, 16)  # the tiny walkers' (W, H) frames and a stride-4 model's (w, h) maps


def walker_keypoints(root: Path, frames: int = 64) -> np.ndarray:
    """(F, 9, 3) true keypoints of the first test frames of the tiny walkers, in their 32 x 64 pixels."""
    truth = AnnotationStore(root / "keypoints.json").frames()
    keys = sorted(k for k in truth if not k.startswith("train/"))[:frames]
    return np.stack([truth[k] for k in keys]).astype(np.float32)


def spikes(cells: np.ndarray) -> np.ndarray:
    """(F, N, 2) cells (col, row) -> (F, N, h, w) maps with all their mass on that cell."""
    f, n = cells.shape[:2]
    maps = np.zeros((f, n, GRID[1], GRID[0]), np.float32)
    fi, ni = np.meshgrid(np.arange(f), np.arange(n), indexing="ij")
    maps[fi, ni, cells[..., 1], cells[..., 0]] = 1.0
    return maps


def test_maps_peaked_at_the_keypoints_cells_score_one_and_beat_both_baselines(tiny_walkers: Path) -> None:
    kps = walker_keypoints(tiny_walkers)
    assert (kps[..., 2] >= VISIBLE).mean() > 0.5  # the walkers show most joints
    maps = spikes(image_to_feature_cell(kps[..., :2], SIZE, GRID))
    rep = maps_pck(maps, kps, SIZE)
    assert rep["alphas"] == [0.1, 0.2] and rep["tolerance_px"] == [6.4, 12.8] and rep["frames"] == 64
    assert rep["visible_keypoints"] == int((kps[..., 2] >= VISIBLE).sum())
    for method in ("argmax", "soft_argmax"):
        for alpha in ("pck@0.1", "pck@0.2"):
            assert rep["methods"][method][alpha]["overall"] == 1.0
            assert set(rep["methods"][method][alpha]["per_part"]) == set(PARTS)
    assert rep["mean_position_source"] == "the evaluated frames"
    for base in ("mean_position", "random"):
        assert rep["methods"][base]["pck@0.1"]["overall"] < 0.9  # walkers move: no baseline is perfect
    # a keypoint that is not visible does not count, wherever the peak is
    hidden = kps.copy()
    hidden[:, 0, 2] = 1
    far = maps.copy()
    far[:, 0] = spikes(np.zeros((64, 1, 2), np.int64))[:, 0]  # the head's peak in the corner
    assert maps_pck(far, hidden, SIZE)["methods"]["argmax"]["pck@0.1"]["overall"] == 1.0
    assert "head" in maps_pck(far, hidden, SIZE)["methods"]["argmax"]["pck@0.1"]["per_part"]


def test_random_peaks_score_the_random_baseline(tiny_walkers: Path) -> None:
    kps = np.tile(walker_keypoints(tiny_walkers), (20, 1, 1))  # 20 independent random maps per frame
    maps = np.random.default_rng(0).random((len(kps), NUM_PARTS, GRID[1], GRID[0])).astype(np.float32)
    rep = maps_pck(maps, kps, SIZE)["methods"]
    for alpha in ("pck@0.1", "pck@0.2"):
        chance = rep["random"][alpha]["overall"]
        assert 0.02 < chance < 0.4
        assert abs(rep["argmax"][alpha]["overall"] - chance) < 0.02  # ~10^4 peaks: a 4-sigma band
    assert rep["random"]["pck@0.1"]["overall"] < rep["random"]["pck@0.2"]["overall"]


def test_unsupervised_parts_are_matched_to_the_keypoints_they_sit_on(tiny_walkers: Path) -> None:
    kps = walker_keypoints(tiny_walkers)
    cells = image_to_feature_cell(kps[..., :2], SIZE, GRID)
    perm = np.array([4, 0, 8, 2, 6, 1, 3, 7, 5])  # part i sits on keypoint perm[i]
    maps = spikes(cells[:, perm])
    matched = maps_pck(maps, kps, SIZE, match=True)
    assert matched["matched"]
    for alpha in ("pck@0.1", "pck@0.2"):
        rep = matched["methods"]["argmax"][alpha]
        assert rep["assignment"] == perm.tolist() and rep["overall"] == 1.0
    assert (
        maps_pck(maps, kps, SIZE)["methods"]["argmax"]["pck@0.1"]["overall"] < 0.5
    )  # unmatched: wrong names
    # fewer parts than keypoints: each part gets its own keypoint, the others count as missed
    four = maps_pck(spikes(cells[:, [0, 2, 5, 7]]), kps, SIZE, match=True)["methods"]["argmax"]["pck@0.2"]
    assert four["assignment"] == [0, 2, 5, 7] and set(four["per_part"].values()) == {1.0}
    visible = kps[..., 2] >= VISIBLE
    assert four["overall"] == pytest.approx(visible[:, [0, 2, 5, 7]].sum() / visible.sum(), abs=1e-4)


def test_mean_position_baseline_uses_the_given_labels() -> None:
    kps = np.zeros((5, NUM_PARTS, 3), np.float32)
    kps[..., 0], kps[..., 1], kps[..., 2] = 16, np.linspace(4, 60, NUM_PARTS), VISIBLE
    np.testing.assert_allclose(mean_positions(kps), kps[0, :, :2])
    maps = np.full((5, NUM_PARTS, GRID[1], GRID[0]), 1 / 128, np.float32)
    same = maps_pck(maps, kps, SIZE, prior=kps, prior_source="training labels (5 frames)")
    assert same["mean_position_source"] == "training labels (5 frames)"
    assert same["methods"]["mean_position"]["pck@0.1"]["overall"] == 1.0
    moved = kps.copy()
    moved[..., 0] = 2  # labels 14 px to the left of every test keypoint: beyond 0.2 x 64
    assert maps_pck(maps, kps, SIZE, prior=moved)["methods"]["mean_position"]["pck@0.2"]["overall"] == 0.0
    hidden = kps.copy()
    hidden[:2, 0] = [1, 1, 1]  # not-visible labels do not move the mean
    np.testing.assert_allclose(mean_positions(hidden)[0], kps[0, 0, :2])
    assert pck_report(kps[..., :2], kps, 1.0)["overall"] == 1.0


def test_training_and_the_evaluate_cli_report_part_pck(tiny_run: Path, tmp_path: Path) -> None:
    from ssn3d.runs.metrics import read_metrics
    from ssn3d.runs.status import read_status

    evals = [r for r in read_metrics(tiny_run).records if r["kind"] == "eval"]
    assert evals and 0.0 <= evals[-1]["pck@0.1"] <= evals[-1]["pck@0.2"] <= 1.0
    assert read_status(tiny_run)["last_eval"]["pck@0.2"] == evals[-1]["pck@0.2"]
    out = tmp_path / "eval.json"
    cmd = [sys.executable, "-m", "ssn3d", "evaluate", str(tiny_run), "--out", str(out), "--device", "cpu"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    pck = report["pck"]
    # 8 test tracklets of 8 frames in clips of T = 4: all 16 clips fit the sample
    assert pck["frames"] == 64 and pck["clips"] == 16 and pck["clip_length"] == 4
    assert not pck["matched"]  # semi-supervised with training labels: part i is keypoint i
    assert pck["mean_position_source"] == "training labels (8 frames)"
    assert set(pck["methods"]) == {"argmax", "soft_argmax", "argmax_best_side", "mean_position", "random"}
    assert report["metrics"]["pck@0.1"] == pck["methods"]["argmax"]["pck@0.1"]["overall"]
    assert evals[-1]["pck@0.1"] == report["metrics"]["pck@0.1"]  # one seeded sample: the same number
    lines = r.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("part PCK on 64 test frames"))
    assert lines[head + 1].split() == [
        "argmax",
        "soft-argmax",
        "best",
        "side",
        "mean",
        "position",
        "random",
        "peak",
    ]
    assert [line.split()[0] for line in lines[head + 3 : head + 13]] == [*PARTS, "overall"]
    overall = lines[head + 12].split()[1:]
    columns = ("argmax", "soft_argmax", "argmax_best_side", "mean_position", "random")
    expected = [pck["methods"][m][a]["overall"] for m in columns for a in ("pck@0.1", "pck@0.2")]
    assert [float(v) for v in overall] == pytest.approx(expected, abs=0.005)
    assert "mean position from training labels (8 frames)" in r.stdout


def _person(frames: int = 6) -> np.ndarray:
    """(F, 9, 3) visible keypoints with every left part far from its right one (a person facing the camera)."""
    kps = np.zeros((frames, 9, 3), np.float32)
    kps[:, :, 1] = np.arange(9) * 10.0
    kps[:, :, 0] = [16, 16, 16, 26, 6, 24, 8, 25, 7]  # head, body, crotch, then left/right pairs
    kps[..., 2] = VISIBLE
    return kps


def test_best_side_pck_forgives_a_frame_read_mirrored_and_nothing_else() -> None:
    from ssn3d.keypoints import FLIP_PERMUTATION
    from ssn3d.part_pck import best_side_report

    kps = _person()
    exact = best_side_report(kps[..., :2], kps, 3.0)
    assert exact["overall"] == 1.0 and exact["frames_read_mirrored"] == 0.0
    mirrored = kps[:, list(FLIP_PERMUTATION), :2]  # every left part where the right one is
    assert pck_report(mirrored, kps, 3.0)["overall"] == pytest.approx(3 / 9, abs=1e-4)
    read = best_side_report(mirrored, kps, 3.0)
    assert read["overall"] == 1.0 and read["frames_read_mirrored"] == 1.0
    knees = kps[..., :2].copy()
    knees[:, [5, 6]] = knees[
        :, [6, 5]
    ]  # only the knees swapped: the frame's other limbs say it is not mirrored
    part = best_side_report(knees, kps, 3.0)
    assert part["overall"] == pytest.approx(7 / 9, abs=1e-4) and part["frames_read_mirrored"] == 0.0
    assert part["per_part"]["left_knee"] == 0.0 and part["per_part"]["left_foot"] == 1.0
    collapsed = kps[..., :2].copy()
    collapsed[:, 6] = collapsed[:, 5]  # both knees on the left knee: one of them is still wrong
    assert best_side_report(collapsed, kps, 3.0)["overall"] == pytest.approx(8 / 9, abs=1e-4)


def test_maps_pck_reports_best_side_for_named_parts_only(tiny_walkers: Path) -> None:
    kps = _person(4)
    maps = np.zeros((4, 9, 16, 8), np.float32)
    maps[:, :, 0, 0] = 1.0
    named = maps_pck(maps, kps, (32, 64))
    assert "argmax_best_side" in named["methods"]
    matched = maps_pck(maps, kps, (32, 64), match=True)
    assert "argmax_best_side" not in matched["methods"]
