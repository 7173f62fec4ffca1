"""Extra alignment losses over SSN's outputs: options NOT in the paper, each off by default.

The paper trains SSN with L_SSN alone (eq. 4): the 2nd round must tell the N weighted windows
apart, and semi-supervised anchors replace Y^i by the window at keypoint i (eq. 3). Measured on
Pedestrian-128 and walkers, that leaves the attention of unlabeled frames on background structure
(benchmarks/RESULTS-studies.md): nothing pulls A^i onto the keypoint, nothing says "no part here",
and nothing uses the claim that parts are "stable across a video snippet". These losses add those
signals. Each is a weighted term to add to eq. (6); ``weight = 0`` (the default) switches it off
and returns a zero that costs nothing.

* ``PositionCE``: labeled frames; cross-entropy over the h x w positions of the 1st-round logits
  A^i (before the softmax of eq. 2) against keypoint i's cell, one-hot or a small Gaussian.
* ``TemporalStability``: unlabeled clips; a part's soft-argmax peak moves little between
  neighbouring frames (Huber, so real motion is penalised linearly, not quadratically).
* ``FlipConsistency``: unlabeled frames; the attention of a mirrored frame is the mirrored attention
  with left and right parts swapped (``ssn3d.keypoints.FLIP_PERMUTATION``).
* ``BackgroundCE``: an (N+1)-th "no part" class in the 2nd round; windows far from every part's
  attention (``background_cells``) are labeled background. The model must provide the extra output.
* ``FacingBCE``: labeled frames; the facing head of ``model.facing`` (``ssn3d.models.facing``) learns
  whether the person faces the camera, as the labeled keypoints show it.

``AlignmentTerms`` wires them into training: built from the config's ``loss`` section, it reads a
training ``SSN3DOutput`` and returns the active terms by name, for ``ssn3d.losses.total_loss``.

Shapes: attention maps are (B, N, h, w) or (B, T, N, h, w), each map summing to 1 over h x w;
cells are (B, N, 2) long (col, row) as made by ``ssn3d.models.ssn3d.keypoints_to_cells``; masks are
(B, N) bool, True where keypoint i anchors part i. Every loss is computed in float32 (it may run
under bf16 autocast) and is finite for an all-False mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ssn3d.keypoints import FLIP_PERMUTATION

if TYPE_CHECKING:  # the models import this module for background_cells
    from ssn3d.config import LossConfig
    from ssn3d.models.ssn3d import SSN3DOutput

__all__ = [
    "AlignmentTerms",
    "BackgroundCE",
    "FacingBCE",
    "FlipConsistency",
    "PositionCE",
    "TemporalStability",
    "background_cells",
    "background_ce",
    "gaussian_cell_targets",
    "soft_argmax",
]

_EPS = 1e-8  # floor of a probability before its log: a softmax map can underflow to exact zeros


def _zero(like: torch.Tensor) -> torch.Tensor:
    """A float32 zero joined to ``like``'s graph: adding it to a loss keeps backward and DDP happy."""
    return like.float().sum() * 0.0


