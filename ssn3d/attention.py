"""Seeing SSN's part alignment: overlays, argmax colours, part tracks, stability (pure numpy/PIL).

Paper, section "Self-Separated Network", eq. (1)-(2): for each frame SSN makes N attention maps
A^i (h x w), each a softmax over the cells. Figure 4 shows such maps over pedestrians; the claim to
check is that part i lands on the same body part in every frame ("the spatial features across the
frames belonging to the same label express homogeneous information, which, in fact, is the
alignment operation"). This module turns maps (T, N, h, w) of one tracklet into pictures and
numbers for that check:

* ``overlay_grid``: every part's map over its frame, a T x N mosaic (colormap blend, opacity);
* ``argmax_view``: all parts at once, each pixel in the colour of the part that claims it most;
* ``peak_points`` / ``draw_tracks``: each part's peak per frame, joined across frames;
* ``stability``: one score per part, 1 when its peak stays on one cell across frames;
* ``peak_keypoint_distance``: how far each peak is from the labeled (or ground-truth) keypoint.

Part PCK of the maps against keypoints is ``ssn3d.part_pck``'s, every peak turned into pixels by
``peak_points``.

Frames are (T, H, W, 3) uint8 arrays; maps are upsampled bilinearly from the feature grid to the
frame between uniform cell centres (a picture); peaks go back to pixels by the
measured receptive-field geometry of ``ssn3d.keypoints.CellGeometry``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ssn3d.keypoints import PART_COLORS, VISIBLE, CellGeometry, feature_cell_to_image

_logger = logging.getLogger(__name__)


def _jet_formula(x: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)[..., None]
    knots = np.array([1.0, 2.0, 3.0], dtype=np.float32)  # red, green, blue peak at x = 3/4, 1/2, 1/4
    rgb = np.clip(1.5 - np.abs(4.0 * x - (4.0 - knots)), 0.0, 1.0)
    return (rgb * 255.0 + 0.5).astype(np.uint8)


_JET_LUT = _jet_formula(np.linspace(0.0, 1.0, 256))  # (256, 3): a table lookup is ~10x faster per pixel


def jet(x: np.ndarray) -> np.ndarray:
    """The 'jet' colormap: values in [0, 1] (any shape S) -> (S, 3) uint8 RGB, blue (0) to red (1)."""
    idx = (np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return _JET_LUT[idx]


def _interp_matrix(out_size: int, in_size: int) -> np.ndarray:
    """(out, in) weights of 1-D bilinear interpolation between cell centres, edges clamped."""
    centres = (np.arange(out_size, dtype=np.float32) + 0.5) * in_size / out_size - 0.5
    centres = np.clip(centres, 0.0, in_size - 1)
    lo = np.floor(centres).astype(np.int64)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = centres - lo
    m = np.zeros((out_size, in_size), dtype=np.float32)
    rows = np.arange(out_size)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def upsample(maps: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Bilinear upsampling of maps (..., h, w) to (..., H, W) for ``size`` = (W, H)."""
    maps = np.asarray(maps, dtype=np.float32)
    mh = _interp_matrix(int(size[1]), maps.shape[-2])
    mw = _interp_matrix(int(size[0]), maps.shape[-1])
    return np.einsum("Hh,...hw,Ww->...HW", mh, maps, mw, optimize=True)


def normalize_maps(maps: np.ndarray) -> np.ndarray:
    """Scale each map (..., h, w) to [0, 1] by its own maximum (an all-zero map stays zero)."""
    maps = np.asarray(maps, dtype=np.float32)
    peak = maps.max(axis=(-2, -1), keepdims=True)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def blend(frame: np.ndarray, color: np.ndarray, alpha: np.ndarray | float) -> np.ndarray:
    """``(1 - alpha) * frame + alpha * color`` in uint8; alpha a scalar or (..., H, W) weights in [0, 1]."""
    a = np.asarray(alpha, dtype=np.float32)
    if a.ndim:
        a = a[..., None]
    out = frame.astype(np.float32) * (1.0 - a) + color.astype(np.float32) * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def overlay_grid(frames: np.ndarray, maps: np.ndarray, opacity: float = 0.5, *, gap: int = 2) -> np.ndarray:
    """Every part's attention over its frame, as one mosaic: rows are frames, columns parts.

    Args:
        frames: (T, H, W, 3) uint8.
        maps: (T, N, h, w) attention maps (any non-negative scale; each is normalized by its max).
        opacity: weight of the colormap over the frame, in [0, 1].
        gap: white pixels between tiles.

    Returns:
        (T * (H + gap) - gap, N * (W + gap) - gap, 3) uint8.
    """
    frames, maps = _check(frames, maps)
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity={opacity} must lie in [0, 1].")
    t, h, w, _ = frames.shape
    n = maps.shape[1]
    heat = jet(upsample(normalize_maps(maps), (w, h)))  # (T, N, H, W, 3)
    tiles = blend(frames[:, None], heat, opacity)  # (T, N, H, W, 3)
    padded = np.pad(tiles, ((0, 0), (0, 0), (0, gap), (0, gap), (0, 0)), constant_values=255)
    grid = padded.transpose(0, 2, 1, 3, 4).reshape(t * (h + gap), n * (w + gap), 3)  # (T*(H+g), N*(W+g), 3)
    return grid[: grid.shape[0] - gap, : grid.shape[1] - gap]


