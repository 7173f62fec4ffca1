"""Part PCK: how well SSN's parts land on the body's keypoints (the percentage of correct keypoints).

Part i of a frame is correct at alpha when its attention peak, as an image point, lies within alpha x
crop height of the visible keypoint i (PCK as in pose estimation; alpha 0.1 and 0.2). Unsupervised
parts have no names, so each is first matched to one keypoint by the assignment that maximises its
hits (Hungarian, ``scipy.optimize.linear_sum_assignment``). Two baselines make the number readable:
every part at the mean labeled position of its keypoint, and a peak in a uniformly random cell (its
expected PCK, computed exactly over the cells).

``pck_hits`` to ``pck_summary`` work on image points and never map cells to pixels; ``maps_pck`` and
``alignment_summary`` start from attention maps (T, N, h, w), and every image point they use (argmax
peak, soft peak, random cell) comes from ``ssn3d.attention.peak_points``: one mapping from cells to
pixels for the overlays, the tracks and the PCK.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ssn3d.attention import peak_keypoint_distance, peak_points, stability
from ssn3d.keypoints import FLIP_PERMUTATION, PARTS, VISIBLE, CellGeometry, resize_keypoints

PCK_ALPHAS: tuple[float, ...] = (0.1, 0.2)  # fractions of the crop height (pose estimation's usual pair)


def _part_name(k: int) -> str:
    return PARTS[k] if k < len(PARTS) else f"keypoint {k}"


def pck_hits(points: np.ndarray, kps: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Hits of every predicted part on every keypoint.

    Args:
        points: (F, N, 2) predicted part positions in image pixels.
        kps: (F, K, 3) true keypoints (x, y, v) in the same pixels.
        tol: pixels.

    Returns:
        hits (F, N, K) bool, and visible (F, K) bool (only visible keypoints count).
    """
    points, kps = np.asarray(points), np.asarray(kps)  # dtypes kept: a cast could move a hit at the edge
    d = np.linalg.norm(points[:, :, None, :] - kps[:, None, :, :2], axis=-1)  # (F, N, K)
    visible = kps[..., 2] >= VISIBLE
    return (d <= tol) & visible[:, None, :], visible


def match_parts(hits: np.ndarray) -> list[int]:
    """The keypoint of each part that maximises the total hits (each keypoint used once; -1: none left).

    Args:
        hits: (F, N, K) hits (``pck_hits``), or their (N, K) totals.
    """
    from scipy.optimize import linear_sum_assignment

    total = np.asarray(hits)
    total = total.sum(0) if total.ndim == 3 else total
    rows, cols = linear_sum_assignment(-total)
    assign = dict(zip(rows.tolist(), cols.tolist()))
    return [assign.get(i, -1) for i in range(total.shape[0])]


def pck_report(
    points: np.ndarray,
    kps: np.ndarray,
    tol: float,
    match: bool = False,
    assignment: Sequence[int] | None = None,
) -> dict[str, Any]:
    """PCK per part and overall at one tolerance.

    Args:
        points: (F, N, 2) predicted part positions.
        kps: (F, K, 3) true keypoints.
        tol: pixels.
        match: assign parts to keypoints first (``match_parts`` at this tolerance).
        assignment: a given keypoint per part (overrides ``match``); default part i -> keypoint i.

    Returns:
        {"per_part": {keypoint name: pck}, "overall": hits over all visible keypoints (an unmatched
        keypoint counts as missed), "assignment": [keypoint of part i]}.
    """
    hits, visible = pck_hits(points, kps, tol)
    n, k = hits.shape[1:]
    if assignment is None:
        assignment = match_parts(hits) if match else [i if i < k else -1 for i in range(n)]
    per_part, total_hits = {}, 0
    for i, j in enumerate(assignment):
        if j < 0:
            continue
        per_part[_part_name(j)] = round(float(hits[:, i, j].sum() / max(1, visible[:, j].sum())), 4)
        total_hits += int(hits[:, i, j].sum())
    overall = total_hits / max(1, int(visible.sum()))
    return {"per_part": per_part, "overall": round(overall, 4), "assignment": [int(j) for j in assignment]}


