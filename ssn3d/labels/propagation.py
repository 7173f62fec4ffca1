"""More anchors from the same labels: labeled keypoints carried to nearby frames by feature matching.

**Not in the paper.** The paper anchors SSN on the frames a person labeled ("Semi-supervised
Training", two per tracklet) and nowhere else. Here each labeled keypoint is carried to the frames
within ``radius`` of its frame in the same tracklet, where a backbone's features say it went:

1. the keypoint's feature is the one of the feature-map cell whose receptive-field centre is nearest
   (``CellGeometry.cell_of``, the training anchors' rule);
2. its best match in the neighbour's map is the cell of highest cosine similarity within ``search``
   cells (Chebyshev) of the same position: a tracklet is a person-centred crop, parts move little;
3. the match is kept when its similarity is at least ``threshold`` AND it is mutual: the best match
   of the neighbour's cell back in the labeled frame (within ``search`` of it) lies within one cell
   of the keypoint's cell. The second test rejects a match that is merely the least bad one, e.g. a
   left knee that finds the right knee as similar as itself;
4. a kept match becomes a propagated keypoint at the receptive-field centre of the matched cell,
   v = 2, with its similarity as confidence. When several labeled frames reach one neighbour, each
   part keeps its most similar match. Parts without a kept match stay unlabeled (v = 0), and a
   frame that is itself labeled is never a target: a manual label is never overwritten.

The feature extractor is any backbone, (B, 3, H, W) -> (B, C, h, w): a run's checkpoint's, or an
ImageNet one. A random-init backbone matches colours and edges only, so this is meant with
pretrained or checkpoint weights. Per tracklet, every frame needed goes through the backbone in one
batched forward, and all (labeled frame, part, neighbour) matches are one gather and one reduction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssn3d.data.tracklet import Tracklet
from ssn3d.data.transforms import ClipTransform
from ssn3d.data.video import read_frames
from ssn3d.keypoints import NUM_PARTS, PARTS, VISIBLE, CellGeometry, anchor_mask, resize_keypoints
from ssn3d.models.cells import measure_geometry

_logger = logging.getLogger(__name__)

SOURCE = "propagated"  # the label store's "source" of a propagated frame
MUTUAL_TOLERANCE = 1  # cells (Chebyshev) between the keypoint's cell and the match's best match back
_GATHER_ELEMENTS = 1 << 23  # floats per gathered block of search windows: bounds memory on long tracklets

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class PropagationParams:
    """How far and how strictly labels are carried.

    Attributes:
        threshold: the least cosine similarity of a kept match (0 < threshold <= 1).
        radius: frames on each side of a labeled frame that receive its keypoints.
        search: cells (Chebyshev) around the keypoint's position searched in the neighbour.
    """

    threshold: float = 0.8
    radius: int = 3
    search: int = 2

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold={self.threshold} must lie in (0, 1] (a cosine similarity).")
        if self.radius < 1:
            raise ValueError(f"radius={self.radius} must be at least 1 frame.")
        if self.search < 0:
            raise ValueError(f"search={self.search} must be >= 0 cells.")


@dataclass
class PropagatedFrame:
    """One frame's propagated keypoints.

    Attributes:
        keypoints: (9, 3) x, y, v in the frame's pixels; v = 2 where a part was matched, zeros elsewhere.
        confidence: (9,) the kept match's cosine similarity, 0 where no part was matched.
        size: the frame's (width, height) in pixels (the scale of PCK's tolerance).
    """

    keypoints: np.ndarray
    confidence: np.ndarray
    size: tuple[int, int]

    @property
    def parts(self) -> int:
        return int((self.keypoints[:, 2] >= VISIBLE).sum())


@dataclass
class Matches:
    """Best matches of P query cells (see ``match_cells``); every field has P rows."""

    cells: torch.Tensor  # (P, 2) long (col, row): the best match in the target frame
    similarity: torch.Tensor  # (P,) its cosine similarity
    back: torch.Tensor  # (P, 2) long: the best match of that cell back in the source frame
    mutual: torch.Tensor  # (P,) bool: ``back`` within MUTUAL_TOLERANCE cells of the query cell
    keep: torch.Tensor  # (P,) bool: mutual and similarity >= threshold


def _window_offsets(search: int, device: torch.device) -> torch.Tensor:
    r = torch.arange(-search, search + 1, device=device)
    return torch.cartesian_prod(r, r)  # (W, 2) (dcol, drow), W = (2 search + 1)^2


def _best_in_window(
    feats: torch.Tensor, frame: torch.Tensor, centre: torch.Tensor, query: torch.Tensor, search: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query, the most similar cell of ``feats[frame]`` within ``search`` cells of ``centre``.

    Args:
        feats: (L, h, w, C) unit-length features.
        frame: (P,) frame index of each query.
        centre: (P, 2) long (col, row) where its window is centred.
        query: (P, C) unit-length query features.
        search: the window's half size in cells.

    Returns:
        (P, 2) long best cells and (P,) their cosine similarity.
    """
    _, h, w, c = feats.shape
    offsets = _window_offsets(search, feats.device)  # (W, 2)
    best_cells = torch.empty_like(centre)
    best_sim = torch.empty(len(frame), dtype=feats.dtype, device=feats.device)
    block = max(1, _GATHER_ELEMENTS // (len(offsets) * c))
    for s in range(0, len(frame), block):
        e = min(len(frame), s + block)
        cells = centre[s:e, None, :] + offsets[None]  # (p, W, 2)
        inside = (cells[..., 0] >= 0) & (cells[..., 0] < w) & (cells[..., 1] >= 0) & (cells[..., 1] < h)
        col, row = cells[..., 0].clamp(0, w - 1), cells[..., 1].clamp(0, h - 1)
        windows = feats[frame[s:e, None], row, col]  # (p, W, C)
        sim = torch.einsum("pwc,pc->pw", windows, query[s:e]).masked_fill(~inside, -2.0)  # (p, W)
        best_sim[s:e], k = sim.max(1)
        best_cells[s:e] = cells[torch.arange(e - s, device=feats.device), k]
    return best_cells, best_sim


def match_cells(
    feats: torch.Tensor,
    src: torch.Tensor,
    dst: torch.Tensor,
    cells: torch.Tensor,
    *,
    search: int,
    threshold: float,
) -> Matches:
    """Match P cells of source frames into target frames, with the mutual check.

    Args:
        feats: (L, C, h, w) feature maps of the L frames (any scale: they are normalised here).
        src: (P,) long, the source frame of each query.
        dst: (P,) long, its target frame.
        cells: (P, 2) long (col, row) query cells in their source frames.
        search: window half size in cells, for the match and for the match back.
        threshold: the least cosine similarity of a kept match.

    Returns:
        ``Matches`` of the P queries.
    """
    unit = F.normalize(feats.float(), dim=1).permute(0, 2, 3, 1).contiguous()  # (L, h, w, C)
    query = unit[src, cells[:, 1], cells[:, 0]]  # (P, C)
    found, sim = _best_in_window(unit, dst, cells, query, search)
    back, _ = _best_in_window(unit, src, found, unit[dst, found[:, 1], found[:, 0]], search)
    mutual = (back - cells).abs().amax(1) <= MUTUAL_TOLERANCE
    return Matches(found, sim, back, mutual, mutual & (sim >= threshold))


# Long on purpose: long only by its docstring (the matching rule); the body is one loop.
def propagate_features(
    feats: torch.Tensor,
    labeled: Mapping[int, np.ndarray],
    geometry: CellGeometry,
    params: PropagationParams,
    frames: Sequence[int] | None = None,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Propagate the keypoints of a tracklet's labeled frames to their neighbours, given the frames' features.

    Args:
        feats: (L, C, h, w) features of L frames of one tracklet.
        labeled: {frame number: (9, 3) keypoints in the pixels of the frames the features were computed
            from}; only v = 2 parts are carried. Every labeled frame number must be one of ``frames``.
        geometry: where the feature cells look in those frames.
        params: radius, search window and threshold.
        frames: the frame number of each of the L rows of ``feats`` (default 0..L-1); ``radius``
            counts frame numbers, so rows need not be consecutive.

    Returns:
        {target frame number: ((9, 3) keypoints in model pixels, (9,) confidence)} for every unlabeled
        frame within ``radius`` of a labeled one that received at least one part.
    """
    _, _, fh, fw = feats.shape
    frames = list(range(len(feats))) if frames is None else [int(f) for f in frames]
    row_of = {f: r for r, f in enumerate(frames)}
    src, dst, part, cells = [], [], [], []
    for i, kps in sorted(labeled.items()):
        kps = np.asarray(kps, np.float32)
        parts = np.flatnonzero(anchor_mask(kps))
        if not len(parts):
            continue
        col, row = geometry.cell_of(kps[parts, :2].astype(np.float64), (fw, fh))
        for j in frames:
            if abs(j - i) > params.radius or j in labeled:  # never overwrite a label
                continue
            src += [row_of[i]] * len(parts)
            dst += [row_of[j]] * len(parts)
            part += parts.tolist()
            cells += np.stack([col, row], -1).astype(np.int64).tolist()
    if not src:
        return {}
    device = feats.device
    m = match_cells(
        feats,
        torch.tensor(src, device=device),
        torch.tensor(dst, device=device),
        torch.tensor(cells, device=device, dtype=torch.long),
        search=params.search,
        threshold=params.threshold,
    )
    keep = m.keep.cpu().numpy()
    dst_k, part_k = np.asarray(dst)[keep], np.asarray(part)[keep]
    sim_k = m.similarity.cpu().numpy()[keep]
    points = geometry.centre_of(m.cells.cpu().numpy()[keep])  # (K, 2) model pixels
    # per (target frame, part) the most similar kept match: sort by similarity, first of each key wins
    order = np.lexsort((-sim_k, part_k, dst_k))
    key = dst_k[order] * NUM_PARTS + part_k[order]
    first = order[np.r_[True, key[1:] != key[:-1]]] if len(order) else order
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for k in first:
        kps, conf = out.setdefault(
            frames[int(dst_k[k])], (np.zeros((NUM_PARTS, 3), np.float32), np.zeros(NUM_PARTS, np.float32))
        )
        kps[part_k[k]] = (points[k, 0], points[k, 1], VISIBLE)
        conf[part_k[k]] = sim_k[k]
    return out


def _label_windows(num_frames: int, labeled: Sequence[int], radius: int) -> list[int]:
    """Frame indices within ``radius`` of any labeled frame (the labeled ones included), sorted."""
    need: set[int] = set()
    for i in labeled:
        need.update(range(max(0, i - radius), min(num_frames, i + radius + 1)))
    return sorted(need)


@torch.inference_mode()
def propagate_tracklet(
    backbone: nn.Module,
    paths: Sequence[str],
    labeled: Mapping[int, np.ndarray],
    *,
    height: int,
    width: int,
    params: PropagationParams,
    geometry: CellGeometry | None = None,
) -> dict[int, PropagatedFrame]:
    """Propagate one tracklet's labels (one batched forward of the frames near its labeled ones).

    Args:
        backbone: the feature extractor, in eval mode; its device is used.
        paths: the tracklet's frame files, in temporal order.
        labeled: {frame index: (9, 3) keypoints in that frame file's own pixels}.
        height: H the frames are resized to (the backbone's training size).
        width: W.
        params: radius, search window and threshold.
        geometry: the backbone's cell geometry (default: measured, ``measure_geometry``).

    Returns:
        {frame index: PropagatedFrame in its file's pixels}; frames in ``labeled`` never appear.
    """
    if not labeled:
        return {}
    geometry = geometry or measure_geometry(backbone)
    need = _label_windows(len(paths), list(labeled), params.radius)
    images, originals, used = read_frames(paths, need, (width, height), skip_corrupt=True)
    # an unreadable frame is replaced by a neighbour in read_frames: such a frame is neither source nor target
    real = [k for k, (i, j) in enumerate(zip(need, used)) if i == j]
    numbers = [need[k] for k in real]
    if not real:
        return {}
    device = next((p.device for p in backbone.parameters()), torch.device("cpu"))
    clip = ClipTransform(height, width, train=False).to_tensor([images[k] for k in real]).to(device)
    feats = backbone(clip)  # (L, C, h, w)
    size_of = {need[k]: originals[k] for k in real}
    model_kps = {
        i: resize_keypoints(kps, size_of[i], (width, height)) for i, kps in labeled.items() if i in size_of
    }
    found = propagate_features(feats, model_kps, geometry, params, frames=numbers)
    out: dict[int, PropagatedFrame] = {}
    for i, (kps, conf) in found.items():
        out[i] = PropagatedFrame(resize_keypoints(kps, (width, height), size_of[i]), conf, tuple(size_of[i]))
    return out


# Long on purpose: long only by its docstring; the body is one loop over tracklets.
def propagate_labels(
    backbone: nn.Module,
    tracklets: Sequence[Tracklet],
    labels: Mapping[str, np.ndarray],
    relpath: Callable[[str], str],
    *,
    height: int,
    width: int,
    params: PropagationParams,
    progress: ProgressFn | None = None,
) -> dict[str, PropagatedFrame]:
    """Propagate a label store's keypoints within every tracklet that holds labeled frames.

    Args:
        backbone: the feature extractor (switched to eval mode here).
        tracklets: the tracklets to search (a frame is labeled when ``relpath(path)`` is in ``labels``).
        labels: {frame key (path relative to the dataset root): (9, 3) keypoints in its pixels}.
        relpath: frame path -> its key (``VideoReIDDataset.relpath``).
        height: H the backbone sees.
        width: W.
        params: radius, search window and threshold.
        progress: called as ``progress(done, total)`` after each tracklet with labels.

    Returns:
        {frame key: PropagatedFrame}; keys of ``labels`` never appear.
    """
    backbone.eval()
    geometry = measure_geometry(backbone)
    todo = []
    for t in tracklets:
        keys = [relpath(p) for p in t.paths]
        labeled = {i: labels[k] for i, k in enumerate(keys) if k in labels}
        if labeled:
            todo.append((t, keys, labeled))
    out: dict[str, PropagatedFrame] = {}
    t0 = time.perf_counter()
    for n, (t, keys, labeled) in enumerate(todo):
        found = propagate_tracklet(
            backbone, t.paths, labeled, height=height, width=width, params=params, geometry=geometry
        )
        for i, frame in found.items():
            key = keys[i]
            if key in labels:  # a frame listed in two tracklets, labeled through the other one
                continue
            old = out.get(key)
            out[key] = frame if old is None else _merge(old, frame)
        if progress is not None:
            progress(n + 1, len(todo))
    _logger.info(
        "Propagated labels to %d frames (%d parts) from %d labeled frames in %d tracklets in %.1f s "
        "(similarity >= %.2f, radius %d frames, search %d cells).",
        len(out),
        sum(f.parts for f in out.values()),
        sum(len(x[2]) for x in todo),
        len(todo),
        time.perf_counter() - t0,
        params.threshold,
        params.radius,
        params.search,
    )
    return out


def _merge(a: PropagatedFrame, b: PropagatedFrame) -> PropagatedFrame:
    """Per part, the more confident of two propagations of one frame."""
    take = b.confidence > a.confidence
    return PropagatedFrame(
        np.where(take[:, None], b.keypoints, a.keypoints), np.where(take, b.confidence, a.confidence), a.size
    )


# --------------------------------------------------------------------------- accuracy


def propagation_accuracy(
    propagated: Mapping[str, PropagatedFrame], truth: Mapping[str, np.ndarray], alpha: float = 0.1
) -> dict[str, Any]:
    """PCK of propagated points against true keypoints (generated data).

    A propagated part counts when the truth has it visible; it is correct within alpha x the frame's height.

    Returns:
        {"frames", "points", "pck", "per_part": {part: pck or None}}.
    """
    hits = np.zeros(NUM_PARTS)
    counts = np.zeros(NUM_PARTS)
    frames = 0
    for key, frame in propagated.items():
        gt = truth.get(key)
        if gt is None:
            continue
        gt = np.asarray(gt, np.float32)
        valid = (frame.keypoints[:, 2] >= VISIBLE) & (gt[:, 2] >= VISIBLE)
        frames += bool(valid.any())
        d = np.linalg.norm(frame.keypoints[:, :2] - gt[:, :2], axis=1)
        hits += valid & (d <= alpha * frame.size[1])
        counts += valid
    return {
        "frames": frames,
        "points": int(counts.sum()),
        "pck": float(hits.sum() / counts.sum()) if counts.sum() else None,
        "per_part": {p: (float(h / c) if c else None) for p, h, c in zip(PARTS, hits, counts)},
    }