def part_header(
    num_parts: int,
    tile_width: int,
    *,
    gap: int = 2,
    height: int = 14,
    colors: Sequence[tuple[int, int, int]] = PART_COLORS,
) -> np.ndarray:
    """A strip to put above ``overlay_grid``: each column's part colour and number (1-based, as the keys).

    Returns:
        (height + gap, N * (tile_width + gap) - gap, 3) uint8, white between columns and below.
    """
    width = num_parts * (tile_width + gap) - gap
    strip = Image.new("RGB", (width, height + gap), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for j in range(num_parts):
        color = tuple(colors[j % len(colors)])
        x0 = j * (tile_width + gap)
        draw.rectangle([x0, 0, x0 + tile_width - 1, height - 1], fill=color)
        ink = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)  # readable on light and dark colours
        draw.text((x0 + 2, max(0, (height - 11) // 2)), str(j + 1), fill=ink)
    return np.asarray(strip)


def argmax_parts(maps: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """For each pixel of a (W, H) frame, the part whose max-normalized map is highest: (..., H, W) int."""
    return upsample(normalize_maps(maps), size).argmax(axis=-3)


def argmax_view(
    frames: np.ndarray,
    maps: np.ndarray,
    opacity: float = 0.5,
    colors: Sequence[tuple[int, int, int]] = PART_COLORS,
) -> np.ndarray:
    """All parts at once: every pixel tinted with the colour of the part that claims it most.

    Maps are compared after each is scaled by its own maximum, so a broad part (body) and a sharp
    one (head) both own the region around their peak (the paper is silent; see docs/DESIGN.md).

    Args:
        frames: (T, H, W, 3) uint8.
        maps: (T, N, h, w).
        opacity: weight of the part colours, in [0, 1].
        colors: RGB per part.

    Returns:
        (T, H, W, 3) uint8.
    """
    frames, maps = _check(frames, maps)
    t, h, w, _ = frames.shape
    lut = np.array([colors[i % len(colors)] for i in range(maps.shape[1])], dtype=np.uint8)
    return blend(frames, lut[argmax_parts(maps, (w, h))], opacity)


def peak_cells(maps: np.ndarray) -> np.ndarray:
    """The cell (col, row) of each map's maximum: (..., h, w) -> (..., 2) int."""
    maps = np.asarray(maps)
    flat = maps.reshape(*maps.shape[:-2], -1).argmax(axis=-1)
    return np.stack([flat % maps.shape[-1], flat // maps.shape[-1]], axis=-1).astype(np.int64)


def peak_points(
    maps: np.ndarray, image_size: Sequence[int], geometry: CellGeometry | None = None
) -> np.ndarray:
    """Each map's peak in frame pixels: the receptive-field centre of its cell, (..., h, w) -> (..., 2).

    ``geometry`` defaults to the one registered for these sizes by the model's extractor
    (``ssn3d.keypoints.geometry_for``), so peaks and training anchors use one cell rule.
    """
    maps = np.asarray(maps)
    return feature_cell_to_image(peak_cells(maps), image_size, (maps.shape[-1], maps.shape[-2]), geometry)


def stability(maps: np.ndarray) -> np.ndarray:
    """Per-part stability of the peak across frames: maps (T, N, h, w) -> (N,) in (0, 1].

    score_i = 1 / (1 + d_i), d_i the mean distance, in feature cells, of part i's per-frame peak
    from its median peak. 1 means the part sits on one cell in every frame; 0.5 means it wanders
    one cell on average (one cell is the backbone's stride, 16 pixels for the paper's ResNet50).
    """
    cells = peak_cells(maps).astype(np.float32)  # (T, N, 2)
    centre = np.median(cells, axis=0, keepdims=True)
    d = np.linalg.norm(cells - centre, axis=-1).mean(axis=0)
    return 1.0 / (1.0 + d)


def peak_keypoint_distance(peaks: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Pixel distance from each peak to the keypoint of the same part, NaN where it is not visible.

    Args:
        peaks: (T, N, 2) peak points in frame pixels (``peak_points``).
        keypoints: (T, N, 3) keypoints (x, y, v) in the same pixels; unlabeled frames are all zero.

    Returns:
        (T, N) float, NaN where the keypoint is not labeled visible.
    """
    peaks = np.asarray(peaks, dtype=np.float32)
    kps = np.asarray(keypoints, dtype=np.float32)
    if peaks.shape[:-1] != kps.shape[:-1]:
        raise ValueError(
            f"peaks {peaks.shape} and keypoints {kps.shape} must cover the same frames and parts."
        )
    d = np.linalg.norm(peaks - kps[..., :2], axis=-1)
    return np.where(kps[..., 2] >= VISIBLE, d, np.nan)


def draw_tracks(
    frames: np.ndarray,
    maps: np.ndarray,
    *,
    scale: float = 1.0,
    gap: int = 4,
    radius: float = 3.0,
    colors: Sequence[tuple[int, int, int]] = PART_COLORS,
    geometry: CellGeometry | None = None,
) -> np.ndarray:
    """Frames side by side with each part's peak drawn and joined frame to frame, in the part's colour.

    A part that stays on its body part draws a flat line across the strip; one that jumps shows it.

    Args:
        frames: (T, H, W, 3) uint8.
        maps: (T, N, h, w).
        scale: display scale of each frame.
        gap: pixels between frames.
        radius: point radius.
        colors: RGB per part.
        geometry: the cells' receptive-field geometry (``peak_points``).

    Returns:
        (round(H * scale), T * (round(W * scale) + gap) - gap, 3) uint8.
    """
    frames, maps = _check(frames, maps)
    t, h, w, _ = frames.shape
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    strip = Image.new("RGB", (t * (sw + gap) - gap, sh), (255, 255, 255))
    for i in range(t):
        strip.paste(
            Image.fromarray(frames[i]).resize((sw, sh), Image.Resampling.BILINEAR), (i * (sw + gap), 0)
        )
    pts = peak_points(maps, (w, h), geometry) * (sw / w, sh / h)  # (T, N, 2) in the scaled frame
    offsets = (np.arange(t) * (sw + gap))[:, None]
    draw = ImageDraw.Draw(strip)
    tracks = [
        [(float(pts[i, j, 0] + offsets[i, 0]), float(pts[i, j, 1])) for i in range(t)]
        for j in range(maps.shape[1])
    ]
    for j, xy in enumerate(tracks):  # all lines first, so that no track hides another part's peak
        if t > 1:
            draw.line(xy, fill=tuple(colors[j % len(colors)]), width=max(1, round(radius / 2)))
    for j, xy in enumerate(tracks):
        for x, y in xy:
            box = [x - radius, y - radius, x + radius, y + radius]
            draw.ellipse(box, fill=tuple(colors[j % len(colors)]), outline=(0, 0, 0))
    return np.asarray(strip)


def _check(frames: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    frames = np.asarray(frames)
    maps = np.asarray(maps, dtype=np.float32)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) RGB, got shape {frames.shape}.")
    if maps.ndim != 4 or maps.shape[0] != frames.shape[0]:
        raise ValueError(
            f"maps must be (T, N, h, w) with T={frames.shape[0]} frames, got shape {maps.shape}."
        )
    if frames.dtype != np.uint8:
        frames = np.clip(frames, 0, 255).astype(np.uint8)
    return frames, maps


def frames_to_array(images: Sequence[Image.Image], size: Sequence[int] | None = None) -> np.ndarray:
    """PIL frames -> (T, H, W, 3) uint8, resized to ``size`` = (W, H) when given (default: the first's)."""
    if not images:
        raise ValueError("a tracklet needs at least one frame.")
    size = tuple(size) if size is not None else images[0].size
    return np.stack([np.asarray(im.convert("RGB").resize(size, Image.Resampling.BILINEAR)) for im in images])