def best_side_report(points: np.ndarray, kps: np.ndarray, tol: float) -> dict[str, Any]:
    """PCK with each frame's left and right sides read whichever way fits that frame better (a diagnostic).

    In a frame whose person faces the camera the left limbs are on the image's right; facing away, on
    its left. A window sees a limb but not which way the person faces, so a model can find every limb
    and still name the sides wrongly. Per frame the hits are counted twice, against the keypoints as
    labeled and against them mirrored (every left and right part swapped, ``FLIP_PERMUTATION``), and
    the larger count is kept: the gap to plain PCK is the share of hits lost to side swaps alone.
    Each keypoint is still matched by one part, so two parts on one limb do not both count.

    Args:
        points: (F, 9, 2) predicted positions of the named parts.
        kps: (F, 9, 3) true keypoints.
        tol: pixels.
    """
    swapped = np.asarray(kps)[:, list(FLIP_PERMUTATION)]
    straight_hits, visible = pck_hits(points, kps, tol)
    swapped_hits, swapped_visible = pck_hits(points, swapped, tol)
    diag = np.arange(len(FLIP_PERMUTATION))
    straight = straight_hits[:, diag, diag]  # (F, 9): part i on keypoint i
    mirrored = swapped_hits[:, diag, diag]  # part i on the mirror keypoint of i
    use_mirror = mirrored.sum(1) > straight.sum(1)  # (F,)
    hits = np.where(use_mirror[:, None], mirrored, straight)
    vis = np.where(use_mirror[:, None], swapped_visible, visible)
    per_part = {  # part i against the keypoint it is read as (its own, or its mirror's in a mirrored frame)
        _part_name(i): round(float(hits[:, i].sum() / max(1, vis[:, i].sum())), 4) for i in range(len(diag))
    }
    return {
        "per_part": per_part,
        "overall": round(float(hits.sum() / max(1, vis.sum())), 4),
        "frames_read_mirrored": round(float(use_mirror.mean()) if len(use_mirror) else 0.0, 4),
    }


def random_peak_pck(kps: np.ndarray, cell_centres: np.ndarray, tol: float) -> dict[str, Any]:
    """Expected PCK of a peak in a uniformly random cell, exactly: the share of cells within ``tol``.

    Args:
        kps: (F, K, 3) true keypoints.
        cell_centres: (C, 2) the image point of every cell (``cell_centres``).
        tol: pixels.

    Returns:
        {"per_part": {keypoint name: pck}, "overall": pck}.
    """
    kps = np.asarray(kps)
    visible = kps[..., 2] >= VISIBLE
    d = np.linalg.norm(kps[:, :, None, :2] - np.asarray(cell_centres)[None, None], axis=-1)  # (F, K, C)
    share = (d <= tol).mean(-1) * visible  # (F, K): chance of a hit on each visible keypoint
    per_part = {
        _part_name(j): round(float(share[:, j].sum() / max(1, visible[:, j].sum())), 4)
        for j in range(kps.shape[1])
    }
    return {"per_part": per_part, "overall": round(float(share.sum() / max(1, visible.sum())), 4)}


def mean_positions(labeled_kps: np.ndarray) -> np.ndarray:
    """(F, K, 3) labels -> (K, 2) mean position of each keypoint over the frames where it is visible."""
    lab = np.asarray(labeled_kps)
    vis = lab[..., 2] >= VISIBLE
    return (lab[..., :2] * vis[..., None]).sum(0) / np.maximum(vis.sum(0), 1)[:, None]


