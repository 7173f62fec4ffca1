"""Losses of SSN3D (paper, "Training with Hard Samples Mining" and "Loss Function").

* ``BatchHardTriplet``: eq. (5), batch-hard triplet (Hermans et al. 2017) on Euclidean distances
  divided by sqrt(d), d the embedding dimension, with margin m.
* ``ssn_loss``: eq. (4), lives with the network (``ssn3d.models.ssn``) and is re-exported here.
* ``total_loss``: eq. (6), L = L_tri + lambda * L_SSN.
"""

from __future__ import annotations

import torch
from torch import nn

from ssn3d.models.ssn import ssn_loss

__all__ = ["BatchHardTriplet", "pairwise_distance", "ssn_loss", "total_loss"]


def pairwise_distance(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Euclidean distances (M, D) x (N, D) -> (M, N), clamped before the sqrt for a finite gradient."""
    y = x if y is None else y
    d2 = x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1)[None] - 2.0 * x @ y.T
    return d2.clamp_min(1e-12).sqrt()


class BatchHardTriplet(nn.Module):
    """Eq. (5): mean over anchors of [m + max_p d(a, p) / sqrt(d) - min_n d(a, n) / sqrt(d)]_+.

    The paper writes a sum over the B anchors; the mean keeps the loss scale independent of the
    batch size (a constant factor that Adam is insensitive to).

    Args:
        margin: m.
    """

    def __init__(self, margin: float = 0.3) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, emb: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        """emb (B, D), pids (B,) -> scalar."""
        emb = emb.float()
        dist = pairwise_distance(emb) / emb.shape[1] ** 0.5
        same = pids[:, None] == pids[None, :]
        eye = torch.eye(len(pids), dtype=torch.bool, device=emb.device)
        pos = same & ~eye
        hardest_pos = torch.where(pos, dist, torch.zeros_like(dist)).amax(1)
        hardest_neg = torch.where(~same, dist, torch.full_like(dist, float("inf"))).amin(1)
        valid = pos.any(1) & (~same).any(1)  # anchors with at least one positive and one negative
        if not bool(valid.any()):
            return emb.sum() * 0.0
        return (self.margin + hardest_pos - hardest_neg).clamp_min(0)[valid].mean()


def total_loss(triplet: torch.Tensor, ssn: torch.Tensor, ssn_lambda: float) -> torch.Tensor:
    """Eq. (6)."""
    return triplet + ssn_lambda * ssn
