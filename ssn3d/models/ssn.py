"""Self-Separated Network (paper, section "Self-Separated Network", eq. 1-4).

One attention classifier ``f`` (conv k x k, C -> K, ReLU, linear K -> N) is applied twice:

* 1st round, eq. (1): on every k x k x C window of the feature map X -> N logit maps A^i, one
  logit per cell. The map is edge-padded (replicate), not zero-padded: zeros would make border
  windows distinct from interior ones, so SSN could "separate" parts of an all-ones input by
  position alone, which the paper's random-data study rules out (all-ones stays at log N). Eq. (2): a softmax over the H x W cells of each map.
* eq. (3): Y^i = sum_hw softmax(A^i)_hw * X_hw, a k x k x C window per part, as one matmul over
  scattered attention maps (``ssn3d.models.windows``) rather than over the unfolded map.
* 2nd round, eq. (4): the *same* ``f`` on each Y^i -> N logits p_i (training only); L_SSN =
  CE(p_i, i) is a loss and lives with the others (``ssn3d.losses.ssn_loss``).

Because the 2nd round runs the same conv without padding on a k x k input, ``f`` on the window at
(h, w) is exactly the 1st-round logit at (h, w): the two rounds judge windows by one rule. The conv
is linear, so on Y^i = sum_hw a_hw * window_hw it is sum_hw a_hw * Z_hw with Z the 1st round's
conv output before its bias (then + bias, ReLU, linear): the 2nd round is a (N x H*W) x (H*W x K)
matmul per frame over the map the 1st round has already computed, not a conv over N*k*k*C-d windows
(the same numbers up to float rounding, and the same gradients, since the weights a of every map sum
to 1: softmax maps, one-hot maps at keypoints or background cells).

Semi-supervised anchors replace Y^i by the window at keypoint i (section "Semi-supervised
Training"); the supervised strategy takes every Y^i from keypoints and skips attention. Both are the
same matmul with one-hot maps, so no mask is tested on the host: the step has no sync to wait for.

Option NOT in the paper (``background=True``): the classifier gets an (N+1)-th "no part" output.
The maps A^i are its first N channels, so the attention keeps its form; in training the 2nd round
also runs on N background windows per frame (``ssn3d.alignment_losses.background_cells``) for
``BackgroundCE``, and L_SSN reads the first N logits of the part windows.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ssn3d.alignment_losses import background_cells
from ssn3d.models.position_prior import PositionPrior
from ssn3d.models.windows import (
    anchor_attention,
    cell_attention,
    pad_edges,
    supervised_parts,
    weighted_windows,
)


class AttentionClassifier(nn.Module):
    """f: a k x k x C window -> N part logits (eq. 1).

    Option NOT in the paper (``context=True``, ``model.attn_context``): f also sees its frame's mean
    feature g (C), f(window, g) = fc(ReLU(conv(window) + U g)), in both rounds. A window sees a few
    cells; whether a limb there is the person's left or right one depends on which way the person
    faces, which the whole frame shows. U starts at zero, so an untrained model is the paper's f.

    Args:
        in_channels: C.
        num_parts: N.
        window: k.
        hidden: K (paper: 512).
        context: add the frame-context term U g.
    """

    def __init__(
        self, *, in_channels: int, num_parts: int, window: int = 3, hidden: int = 512, context: bool = False
    ) -> None:
        super().__init__()
        self.window = window
        self.conv = nn.Conv2d(in_channels, hidden, window)
        self.fc = nn.Linear(hidden, num_parts)  # N classes, or N + 1 with the "no part" class
        self.context = nn.Linear(in_channels, hidden, bias=False) if context else None
        if self.context is not None:
            nn.init.zeros_(self.context.weight)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """1st round: (B, C, H, W) -> logits A (B, N, H, W), one per edge-padded window."""
        return self.map_from(self.window_responses(pad_edges(x, self.window)), self.frame_offset(x))

    def frame_offset(self, x: torch.Tensor) -> torch.Tensor:
        """What every window of a frame adds to Z before the ReLU, from its map (B, C, H, W): (B, K).

        The conv's bias, plus U g with the frame-context option. It is one constant per frame, so the 2nd
        round's attention-weighted sums (weights summing to 1) take it exactly once, as they take the bias."""
        bias = self.conv.bias.expand(x.shape[0], -1)
        return bias if self.context is None else bias + self.context(frame_context(x))

    def window_responses(self, xp: torch.Tensor) -> torch.Tensor:
        """Z: the conv on every window of an edge-padded map, before its bias: (B, C, Hp, Wp) -> (B, K, H, W).

        Without the bias because the 2nd round's attention-weighted sums of Z take it once, as the conv
        on a weighted window does (``frame_offset``)."""
        return F.conv2d(xp, self.conv.weight)

    def map_from(self, z: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """1st-round logits from Z (B, K, H, W) and the frames' ``frame_offset`` (B, K) -> (B, N, H, W)."""
        b, _, h, w = z.shape
        hidden = F.relu(z + offset.to(z.dtype)[..., None, None]).flatten(2)  # (B, K, H*W)
        n = self.fc.out_features
        # one baddbmm: CPU BLAS was several times slower at a (B*H*W, N) x (N, K) mm in backward
        logits = torch.baddbmm(
            self.fc.bias.to(hidden.dtype)[:, None].expand(b, n, h * w),
            self.fc.weight.to(hidden.dtype).expand(b, n, -1),
            hidden,
        )  # (B, N, H*W): the same linear layer as the 2nd round
        return logits.unflatten(2, (h, w))

    def weighted_from(self, z: torch.Tensor, weights: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """2nd round on the windows sum_hw weights^i_hw * window_hw, from Z: (B, K, H, W), (B, M, H, W) and
        the frames' ``frame_offset`` (B, K) -> logits (B, M, N). ``weights`` sum to 1 per map (softmax or
        one-hot maps), so this equals ``forward`` on ``weighted_windows(x, weights, k)`` (module docstring)."""
        pre = torch.bmm(weights.flatten(2).to(z.dtype), z.flatten(2).transpose(1, 2))  # (B, M, K)
        return self.fc(F.relu(pre + offset.to(pre.dtype)[:, None, :]))

    def forward(self, windows: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """2nd round on explicit windows (..., C, k, k) [+ their frames' context (..., C)] -> logits (..., N)."""
        lead = windows.shape[:-3]
        h = self.conv(windows.reshape(-1, *windows.shape[-3:])).flatten(1)  # (M, K)
        if self.context is not None:
            if context is None:
                raise ValueError("this classifier also reads each window's frame context")
            h = h + self.context(context.reshape(-1, context.shape[-1]))
        return self.fc(F.relu(h)).reshape(*lead, -1)


def frame_context(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) feature maps -> (B, C) their means, the context of ``AttentionClassifier``."""
    return x.mean((-2, -1))


class SSNOutput(NamedTuple):
    parts: torch.Tensor  # (B, N, C, k, k): Y^i, the aligned part features
    attention: torch.Tensor | None  # (B, N, H, W): softmax over H*W per part (None for supervised)
    logits: torch.Tensor | None  # (B, N, N) 2nd-round p_{i,j}, (B, N, N+1) with background (training only)
    map_logits: torch.Tensor | None = None  # (B, N, H, W) 1st-round A^i before eq. (2) (training only)
    background_logits: torch.Tensor | None = None  # (B, N, N+1) 2nd round on background windows


class SSN(nn.Module):
    """Attention + weighted windows (eq. 1-3) and the 2nd round (eq. 4) for one classifier.

    Args:
        in_channels: C of the feature map.
        num_parts: N.
        window: k.
        hidden: K.
        background: an (N+1)-th "no part" output (NOT in the paper).
        position_prior: weight w of the labels' part-position prior added to the maps' logits (NOT in
            the paper; ``ssn3d.models.position_prior``); 0 = none.
        context: the classifier also reads each frame's mean feature (NOT in the paper; see
            ``AttentionClassifier``).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_parts: int,
        window: int = 3,
        hidden: int = 512,
        background: bool = False,
        position_prior: float = 0.0,
        context: bool = False,
    ) -> None:
        super().__init__()
        self.num_parts, self.window, self.background = num_parts, window, background
        self.classifier = AttentionClassifier(
            in_channels=in_channels,
            num_parts=num_parts + int(background),
            window=window,
            hidden=hidden,
            context=context,
        )
        self.prior = PositionPrior(num_parts, position_prior) if position_prior > 0 else None

    def map_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. (1): (B, C, H, W) -> the N logit maps A^i (B, N, H, W); a "no part" channel is not a map.
        With a position prior its w log p_i is added here, so every user of the maps sees the same ones."""
        return self._maps_from(self.classifier.forward_map(x))

    def _maps_from(self, logits: torch.Tensor) -> torch.Tensor:
        """The classifier's 1st-round output (B, N[+1], H, W) -> the N maps A^i, prior added."""
        logits = logits[:, : self.num_parts] if self.background else logits
        return logits if self.prior is None else self.prior(logits)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. (1)-(2): (B, C, H, W) -> (B, N, H, W), each map summing to 1."""
        return _softmax_maps(self.map_logits(x), x.dtype)

    def forward(
        self,
        x: torch.Tensor,
        cells: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        *,
        supervised: bool = False,
    ) -> SSNOutput:
        """Args:
            x: (B, C, H, W) feature maps.
            cells: (B, N, 2) long feature-map cells (col, row) of labeled keypoints, or None.
            mask: (B, N) bool, True where keypoint i anchors part i.
            supervised: take every Y^i from keypoints; parts without one get the frame's mean window.

        Returns:
            SSNOutput with parts (B, N, C, k, k).
        """
        k = self.window
        if supervised:
            if cells is None or mask is None:
                raise ValueError("the supervised strategy needs keypoints on every frame")
            return SSNOutput(supervised_parts(x, cells, mask, k), None, None)  # (B, N, C, k, k)
        z = self.classifier.window_responses(pad_edges(x, k))  # (B, K, H, W)
        offset = self.classifier.frame_offset(x)  # (B, K): the conv's bias [+ the frame's context]
        map_logits = self._maps_from(self.classifier.map_from(z, offset))  # (B, N, H, W)
        attn = _softmax_maps(map_logits, x.dtype)  # (B, N, H, W)
        anchored = cells is not None and mask is not None
        # anchors: part i's map becomes one-hot at keypoint i, an all-False mask changes nothing
        weights = anchor_attention(attn, cells, mask) if anchored else attn
        parts = weighted_windows(x, weights, k)  # eq. (3): (B, N, C, k, k)
        if not self.training:  # the 2nd round and the loss inputs exist in training only
            return SSNOutput(parts, attn, None)
        logits = self.classifier.weighted_from(z, weights, offset)  # 2nd round on the parts Y^i: (B, N, N)
        background = None
        if self.background:  # as many "no part" windows per frame as parts, far from peaks and keypoints
            bg_cells = background_cells(attn, self.num_parts, cells=cells, mask=mask)  # (B, N, 2)
            # the windows at bg_cells as one-hot maps: (B, N, H, W)
            one_hot = cell_attention(bg_cells, *x.shape[-2:], z.dtype)
            background = self.classifier.weighted_from(z, one_hot, offset)  # (B, N, N+1)
        return SSNOutput(parts, attn, logits, map_logits, background)


def _softmax_maps(logits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Eq. (2): softmax over the H x W cells of each map, in float32, back to ``dtype``."""
    return logits.flatten(2).float().softmax(-1).reshape(logits.shape).to(dtype)


def chance_loss(num_parts: int) -> float:
    """L_SSN of a classifier that cannot tell parts apart: log N."""
    return math.log(num_parts)