def part_pck(
    peaks: Mapping[str, np.ndarray],
    kps: np.ndarray,
    *,
    height: float,
    cell_centres: np.ndarray,
    prior: np.ndarray | None = None,
    prior_source: str = "",
    match: bool = False,
    alphas: Sequence[float] = PCK_ALPHAS,
) -> dict[str, Any]:
    """Part PCK of each way of placing a part, with the mean-position and random-peak baselines.

    Args:
        peaks: method name (e.g. "argmax", "soft_argmax") -> (F, N, 2) part positions in image pixels.
        kps: (F, K, 3) true keypoints of the same frames, same pixels.
        height: crop height in those pixels (the tolerance is alpha x height).
        cell_centres: (C, 2) image point of every feature cell, for the random peak.
        prior: (F', K, 3) labels whose mean position is the mean-position baseline (default: ``kps``).
        prior_source: what ``prior`` is, recorded in the result.
        match: match parts to keypoints (unsupervised parts have no names); one assignment per
            method, the one that maximises its hits summed over the alphas.
        alphas: PCK thresholds.

    Returns:
        {"alphas", "tolerance_px", "frames", "visible_keypoints", "matched", "mean_position_source",
        "methods": {method | "mean_position" | "random": {"pck@a": {"overall", "per_part"[, "assignment"]}}}},
        with "argmax_best_side" (``best_side_report``) beside them for named, unmatched parts.
    """
    kps = np.asarray(kps)
    tols = [float(a) * float(height) for a in alphas]
    methods: dict[str, dict[str, Any]] = {}
    for name, points in peaks.items():
        assignment = None
        if match:
            assignment = match_parts(sum(pck_hits(points, kps, t)[0].sum(0) for t in tols))
        methods[name] = {
            f"pck@{a:g}": pck_report(points, kps, t, assignment=assignment) for a, t in zip(alphas, tols)
        }
    named = not match and kps.shape[1] == len(FLIP_PERMUTATION) and "argmax" in peaks
    if named and peaks["argmax"].shape[1] == kps.shape[1]:  # a diagnostic for the named parts only
        methods["argmax_best_side"] = {
            f"pck@{a:g}": best_side_report(peaks["argmax"], kps, t) for a, t in zip(alphas, tols)
        }
    mean = mean_positions(kps if prior is None else prior)
    at_mean = np.broadcast_to(mean, (len(kps), *mean.shape))
    methods["mean_position"] = {f"pck@{a:g}": pck_report(at_mean, kps, t) for a, t in zip(alphas, tols)}
    methods["random"] = {f"pck@{a:g}": random_peak_pck(kps, cell_centres, t) for a, t in zip(alphas, tols)}
    return {
        "alphas": [float(a) for a in alphas],
        "tolerance_px": [round(t, 3) for t in tols],
        "frames": int(len(kps)),
        "visible_keypoints": int((kps[..., 2] >= VISIBLE).sum()),
        "matched": bool(match),
        "mean_position_source": prior_source or ("the evaluated frames" if prior is None else "given labels"),
        "methods": methods,
    }


def pck_summary(report: Mapping[str, Any], method: str = "argmax") -> dict[str, float]:
    """The overall PCKs of one method of a ``part_pck`` report, flat: {"pck@0.1": ..., "pck@0.2": ...}."""
    return {key: float(v["overall"]) for key, v in report["methods"][method].items()}


# --------------------------------------------------------------------------- part PCK of attention maps
# Every image point below comes from ``peak_points``.


def cell_centres(
    feature_size: Sequence[int], image_size: Sequence[int], geometry: CellGeometry | None = None
) -> np.ndarray:
    """The image point of every cell of a (w, h) feature map, row-major: (h * w, 2).

    Found as the peaks of one-hot maps, so it is exactly where ``peak_points`` puts a peak there.
    """
    fw, fh = int(feature_size[0]), int(feature_size[1])
    return peak_points(np.eye(fh * fw, dtype=np.float32).reshape(fh * fw, fh, fw), image_size, geometry)


def soft_peak_points(
    maps: np.ndarray, image_size: Sequence[int], geometry: CellGeometry | None = None
) -> np.ndarray:
    """Each map's soft-argmax in frame pixels: its mean cell point, weighted by the map (..., h, w) -> (..., 2).

    Maps are normalised to sum 1 first (SSN's already do, eq. 2); an all-zero map gives its grid's centre.
    """
    maps = np.asarray(maps, dtype=np.float64)
    flat = maps.reshape(*maps.shape[:-2], -1)  # (..., h*w)
    total = flat.sum(-1, keepdims=True)
    weights = np.divide(flat, total, out=np.full_like(flat, 1.0 / flat.shape[-1]), where=total > 0)
    return weights @ cell_centres((maps.shape[-1], maps.shape[-2]), image_size, geometry).astype(np.float64)


