"""Overlays, argmax colours, part tracks and stability scores (ssn3d.attention); part PCK of maps (ssn3d.part_pck)."""

from __future__ import annotations

import numpy as np
import pytest

from ssn3d import attention as at
from ssn3d import part_pck as pp
from ssn3d.keypoints import PART_COLORS, VISIBLE


def _one_hot_maps(cells, t: int, n: int, h: int = 8, w: int = 4) -> np.ndarray:
    """Maps (T, N, h, w) whose part j at frame i is a spike at cells[i][j] = (col, row)."""
    maps = np.full((t, n, h, w), 1e-3, dtype=np.float32)
    for i in range(t):
        for j in range(n):
            c, r = cells[i][j]
            maps[i, j, r, c] = 1.0
    return maps / maps.sum(axis=(-2, -1), keepdims=True)


def test_jet_goes_from_blue_to_red():
    lo, mid, hi = at.jet(np.array([0.0, 0.5, 1.0]))
    assert lo[2] > 100 and lo[0] == 0
    assert mid[1] == 255
    assert hi[0] > 100 and hi[2] == 0
    assert at.jet(np.zeros((2, 3))).shape == (2, 3, 3)


def test_upsample_keeps_constants_and_places_cell_centres():
    const = np.full((2, 3, 4, 2), 0.25, dtype=np.float32)
    up = at.upsample(const, (16, 32))
    assert up.shape == (2, 3, 32, 16) and np.allclose(up, 0.25)
    spike = np.zeros((4, 2), dtype=np.float32)
    spike[1, 0] = 1.0  # cell (col 0, row 1) -> pixels x 0..7, y 8..15 at 8x
    up = at.upsample(spike, (16, 32))
    r, c = np.unravel_index(up.argmax(), up.shape)
    assert 8 <= r < 16 and 0 <= c < 8


def test_overlay_grid_tiles_frames_by_parts_with_opacity():
    t, n, h, w = 3, 4, 16, 8
    frames = np.full((t, h, w, 3), 100, dtype=np.uint8)
    frames[1] = 200
    maps = np.random.default_rng(0).random((t, n, 4, 2)).astype(np.float32)
    grid = at.overlay_grid(frames, maps, opacity=0.0, gap=2)
    assert grid.shape == (t * (h + 2) - 2, n * (w + 2) - 2, 3)
    assert (grid[:h, :w] == 100).all() and (grid[h + 2 : 2 * h + 2, :w] == 200).all()
    assert (grid[h : h + 2] == 255).all()  # the gap
    full = at.overlay_grid(frames, maps, opacity=1.0, gap=0)
    # at full opacity a tile is pure colormap: part 2 of frame 0 equals the jet of its normalized map
    tile = full[:h, 2 * w : 3 * w]
    expected = at.jet(at.upsample(at.normalize_maps(maps[0, 2]), (w, h)))
    assert np.array_equal(tile, expected)
    half = at.overlay_grid(frames, maps, opacity=0.5, gap=0)
    assert np.abs(half.astype(int) - (full.astype(int) + grid_no_gap(frames, n).astype(int)) / 2).max() <= 1
    with pytest.raises(ValueError, match="opacity"):
        at.overlay_grid(frames, maps, opacity=1.5)
    with pytest.raises(ValueError, match="T=3"):
        at.overlay_grid(frames, maps[:2])


def grid_no_gap(frames: np.ndarray, n: int) -> np.ndarray:
    t, h, w, _ = frames.shape
    return np.concatenate([np.concatenate([frames[i]] * n, axis=1) for i in range(t)], axis=0)


def test_argmax_view_colours_each_region_by_its_part():
    # part 0 peaks top-left, part 1 bottom-right of an 8 x 4 map
    maps = _one_hot_maps([[(0, 0), (3, 7)]], t=1, n=2)
    frames = np.zeros((1, 64, 32, 3), dtype=np.uint8)
    view = at.argmax_view(frames, maps, opacity=1.0)
    assert tuple(view[0, 2, 2]) == PART_COLORS[0]
    assert tuple(view[0, 61, 29]) == PART_COLORS[1]
    parts = at.argmax_parts(maps, (32, 64))
    assert parts.shape == (1, 64, 32) and set(np.unique(parts)) == {0, 1}


def test_peaks_tracks_and_stability_tell_a_steady_part_from_a_wandering_one():
    t = 4
    steady = [(1, 2)] * t
    wander = [(0, 0), (3, 7), (0, 7), (3, 0)]
    maps = _one_hot_maps([[steady[i], wander[i]] for i in range(t)], t=t, n=2)
    cells = at.peak_cells(maps)
    assert cells.shape == (t, 2, 2) and (cells[:, 0] == (1, 2)).all()
    pts = at.peak_points(maps, (32, 64))  # 8 px per cell
    assert np.allclose(pts[0, 0], (12.0, 20.0))
    score = at.stability(maps)
    assert score[0] == pytest.approx(1.0)
    assert score[1] < 0.3
    frames = np.zeros((t, 64, 32, 3), dtype=np.uint8)
    strip = at.draw_tracks(frames, maps, scale=2.0, gap=4, radius=3)
    assert strip.shape == (128, t * (64 + 4) - 4, 3)
    # the steady part's peak is drawn in its colour in every frame, at the same place
    for i in range(t):
        assert tuple(strip[40, i * 68 + 24]) == PART_COLORS[0]
    # and its track joins them in a horizontal line between frames
    assert tuple(strip[40, 64 + 2]) == PART_COLORS[0]


