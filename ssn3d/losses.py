"""Losses of SSN3D (paper, "Training with Hard Samples Mining" and "Loss Function").

* ``BatchHardTriplet``: eq. (5), batch-hard triplet (Hermans et al. 2017) on Euclidean distances
  divided by sqrt(d), d the embedding dimension, with margin m; always in float32.
* ``ssn_loss``: eq. (4), the cross entropy of each part's 2nd-round logits (the model returns them
  in training, ``SSN3DOutput.ssn_logits``) against its own part index.
* ``total_loss``: eq. (6), L = L_tri + lambda * L_SSN, plus any named extra terms that a config
  switches on (``ssn3d.alignment_losses.AlignmentTerms``; NOT in the paper, each already weighted).

Reductions (docs/DESIGN.md): eq. (4) sums over the N parts and eq. (5) over the B anchors.
``reduction="sum"`` is each equation as written; ``"mean"`` divides by N (chance level log N for
any N) or by the number of valid anchors (a loss scale independent of the batch). At one lambda the
two balances differ by B / N; the recipe configs use the paper's sums.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BatchHardTriplet", "pairwise_distance", "ssn_loss", "total_loss"]


def pairwise_distance(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Euclidean distances (M, D) x (N, D) -> (M, N), clamped before the sqrt for a finite gradient."""
    y = x if y is None else y
    d2 = x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1)[None] - 2.0 * x @ y.T
    return d2.clamp_min(1e-12).sqrt()


class BatchHardTriplet(nn.Module):
    """Eq. (5): over anchors, [m + max_p d(a, p) / sqrt(d) - min_n d(a, n) / sqrt(d)]_+.

    Computed with autocast disabled: under bf16 autocast ``x @ y.T`` is cast back to bf16 whatever
    came before, and positive-pair distances of 1024-d embeddings lose up to ~20 %, a tenth of the margin.

    Args:
        margin: m.
        reduction: "mean" over anchors that have a positive and a negative, or "sum" as eq. (5) is written.
    """

    def __init__(self, margin: float = 0.3, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be mean or sum, not {reduction!r}")
        self.margin, self.reduction = margin, reduction

    def forward(self, emb: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        """emb (B, D), pids (B,) -> scalar float32."""
        with torch.autocast(emb.device.type, enabled=False):
            emb = emb.float()
            dist = pairwise_distance(emb) / emb.shape[1] ** 0.5
            same = pids[:, None] == pids[None, :]
            eye = torch.eye(len(pids), dtype=torch.bool, device=emb.device)
            pos = same & ~eye
            hardest_pos = torch.where(pos, dist, torch.zeros_like(dist)).amax(1)
            hardest_neg = torch.where(~same, dist, torch.full_like(dist, float("inf"))).amin(1)
            valid = pos.any(1) & (~same).any(1)  # anchors with at least one positive and one negative
            # a masked sum, not hinge[valid]: no host sync on how many anchors are valid; with none
            # the sum is 0 (the inf of a missing negative is masked out) and the count clamps to 1
            hinge = torch.where(valid, (self.margin + hardest_pos - hardest_neg).clamp_min(0), 0.0)
            total = hinge.sum()
            return total if self.reduction == "sum" else total / valid.sum().clamp_min(1)


def ssn_loss(
    logits: torch.Tensor | None,
    reduction: str = "mean",
    *,
    per_frame_classifiers: bool = False,
    anchor_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. (4): CE of part i's 2nd-round logits against label i, averaged over frames.

    Args:
        logits: (..., N, N) p_{i,j} per frame: (B, N, N) from one ``SSN``, or (B, T, N, N) from SSN3D;
            None (the supervised strategy and the baselines have no 2nd round) gives 0. A model with
            the "no part" class gives (..., N, N+1): L_SSN reads the first N logits.
        reduction: "mean" over parts (chance = log N), or "sum" over parts as eq. (4) is written.
        per_frame_classifiers: (B, T, N, N) from T non-shared classifiers (Table 2): "T independent
            SSN losses", each averaged over its frames, summed over t.
        anchor_logits: (M, G, N, N) of the batch's labeled frames fed beside the clips, through each of
            the G classifiers (1 shared, else T); they count as frames of every classifier's mean.
    """
    if logits is None:
        return torch.zeros((), dtype=torch.float32)
    n = logits.shape[-2]
    if logits.shape[-1] != n:  # the "no part" class: eq. (4) stays an N-way choice between the parts
        logits = logits[..., :n]
        anchor_logits = None if anchor_logits is None else anchor_logits[..., :n]
    if per_frame_classifiers or anchor_logits is not None:
        groups = logits.shape[1] if per_frame_classifiers else 1
        logits = logits.reshape(-1, groups, n, n)  # (F, G, N, N): frames of each classifier
        if anchor_logits is not None:
            logits = torch.cat([logits, anchor_logits.to(logits.dtype)])
    target = torch.arange(n, device=logits.device).expand(logits.shape[:-1])
    ce = F.cross_entropy(logits.reshape(-1, n).float(), target.reshape(-1), reduction="none")
    ce = ce.reshape(logits.shape[:-1])  # (..., N): part i's CE against label i
    per_frame = ce.sum(-1) if reduction == "sum" else ce.mean(-1)
    if per_frame.dim() == 2 and (per_frame_classifiers or anchor_logits is not None):
        return per_frame.mean(0).sum()  # (F, G) -> one mean per classifier, summed
    return per_frame.mean()


def total_loss(
    triplet: torch.Tensor,
    ssn: torch.Tensor,
    ssn_lambda: float,
    extra: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Eq. (6), plus the named extra terms (NOT in the paper), each already weighted by its config key.

    Without extra terms this is eq. (6) to the bit: the paper's loss is untouched when every lever is off.
    """
    loss = triplet + ssn_lambda * ssn.to(triplet.device)
    for term in (extra or {}).values():
        loss = loss + term.to(triplet.device)
    return loss
