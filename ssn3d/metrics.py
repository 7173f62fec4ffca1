"""Retrieval metrics of video re-identification: CMC, mAP, mINP; distances; ranked galleries.

Paper, "Evaluation Protocols": mean average precision (Zheng et al. 2015) and the cumulative
matching characteristic. ``evaluate_rank`` keeps torchreid's semantics (``metrics/rank.py``):

* gallery items with the query's pid AND camera are junk and removed from its ranking;
* a query left without a match (same pid, other camera) is skipped, and counted;
* AP is non-interpolated: the mean over the query's matches of the precision at each match;
* CMC[k] is the fraction of (valid) queries whose first match is within the top k + 1.

Differences from torchreid: a query that keeps fewer than ``max_rank`` items no longer crashes
(its CMC stays at 1 after its first match); when NO query has a match a ``ValueError`` says so;
mINP (Ye et al. 2021: matches / rank of the last match) and per-query AP come with
``return_details=True``; ``ap_mode="mars_matlab"`` reproduces the official MARS/Market MATLAB code
(``compute_AP.m``: trapezoidal AP, and both AP and CMC averaged over ALL queries, a query without a
match counting 0). Default: ``"standard"`` (torchreid), which is what video re-id papers report.

Ties: an impostor at exactly the distance of a match is ranked before it (pessimistic), so a model
that outputs constant features scores the worst, not the best. torchreid breaks ties by its sort.

Speed: no sort of the distance matrix. The rank of a match among the kept items is (impostors at
distance <= its own) + (matches before it) + 1, so only the few matches per query are sorted and
the impostors are counted by vectorised comparisons, query rows grouped by their number of matches.
"""

from __future__ import annotations

import logging
from typing import Literal, NamedTuple

import numpy as np
import torch

log = logging.getLogger(__name__)

APMode = Literal["standard", "mars_matlab"]