def gaussian_cell_targets(cells: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """Target distributions over the h x w cells centred at integer cells.

    Args:
        cells: (..., 2) long (col, row).
        size: (h, w) of the feature map.
        sigma: standard deviation in cells; 0 gives one-hot targets.

    Returns:
        (..., h * w) float32, each row summing to 1 (a Gaussian cut at the map's border and renormalised).
    """
    h, w = size
    if sigma <= 0:
        flat = cells[..., 1] * w + cells[..., 0]
        return F.one_hot(flat, h * w).float()
    rows = torch.arange(h, device=cells.device, dtype=torch.float32)
    cols = torch.arange(w, device=cells.device, dtype=torch.float32)
    dr = rows - cells[..., 1, None].float()  # (..., h)
    dc = cols - cells[..., 0, None].float()  # (..., w)
    d2 = dr[..., :, None] ** 2 + dc[..., None, :] ** 2  # (..., h, w)
    return (-d2 / (2 * sigma**2)).flatten(-2).softmax(-1)


class PositionCE(nn.Module):
    """Pull part i's attention onto its keypoint on labeled frames (NOT in the paper).

    KL(q || softmax(A^i)) over the h x w positions, with q the keypoint's cell (one-hot: the plain
    cross-entropy -log softmax(A^i)[cell]) or a Gaussian of ``sigma`` cells around it, averaged over
    anchored parts. The paper's anchors only replace Y^i by the keypoint's window, which trains the
    2nd round on the right windows but never tells the 1st round where those windows are.

    Args:
        weight: the term's weight in the total loss; 0 switches it off.
        sigma: Gaussian target width in cells; 0 (default) is one-hot. A Gaussian forgives the
            one-cell error of a keypoint near a cell border.
    """

    def __init__(self, *, weight: float = 0.0, sigma: float = 0.0) -> None:
        super().__init__()
        if weight < 0 or sigma < 0:
            raise ValueError(f"weight and sigma must be >= 0, not {weight} and {sigma}")
        self.weight, self.sigma = weight, sigma

    def forward(self, logits: torch.Tensor, cells: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Args:
            logits: (B, N, h, w) 1st-round logit maps A^i (eq. 1), before the softmax.
            cells: (B, N, 2) long keypoint cells (col, row).
            mask: (B, N) bool, True for anchored parts; the others contribute nothing.

        Returns:
            weight * the mean over anchored parts (a scalar; zero when none is anchored).
        """
        if not self.weight or not bool(mask.any()):
            return _zero(logits)
        h, w = logits.shape[-2:]
        logp = logits[mask].flatten(1).float().log_softmax(-1)  # (M, h*w)
        q = gaussian_cell_targets(cells[mask], (h, w), self.sigma)  # (M, h*w)
        # KL = sum q log q - sum q log p; the entropy term makes the minimum exactly 0 for a Gaussian target
        kl = (q * q.clamp_min(_EPS).log()).sum(-1) - (q * logp).sum(-1)
        return self.weight * kl.mean()


def soft_argmax(attention: torch.Tensor) -> torch.Tensor:
    """Expected cell (col, row) of each map: (..., h, w) summing to 1 -> (..., 2) float32, in cells."""
    h, w = attention.shape[-2:]
    p = attention.float()
    cols = torch.arange(w, device=p.device, dtype=torch.float32)
    rows = torch.arange(h, device=p.device, dtype=torch.float32)
    return torch.stack([(p.sum(-2) * cols).sum(-1), (p.sum(-1) * rows).sum(-1)], -1)


class TemporalStability(nn.Module):
    """A part's peak moves little between neighbouring frames of a clip (NOT in the paper).

    The paper claims the parts are "stable across a video snippet" but trains each frame on its own.
    This term is the mean over parts and neighbouring frame pairs of the squared soft-argmax
    displacement in cells, Huberised: d^2 up to ``delta`` cells, then linear (2 delta d - delta^2),
    so a limb that truly moves several cells between sampled frames is not pulled back hard.

    A flat map has its soft-argmax at the centre in every frame, so uniform attention satisfies this
    term trivially: use it with L_SSN or ``PositionCE``, which make the maps peaked.

    Args:
        weight: the term's weight; 0 switches it off.
        delta: displacement (cells) where the penalty turns linear.
    """

    def __init__(self, *, weight: float = 0.0, delta: float = 1.0) -> None:
        super().__init__()
        if weight < 0 or delta <= 0:
            raise ValueError(f"weight must be >= 0 and delta > 0, not {weight} and {delta}")
        self.weight, self.delta = weight, delta

    def forward(self, attention: torch.Tensor) -> torch.Tensor:
        """Args:
            attention: (B, T, N, h, w) softmax maps of the T frames of each clip, in time order.

        Returns:
            weight * the Huberised mean squared displacement (zero for T < 2).
        """
        if not self.weight or attention.shape[1] < 2:
            return _zero(attention)
        peaks = soft_argmax(attention)  # (B, T, N, 2)
        d2 = (peaks[:, 1:] - peaks[:, :-1]).pow(2).sum(-1)  # (B, T-1, N)
        d = d2.clamp_min(_EPS).sqrt()  # clamped: sqrt has no gradient at 0
        loss = torch.where(d <= self.delta, d2, 2 * self.delta * d - self.delta**2)
        return self.weight * loss.mean()


class FlipConsistency(nn.Module):
    """The attention of a mirrored frame is the mirrored attention, left and right swapped (NOT in the paper).

    For a frame with maps a (N, h, w) and its horizontal mirror with maps m, the property is
    m[i] = flip(a[perm[i]]) with perm = ``FLIP_PERMUTATION`` (the left elbow of the mirror is the
    right elbow of the frame). The term is the Jensen-Shannon divergence between the two, a
    symmetric, bounded (by log 2) divergence that is 0 exactly when they agree; both sides get
    gradients. The mirror is exact only when the backbone's grid is symmetric: stride-2 layers with
    padding shift the mirrored grid by up to about half a cell, which the soft divergence absorbs.

    Args:
        weight: the term's weight; 0 switches it off.
        permutation: part i of the mirror is part permutation[i] of the frame (default: the nine
            keypoint parts); must have N entries.
    """

    def __init__(self, *, weight: float = 0.0, permutation: Sequence[int] = FLIP_PERMUTATION) -> None:
        super().__init__()
        if weight < 0 or sorted(permutation) != list(range(len(permutation))):
            raise ValueError(
                f"weight must be >= 0 and permutation a permutation of 0..N-1, not {permutation}"
            )
        self.weight = weight
        self.register_buffer("perm", torch.tensor(list(permutation), dtype=torch.long), persistent=False)

    def forward(self, attention: torch.Tensor, mirrored: torch.Tensor) -> torch.Tensor:
        """Args:
            attention: (B, N, h, w) softmax maps of frames.
            mirrored: (B, N, h, w) softmax maps of the same frames mirrored left to right.

        Returns:
            weight * the mean over frames and parts of JS(m[i], flip(a[perm[i]])).
        """
        if not self.weight:
            return _zero(attention)
        if attention.shape[1] != len(self.perm):
            raise ValueError(f"{attention.shape[1]} parts but a flip permutation of {len(self.perm)}")
        p = attention[:, self.perm].flip(-1).flatten(2).float()  # (B, N, h*w): where the mirror should look
        q = mirrored.flatten(2).float()
        mid = (0.5 * (p + q)).clamp_min(_EPS).log()
        kl_p = (p * (p.clamp_min(_EPS).log() - mid)).sum(-1)
        kl_q = (q * (q.clamp_min(_EPS).log() - mid)).sum(-1)
        return self.weight * (0.5 * (kl_p + kl_q)).mean()


def background_cells(
    attention: torch.Tensor,
    count: int,
    *,
    radius: int = 1,
    cells: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cells far from every part: the ``count`` cells of lowest attention, away from peaks and keypoints.

    A cell's score is the highest attention any part gives it; cells within ``radius`` (Chebyshev,
    in cells) of any part's arg-max peak, or of an anchored keypoint, are never chosen. Selection
    carries no gradient.

    Args:
        attention: (B, N, h, w) softmax maps.
        count: background cells per frame (at most h * w).
        radius: exclusion radius around peaks and keypoints; -1 excludes nothing.
        cells: (B, N, 2) long keypoint cells (col, row), optional.
        mask: (B, N) bool, which of ``cells`` are anchored.

    Returns:
        (B, count, 2) long cells (col, row).
    """
    b, n, h, w = attention.shape
    if not 0 < count <= h * w:
        raise ValueError(f"count must be in 1..{h * w} (the map's cells), not {count}")
    with torch.no_grad():
        a = attention.detach().float().flatten(2)  # (B, N, h*w)
        score = a.amax(1)  # (B, h*w)
        flat = a.argmax(-1)  # (B, N)
        centres = torch.stack([flat % w, flat // w], -1)  # (B, N, 2) peaks (col, row)
        keep = torch.ones(b, n, dtype=torch.bool, device=a.device)
        if cells is not None and mask is not None:
            centres, keep = torch.cat([centres, cells], 1), torch.cat([keep, mask], 1)
        col = torch.arange(w, device=a.device).repeat(h)  # (h*w,)
        row = torch.arange(h, device=a.device).repeat_interleave(w)
        near = ((col - centres[..., 0, None]).abs() <= radius) & (
            (row - centres[..., 1, None]).abs() <= radius
        )
        near = (near & keep[..., None]).any(1)  # (B, h*w)
        # excluded cells sort last; if fewer than count remain, the least attended of them fill in
        score = torch.where(near, score + 2.0, score)
        idx = score.topk(count, -1, largest=False).indices  # (B, count)
    return torch.stack([idx % w, idx // w], -1)


def background_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over N + 1 classes (class N = "no part"), in float32.

    Args:
        logits: (M, N+1) 2nd-round logits of windows.
        target: (M,) long, i for the weighted (or anchored) window of part i, N for a background window.
    """
    return F.cross_entropy(logits.float(), target)


class _WeightedTerm(nn.Module):
    """A term whose only setting is its weight in the total loss (0 switches it off)."""

    def __init__(self, *, weight: float = 0.0) -> None:
        super().__init__()
        if weight < 0:
            raise ValueError(f"weight must be >= 0, not {weight}")
        self.weight = weight


class BackgroundCE(_WeightedTerm):
    """An (N+1)-th "no part" class for the 2nd round of SSN (NOT in the paper).

    L_SSN (eq. 4) teaches the classifier to tell the N part windows apart and nothing else, so on an
    unlabeled frame the 2nd round rewards whatever window the classifier already prefers, background
    included. This term adds negatives: windows far from every part (``background_cells``) must be
    classified "no part", and the N part windows must not be.

    What the model must provide (the wiring, not done here): the attention classifier's linear layer
    gets N + 1 outputs; the 1st round (eq. 1-2) uses only the first N channels as the maps A^i, so
    the attention is unchanged in form; in training, the 2nd round also runs on ``count`` background
    windows per frame (``ssn3d.models.ssn.window_at`` at ``background_cells(attention, count)``),
    giving ``background_logits`` (B, count, N+1), beside the part logits (B, N, N+1) of the N
    windows Y^i. L_SSN keeps using the first N logits of the part rows; this term is added.

    Args:
        weight: the term's weight; 0 switches it off.
    """

    def forward(self, part_logits: torch.Tensor, background_logits: torch.Tensor) -> torch.Tensor:
        """Args:
            part_logits: (B, N, N+1) 2nd-round logits of the N part windows of each frame.
            background_logits: (B, K, N+1) 2nd-round logits of K background windows of each frame.

        Returns:
            weight * the mean N+1-way cross-entropy over all B * (N + K) windows.
        """
        if not self.weight:
            return _zero(part_logits)
        b, n, c = part_logits.shape
        if c != n + 1 or background_logits.shape[-1] != c:
            raise ValueError(
                f"logits need N + 1 = {n + 1} classes, got {c} and {background_logits.shape[-1]}"
            )
        k = background_logits.shape[1]
        dev = part_logits.device
        target = torch.cat(
            [torch.arange(n, device=dev).expand(b, n), torch.full((b, k), n, device=dev, dtype=torch.long)], 1
        )  # (B, N+K): part i is class i, background is class N
        logits = torch.cat([part_logits, background_logits], 1).reshape(-1, c)  # (B*(N+K), N+1)
        return self.weight * background_ce(logits, target.reshape(-1))


class FacingBCE(_WeightedTerm):
    """Binary cross-entropy of the facing head on labeled frames (NOT in the paper; ``model.facing``).

    The target is the facing the frame's own labels show (``ssn3d.models.facing.facing_targets``);
    frames with no visible left/right pair (target NaN) and unlabeled frames contribute nothing.

    Args:
        weight: the term's weight; 0 switches it off.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args:
            logits: (M,) "faces the camera" logits.
            target: (M,) 1, 0 or NaN (unknown).

        Returns:
            weight * the mean BCE over frames with a known target (zero when none has one).
        """
        known = ~torch.isnan(target)
        if not self.weight or not bool(known.any()):
            return _zero(logits)
        bce = F.binary_cross_entropy_with_logits(logits[known].float(), target[known].float())
        return self.weight * bce


class AlignmentTerms(nn.Module):
    """The extra alignment terms a config switches on, computed from one training ``SSN3DOutput``.

    Which frames each term reads (all NOT in the paper):

    * ``position_ce``: the 1st-round logit maps of the anchored parts of labeled frames: those fed
      beside the clips (through each classifier) and the labeled frames that happen to be in a clip.
    * ``temporal_stability``: the clips' attention (B, T, N, h, w).
    * ``flip_consistency``: the labeled frames beside the clips against their mirrored copies.
    * ``background``: every frame that went through the 2nd round (clip and labeled), with the model's
      background windows; the model must have been built with ``background_class``.
    * ``facing``: the facing logits of the labeled frames, beside the clips and inside them; the model
      must have been built with ``facing``.

    Args:
        cfg: the config's ``loss`` section (weights 0 = off).
    """

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.position_ce = PositionCE(weight=cfg.position_ce, sigma=cfg.position_sigma)
        self.temporal_stability = TemporalStability(weight=cfg.temporal_stability)
        self.flip_consistency = FlipConsistency(weight=cfg.flip_consistency)
        self.background = BackgroundCE(weight=cfg.background)
        self.facing = FacingBCE(weight=cfg.facing)

    @property
    def active(self) -> tuple[str, ...]:
        """Names of the terms with a non-zero weight, in a fixed order."""
        names = ("position_ce", "temporal_stability", "flip_consistency", "background", "facing")
        return tuple(n for n in names if getattr(self, n).weight)

    @property
    def needs_mirror(self) -> bool:
        """Whether the model must also run the mirrored labeled frames."""
        return bool(self.flip_consistency.weight)

    def forward(self, out: SSN3DOutput) -> dict[str, torch.Tensor]:
        """{name: weighted term} for the active terms (an empty dict when none is on)."""
        terms = {}
        for name in self.active:
            terms[name] = getattr(self, f"_{name}")(out)
        return terms

    def _position_ce(self, out: SSN3DOutput) -> torch.Tensor:
        logits, cells, masks = [], [], []
        if out.map_logits is not None and out.cells is not None:  # labeled frames inside the clips
            logits.append(out.map_logits.flatten(0, 1))  # (B*T, N, h, w)
            cells.append(out.cells.flatten(0, 1))
            masks.append(out.mask.flatten(0, 1))
        if out.anchors is not None:  # the labeled frames beside the clips, through each of G classifiers
            a = out.anchors
            g = a.map_logits.shape[1]
            logits.append(a.map_logits.flatten(0, 1))  # (M*G, N, h, w)
            cells.append(a.cells[:, None].expand(-1, g, -1, -1).flatten(0, 1))
            masks.append(a.mask[:, None].expand(-1, g, -1).flatten(0, 1))
        if not logits:
            return _zero(out.embedding)
        return self.position_ce(torch.cat(logits), torch.cat(cells), torch.cat(masks))

    def _temporal_stability(self, out: SSN3DOutput) -> torch.Tensor:
        return _zero(out.embedding) if out.attention is None else self.temporal_stability(out.attention)

    def _flip_consistency(self, out: SSN3DOutput) -> torch.Tensor:
        a = out.anchors
        if a is None or a.mirrored_attention is None:
            return _zero(out.embedding)
        return self.flip_consistency(a.attention.flatten(0, 1), a.mirrored_attention.flatten(0, 1))

    def _facing(self, out: SSN3DOutput) -> torch.Tensor:
        logits, targets = [], []
        if out.facing_logits is not None and out.facing_target is not None:  # labeled frames in the clips
            logits.append(out.facing_logits.flatten())
            targets.append(out.facing_target.flatten())
        a = out.anchors
        if a is not None and a.facing_logits is not None:
            logits.append(a.facing_logits)
            targets.append(a.facing_target)
        if not logits:
            if out.facing_logits is None:
                raise ValueError("loss.facing needs a model with model.facing=true")
            return _zero(out.facing_logits)
        return self.facing(torch.cat(logits), torch.cat(targets))

    def _background(self, out: SSN3DOutput) -> torch.Tensor:
        parts, background = [], []
        if out.ssn_logits is not None and out.background_logits is not None:
            parts.append(out.ssn_logits.flatten(0, 1))  # (B*T, N, N+1)
            background.append(out.background_logits.flatten(0, 1))  # (B*T, K, N+1)
        if out.anchors is not None and out.anchors.background_logits is not None:
            parts.append(out.anchors.logits.flatten(0, 1))  # (M*G, N, N+1)
            background.append(out.anchors.background_logits.flatten(0, 1))
        if not parts:
            raise ValueError("loss.background needs a model with model.background_class=true")
        return self.background(torch.cat(parts), torch.cat(background))