def maps_pck(
    maps: np.ndarray,
    keypoints: np.ndarray,
    image_size: Sequence[int],
    *,
    prior: np.ndarray | None = None,
    prior_source: str = "",
    match: bool = False,
    geometry: CellGeometry | None = None,
) -> dict[str, Any]:
    """Part PCK of attention maps against keypoints, argmax and soft-argmax peaks, with both baselines.

    Args:
        maps: (F, N, h, w) attention maps of F frames.
        keypoints: (F, K, 3) their keypoints in frame pixels of ``image_size``.
        image_size: (W, H) of the frames; the tolerance is alpha x H.
        prior: labels (F', K, 3) in the same pixels for the mean-position baseline (default: ``keypoints``).
        prior_source: what ``prior`` is, for the record.
        match: unsupervised parts: match each to a keypoint first (``match_parts``).
        geometry: the model's cell geometry (``SSN3D.cell_geometry``); default as ``peak_points``.

    Returns:
        ``part_pck``'s report.
    """
    maps = np.asarray(maps, dtype=np.float32)
    peaks = {
        "argmax": peak_points(maps, image_size, geometry),
        "soft_argmax": soft_peak_points(maps, image_size, geometry),
    }
    return part_pck(
        peaks,
        keypoints,
        height=float(image_size[1]),
        cell_centres=cell_centres((maps.shape[-1], maps.shape[-2]), image_size, geometry),
        prior=prior,
        prior_source=prior_source,
        match=match,
    )


def merge_keypoints(
    ground_truth: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Keypoints per frame key: the ground truth where a frame has it (exact), else the frame's labels."""
    return {**labels, **ground_truth}


def alignment_summary(
    maps: np.ndarray,
    frame_keys: Sequence[str],
    frame_sizes: Sequence[Sequence[int]],
    image_size: Sequence[int],
    *,
    ground_truth: Mapping[str, np.ndarray] | None = None,
    labels: Mapping[str, np.ndarray] | None = None,
    match: bool = False,
) -> dict[str, Any]:
    """One tracklet's part-alignment numbers: stability, peak-to-keypoint distance and PCK per part.

    Args:
        maps: (T, N, h, w) attention maps of the frames.
        frame_keys: the frames' label-store keys.
        frame_sizes: each frame's original (width, height), the pixels its keypoints are in.
        image_size: (W, H) the maps were computed at (the model's input).
        ground_truth: true keypoints by frame key (generated data), preferred over ``labels``.
        labels: labeled keypoints by frame key.
        match: unsupervised parts: match each to a keypoint first.

    Returns:
        {"rows": one dict per part ("part", "stability", and with keypoints "keypoint", "peak to keypoint
        (px)", "frames with keypoint", "PCK@0.1", "PCK@0.2"), "stability": mean stability,
        "pck": ``maps_pck`` report or None when no frame has a visible keypoint}.
    """
    maps = np.asarray(maps, dtype=np.float32)
    t, n = maps.shape[:2]
    names = list(PARTS) if n == len(PARTS) else [f"part {i}" for i in range(n)]
    score = stability(maps)
    rows: list[dict[str, Any]] = [
        {"part": names[i], "stability": round(float(score[i]), 3)} for i in range(n)
    ]
    out: dict[str, Any] = {"rows": rows, "stability": round(float(score.mean()), 3), "pck": None}
    known = merge_keypoints(ground_truth or {}, labels or {})
    if len(frame_keys) != t or len(frame_sizes) != t:
        raise ValueError(f"{t} frames of maps need {t} frame keys and sizes, got {len(frame_keys)}.")
    kps = np.zeros((t, len(PARTS), 3), np.float32)
    for f, (key, size) in enumerate(zip(frame_keys, frame_sizes)):
        if key in known:
            kps[f] = resize_keypoints(known[key], size, image_size)
    if not (kps[..., 2] >= VISIBLE).any():
        return out
    report = maps_pck(maps, kps, image_size, match=match)
    out["pck"] = report
    argmax = report["methods"]["argmax"]
    assignment = argmax["pck@0.1"]["assignment"]
    for i, row in enumerate(rows):
        j = assignment[i] if i < len(assignment) else -1
        if j < 0:
            continue
        row["keypoint"] = PARTS[j]
        col = peak_keypoint_distance(peak_points(maps[:, i], image_size), kps[:, j])
        row["peak to keypoint (px)"] = None if np.isnan(col).all() else round(float(np.nanmean(col)), 1)
        seen = int((~np.isnan(col)).sum())
        row["frames with keypoint"] = seen
        for key, rep in argmax.items():
            row[key.upper()] = rep["per_part"][PARTS[j]] if seen else None
    return out