def test_peak_keypoint_distance_ignores_parts_that_are_not_visible():
    peaks = np.array([[[10.0, 10.0], [0.0, 0.0]]], dtype=np.float32)
    kps = np.array([[[13.0, 14.0, VISIBLE], [5.0, 5.0, 1]]], dtype=np.float32)
    d = at.peak_keypoint_distance(peaks, kps)
    assert d[0, 0] == pytest.approx(5.0) and np.isnan(d[0, 1])
    with pytest.raises(ValueError, match="same frames"):
        at.peak_keypoint_distance(peaks, kps[:, :1])


def test_frames_to_array_resizes_to_one_size():
    from PIL import Image

    ims = [Image.new("RGB", (16, 32), (i, 0, 0)) for i in range(3)] + [Image.new("L", (8, 8))]
    arr = at.frames_to_array(ims)
    assert arr.shape == (4, 32, 16, 3) and arr.dtype == np.uint8
    assert at.frames_to_array(ims, (8, 16)).shape == (4, 16, 8, 3)
    with pytest.raises(ValueError, match="at least one"):
        at.frames_to_array([])
    with pytest.raises(ValueError, match="RGB"):
        at.argmax_view(np.zeros((2, 4, 4)), np.zeros((2, 2, 2, 2)))


def test_part_header_matches_the_grid_columns_and_colours():
    head = at.part_header(3, 16, gap=2, height=10)
    assert head.shape == (12, 3 * 18 - 2, 3)
    grid = at.overlay_grid(np.zeros((2, 32, 16, 3), np.uint8), np.ones((2, 3, 4, 2)), gap=2)
    assert head.shape[1] == grid.shape[1]
    # each column is filled with its part's colour away from the number, white in the gaps and below
    assert tuple(head[5, 18 + 14]) == PART_COLORS[1] and tuple(head[5, 36 + 14]) == PART_COLORS[2]
    assert (head[:, 16:18] == 255).all() and (head[10:] == 255).all()
    assert (head[:10, 2:9] != np.array(PART_COLORS[0])).any(axis=-1).any()  # the number is drawn


# ----------------------------------------------------------------------------- part PCK of maps


def test_cell_centres_and_soft_peaks_use_the_peak_mapping():
    centres = pp.cell_centres((4, 8), (32, 64))  # 8 px cells
    assert centres.shape == (32, 2)
    np.testing.assert_allclose(centres[0], at.peak_points(_one_hot_maps([[(0, 0)]], 1, 1), (32, 64))[0, 0])
    np.testing.assert_allclose(centres[4 * 3 + 2], [2.5 * 8, 3.5 * 8])  # row 3, col 2
    spike = np.zeros((1, 1, 8, 4), np.float32)
    spike[0, 0, 5, 1] = 1.0
    np.testing.assert_allclose(pp.soft_peak_points(spike, (32, 64)), at.peak_points(spike, (32, 64)))
    halves = np.zeros((8, 4), np.float32)
    halves[2, 0] = halves[2, 2] = 0.5  # half the mass on two cells of one row: their midpoint
    np.testing.assert_allclose(pp.soft_peak_points(halves, (32, 64)), [1.5 * 8, 2.5 * 8])
    np.testing.assert_allclose(pp.soft_peak_points(np.ones((8, 4)), (32, 64)), [16, 32])  # flat: the centre
    np.testing.assert_allclose(pp.soft_peak_points(np.zeros((8, 4)), (32, 64)), [16, 32])


def test_alignment_summary_prefers_ground_truth_and_scores_each_part():
    n, size = 9, (32, 64)
    maps = _one_hot_maps([[(1, j % 8) for j in range(n)]] * 3, 3, n)  # part j at col 1, row j % 8
    truth = np.zeros((n, 3), np.float32)
    truth[:, 0], truth[:, 1], truth[:, 2] = 12.0, [(j % 8 + 0.5) * 8 for j in range(n)], VISIBLE
    truth_small = truth.copy()
    truth_small[:, :2] /= 2  # keypoints of a frame stored at half the model's size
    wrong = truth.copy()
    wrong[:, 0] = 31.0  # labels far from every peak: ignored where ground truth exists
    out = pp.alignment_summary(
        maps,
        ["a", "b", "c"],
        [size, (16, 32), size],
        size,
        ground_truth={"a": truth, "b": truth_small},
        labels={"a": wrong, "c": wrong},
    )
    rows = out["rows"]
    assert [r["part"] for r in rows][:2] == ["head", "body"] and len(rows) == n
    head = rows[0]
    assert head["keypoint"] == "head" and head["frames with keypoint"] == 3
    # frames a and b hit (ground truth, b resized), frame c (labels only) is 19 px off
    assert head["PCK@0.1"] == pytest.approx(2 / 3, abs=1e-4) and head["PCK@0.2"] == pytest.approx(
        2 / 3, abs=1e-4
    )
    assert head["peak to keypoint (px)"] == pytest.approx((0 + 0 + 19) / 3, abs=0.1)
    assert rows[8]["PCK@0.1"] == pytest.approx(2 / 3, abs=1e-4)  # the right foot at row 0, like the head
    pck = out["pck"]["methods"]
    assert pck["argmax"]["pck@0.1"]["overall"] == pytest.approx(2 / 3, abs=1e-4)
    assert set(pck) == {"argmax", "soft_argmax", "argmax_best_side", "mean_position", "random"}
    assert 0 < out["stability"] <= 1
    none = pp.alignment_summary(maps, ["x", "y", "z"], [size] * 3, size, ground_truth={"a": truth})
    assert none["pck"] is None and "PCK@0.1" not in none["rows"][0]