class RankDetails(NamedTuple):
    """Per-query results of ``evaluate_rank(..., return_details=True)``.

    Attributes:
        ap: (Q,) average precision (NaN for queries without a match in "standard" mode, 0 in "mars_matlab").
        valid: (Q,) bool, the query has at least one match.
        inp: (Q,) inverse negative penalty, matches / rank of the last match (NaN without a match).
        first_hit: (Q,) 1-based rank of the first match among the kept items (0 without a match).
        num_matches: (Q,) matches per query.
        mINP: mean INP over valid queries.
        num_valid: number of queries with a match.
    """

    ap: np.ndarray
    valid: np.ndarray
    inp: np.ndarray
    first_hit: np.ndarray
    num_matches: np.ndarray
    mINP: float
    num_valid: int


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _match_pairs(q_pids, g_pids) -> tuple[np.ndarray, np.ndarray]:
    """All (query row, gallery column) pairs with the same pid, without a Q x G comparison."""
    order = np.argsort(g_pids, kind="stable")
    sorted_pids = g_pids[order]
    lo = np.searchsorted(sorted_pids, q_pids, side="left")
    hi = np.searchsorted(sorted_pids, q_pids, side="right")
    counts = hi - lo
    rows = np.repeat(np.arange(len(q_pids)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return rows, order[np.repeat(lo, counts) + offsets]


def _count_le(d: np.ndarray, thr: np.ndarray, k: int) -> np.ndarray:
    """(R, k) counts of the entries of each row of ``d`` (R, G) that are <= each of its first k thresholds."""
    # summing the comparison as uint8 is ~5x faster than count_nonzero(axis=1);
    # a uint16 sum cannot overflow for rows shorter than 2^16
    acc = np.uint16 if d.shape[1] < 1 << 16 else np.int64
    out = np.empty((d.shape[0], k), dtype=np.int64)
    for j in range(k):
        out[:, j] = (d <= thr[:, j : j + 1]).view(np.uint8).sum(axis=1, dtype=acc)
    return out


def hit_ranks(
    distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids, rows_per_block: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks of each query's matches among its kept gallery items (junk removed).

    Args:
        distmat: (Q, G) distances.
        q_pids, g_pids, q_camids, g_camids: (Q,), (G,), (Q,), (G,) ids and cameras.
        rows_per_block: query rows compared at once (bounds the temporary memory).

    Returns:
        ranks (Q, M) int64, ascending per row and 0-padded (M = most matches of any query), and
        num_matches (Q,).
    """
    q = distmat.shape[0]
    rows, cols = _match_pairs(q_pids, g_pids)  # every same-pid pair: a match or junk
    dist = distmat[rows, cols]
    is_match = q_camids[rows] != g_camids[cols]
    m_rows, m_dist = rows[is_match], dist[is_match]
    o = np.lexsort((m_dist, m_rows))
    m_rows, m_dist = m_rows[o], m_dist[o]
    num = np.bincount(m_rows, minlength=q)
    width = max(int(num.max(initial=0)), 1)
    m_pos = np.arange(len(m_rows)) - np.repeat(np.cumsum(num) - num, num)  # j of the j-th match of its row
    thresholds = np.full((q, width), np.inf, dtype=distmat.dtype)
    thresholds[m_rows, m_pos] = m_dist

    # same-pid items (matches and junk) at distance <= each match: exact integer keys (row, value order)
    ordinal = np.unique(np.concatenate([dist, m_dist]), return_inverse=True)[1].astype(np.int64)
    base = int(ordinal.max(initial=0)) + 1
    pair_keys = np.sort(rows.astype(np.int64) * base + ordinal[: len(dist)])
    match_keys = m_rows.astype(np.int64) * base + ordinal[len(dist) :]
    same_pid_le = np.searchsorted(pair_keys, match_keys, side="right") - np.searchsorted(
        pair_keys, m_rows.astype(np.int64) * base, side="left"
    )

    le = np.zeros((q, width), dtype=np.int64)  # all gallery items at distance <= the j-th match
    order = np.argsort(num, kind="stable")
    order = order[num[order] > 0]
    for s in range(0, len(order), rows_per_block):
        block = order[s : s + rows_per_block]
        k = int(num[block].max())
        le[block, :k] = _count_le(distmat[block], thresholds[block], k)
    impostors = np.zeros((q, width), dtype=np.int64)
    impostors[m_rows, m_pos] = le[m_rows, m_pos] - same_pid_le
    present = np.arange(width)[None] < num[:, None]
    ranks = np.where(present, impostors + np.arange(1, width + 1)[None], 0)
    return ranks, num


def _checked_inputs(distmat, q_pids, g_pids, q_camids, g_camids) -> tuple[np.ndarray, ...]:
    """Numpy copies of ``evaluate_rank``'s inputs, distances as floats; a ValueError names what disagrees."""
    d = _as_numpy(distmat)
    q_pids, g_pids, q_camids, g_camids = (_as_numpy(a).ravel() for a in (q_pids, g_pids, q_camids, g_camids))
    if (
        d.ndim != 2
        or d.shape != (len(q_pids), len(g_pids))
        or len(q_camids) != len(q_pids)
        or len(g_camids) != len(g_pids)
    ):
        raise ValueError(
            f"distmat {d.shape} must be (num queries, num gallery) = ({len(q_pids)}, {len(g_pids)}) "
            f"with {len(q_camids)} query and {len(g_camids)} gallery cameras to match."
        )
    if not np.issubdtype(d.dtype, np.floating):
        d = d.astype(np.float64)
    if np.isnan(d).any():
        raise ValueError("distmat holds NaN distances; check the features for NaN before ranking.")
    return d, q_pids, g_pids, q_camids, g_camids


def _ap_and_inp(ranks: np.ndarray, num: np.ndarray, ap_mode: APMode) -> tuple[np.ndarray, np.ndarray]:
    """(Q,) average precision and inverse negative penalty from ``hit_ranks``' (Q, M) ranks.

    A query without a match gets AP NaN in "standard" mode (0 in "mars_matlab") and INP NaN.
    """
    valid = num > 0
    hits = np.arange(1, ranks.shape[1] + 1)[None].astype(np.float64)  # j-th match -> j
    present = ranks > 0
    r = np.where(present, ranks, 1).astype(np.float64)
    precision = np.where(present, hits / r, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if ap_mode == "standard":
            ap = precision.sum(1) / num
        else:  # compute_AP.m: mean over matches of (precision before the match + precision at it) / 2
            before = np.where(r > 1, (hits - 1) / np.maximum(r - 1, 1), 1.0)
            ap = np.where(present, (before + precision) / 2, 0.0).sum(1) / num
            ap = np.where(valid, ap, 0.0)
        last = ranks[np.arange(len(num)), np.maximum(num - 1, 0)]
        inp = np.where(valid, num / np.maximum(last, 1), np.nan)
    return ap, inp


# Long on purpose: long only by its docstring (torchreid's semantics and the return); checks and AP are helpers.
def evaluate_rank(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 50,
    *,
    ap_mode: APMode = "standard",
    return_details: bool = False,
):
    """CMC and mAP of a query x gallery distance matrix (torchreid semantics, see the module docstring).

    Args:
        distmat: (Q, G) distances, smaller = more similar (numpy or torch).
        q_pids: (Q,) query person ids.
        g_pids: (G,) gallery person ids.
        q_camids: (Q,) query cameras.
        g_camids: (G,) gallery cameras.
        max_rank: length of the CMC curve (capped at G).
        ap_mode: "standard" (torchreid) or "mars_matlab" (official MARS code, all queries averaged).
        return_details: also return a ``RankDetails``.

    Returns:
        ``(cmc, mAP)``: cmc (min(max_rank, G),) float32 and mAP float; plus ``details`` if asked.

    Raises:
        ValueError: shapes disagree, or no query has a match in the gallery.
    """
    if ap_mode not in ("standard", "mars_matlab"):
        raise ValueError(f"ap_mode={ap_mode!r}; choose standard or mars_matlab.")
    d, q_pids, g_pids, q_camids, g_camids = _checked_inputs(distmat, q_pids, g_pids, q_camids, g_camids)
    g = d.shape[1]
    ranks, num = hit_ranks(d, q_pids, g_pids, q_camids, g_camids)
    valid = num > 0
    if not valid.any():
        raise ValueError(
            f"no query has a match in the gallery (same person, other camera) "
            f"among {len(q_pids)} queries and "
            f"{g} gallery items; check that query and gallery come from the same dataset split."
        )
    skipped = int((~valid).sum())
    if skipped:
        log.info("%d of %d queries have no match in the gallery and are skipped", skipped, len(q_pids))
    max_rank = max(1, min(int(max_rank), g))
    ap, inp = _ap_and_inp(ranks, num, ap_mode)
    first = np.where(valid, ranks[:, 0], 0)
    within = valid[:, None] & (first[:, None] <= np.arange(1, max_rank + 1)[None])
    if ap_mode == "standard":
        cmc = within[valid].mean(0).astype(np.float32)
        mean_ap = float(np.mean(ap[valid]))
    else:
        cmc = within.mean(0).astype(np.float32)
        mean_ap = float(np.mean(ap))
    if not return_details:
        return cmc, mean_ap
    details = RankDetails(
        ap=np.where(valid, ap, np.nan) if ap_mode == "standard" else ap,
        valid=valid,
        inp=inp,
        first_hit=first.astype(np.int64),
        num_matches=num.astype(np.int64),
        mINP=float(np.nanmean(inp[valid])),
        num_valid=int(valid.sum()),
    )
    return cmc, mean_ap, details


# --------------------------------------------------------------------------- distances and rankings


def compute_distance(
    qf, gf, metric: Literal["euclidean", "cosine"] = "euclidean", max_elements: int = 1 << 24
) -> np.ndarray:
    """Pairwise distances between query and gallery features, computed in blocks of query rows.

    Args:
        qf: (Q, D) query features (torch or numpy).
        gf: (G, D) gallery features.
        metric: "euclidean" (the L2 distance) or "cosine" (1 - cosine similarity).
        max_elements: at most this many distances are computed at once (bounds the memory).

    Returns:
        (Q, G) float32 distances.
    """
    q = torch.as_tensor(_as_numpy(qf) if not isinstance(qf, torch.Tensor) else qf).float()
    g = torch.as_tensor(_as_numpy(gf) if not isinstance(gf, torch.Tensor) else gf).float().to(q.device)
    if q.dim() != 2 or g.dim() != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(
            f"features must be (Q, D) and (G, D) with the same D; got {tuple(q.shape)} and {tuple(g.shape)}."
        )
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric={metric!r}; choose euclidean or cosine.")
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
        g = torch.nn.functional.normalize(g, dim=1)
    else:
        g_sq = (g * g).sum(1)[None]
    out = np.empty((q.shape[0], g.shape[0]), dtype=np.float32)
    step = max(1, max_elements // max(g.shape[0], 1))
    for s in range(0, q.shape[0], step):
        qb = q[s : s + step]
        if metric == "cosine":
            block = 1.0 - qb @ g.T
        else:  # |q|^2 + |g|^2 - 2 q.g, clamped: rounding can make it slightly negative
            block = ((qb * qb).sum(1)[:, None] + g_sq - 2.0 * (qb @ g.T)).clamp_(min=0).sqrt_()
        out[s : s + step] = block.cpu().numpy()
    return out


class Ranking(NamedTuple):
    """Ranked gallery of each query, junk removed (for the retrieval viewer).

    Attributes:
        indices: (Q, k) gallery indices, best first; -1 pads rows that keep fewer than k items.
        distances: (Q, k) their distances (inf on padding).
        matches: (Q, k) bool, same pid as the query (and another camera, since junk is removed).
    """

    indices: np.ndarray
    distances: np.ndarray
    matches: np.ndarray


def rank_gallery(distmat, q_pids, g_pids, q_camids, g_camids, topk: int | None = 10) -> Ranking:
    """For each query, the gallery sorted by distance without same-pid-same-camera junk.

    Args:
        distmat: (Q, G) distances.
        q_pids, g_pids, q_camids, g_camids: ids and cameras as in ``evaluate_rank``.
        topk: keep the first k kept items (None: all G).

    Returns:
        a ``Ranking``; ties keep gallery order.
    """
    d = _as_numpy(distmat).astype(np.float64, copy=False)
    q_pids, g_pids, q_camids, g_camids = (_as_numpy(a).ravel() for a in (q_pids, g_pids, q_camids, g_camids))
    if d.shape != (len(q_pids), len(g_pids)):
        raise ValueError(f"distmat {d.shape} must be ({len(q_pids)}, {len(g_pids)}).")
    k = d.shape[1] if topk is None else max(0, min(int(topk), d.shape[1]))
    junk = (g_pids[None] == q_pids[:, None]) & (g_camids[None] == q_camids[:, None])
    order = np.lexsort((d, junk), axis=-1)  # kept items first, each part by distance (stable)
    kept = ~np.take_along_axis(junk, order, 1)
    idx = np.where(kept[:, :k], order[:, :k], -1)
    dist = np.where(idx >= 0, np.take_along_axis(d, np.maximum(idx, 0), 1), np.inf)
    matches = (idx >= 0) & (g_pids[np.maximum(idx, 0)] == q_pids[:, None])
    return Ranking(indices=idx, distances=dist, matches=matches)
