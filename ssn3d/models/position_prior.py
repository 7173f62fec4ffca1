"""Where each part usually lies in a crop, as a prior on the attention maps (NOT in the paper).

Option ``model.position_prior`` (a weight w, 0 = off = the paper). Person crops from a detector are
aligned: the head is near the top, the feet near the bottom. Part PCK measured this (the
"mean position" baseline puts every part at its mean labeled position and scores 0.62 at CPU scale,
as well as PositionCE's maps). The prior counts, per part, the training labels in every feature cell,
smooths the counts with a Gaussian of one cell, and adds w * log p_i(h, w) to the 1st-round logits
A^i before the softmax of eq. (2):

    softmax(A^i + w log p_i)  ~  p(features | part i here) * p_i(here)^w

so the attention is the labels' position prior times what the features say. Features that say
nothing leave the prior's mode (the mean-position baseline's answer); features that see the part
move the peak to it. The prior is counted once from the label store at the start of a run and is a
buffer, saved in the checkpoint with the model (evaluation and the app use the same maps); it is not
trained. The 2nd round of eq. (4) is unchanged: it judges the window alone, wherever it came from.

A prior counted on an h x w map is resampled (bilinear) for maps of another size; its buffer takes
the shape of the one loaded from a checkpoint.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssn3d.keypoints import VISIBLE, CellGeometry

SMOOTH_CELLS = 1.0  # Gaussian sigma of the counts, in cells: a label one cell off still counts nearby
FLOOR = 1.0 / 64  # of a uniform share mixed in: no cell is ruled out, log p stays finite


class PositionPrior(nn.Module):
    """Adds w * log p_i to the N logit maps; a zero (N, 1, 1) prior until ``set_prior``.

    Args:
        num_parts: N.
        weight: w.
    """

    loaded_shape_buffers = ("log_prior",)  # a checkpoint's prior keeps its own map size

    def __init__(self, num_parts: int, weight: float) -> None:
        super().__init__()
        self.weight = float(weight)
        self.register_buffer("log_prior", torch.zeros(num_parts, 1, 1))

    def set_prior(self, log_prior: torch.Tensor) -> None:
        """Replace the prior by ``log_prior`` (N, h, w)."""
        if log_prior.shape[0] != self.log_prior.shape[0]:
            raise ValueError(
                f"a prior for {log_prior.shape[0]} parts, the model has {self.log_prior.shape[0]}"
            )
        self.log_prior = log_prior.detach().to(self.log_prior.device, torch.float32).clone()

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, N, h, w) logits -> the same plus w * log p resampled to (h, w)."""
        prior = self.log_prior  # (N, ph, pw)
        if prior.shape[-2:] != logits.shape[-2:]:
            prior = F.interpolate(prior[None], size=logits.shape[-2:], mode="bilinear", align_corners=False)[
                0
            ]
        return logits + (self.weight * prior).to(logits.dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        key = prefix + "log_prior"
        if key in state_dict:  # a prior counted on another map size: take its shape, then load it
            self.log_prior = torch.empty_like(state_dict[key], device=self.log_prior.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def counted_log_prior(
    keypoints: np.ndarray, geometry: CellGeometry, feature_size: tuple[int, int]
) -> torch.Tensor:
    """Labeled keypoints (F, N, 3) in model pixels -> log p_i (N, h, w), each p_i summing to 1.

    A part with no visible label gets the uniform prior (log p constant, so it changes nothing).

    Args:
        keypoints: labels of training frames, in the pixels of the model's input.
        geometry: the backbone's cells (``SSN3D.cell_geometry``), the rule of the training anchors.
        feature_size: (w, h) of the feature map at the training size.
    """
    w, h = feature_size
    kps = np.asarray(keypoints, dtype=np.float32).reshape(-1, keypoints.shape[-2], 3)
    n = kps.shape[1]
    col, row = geometry.cell_of(kps[..., :2], (w, h))  # (F, N) each
    counts = np.zeros((n, h, w), np.float64)
    for i in range(n):
        vis = kps[:, i, 2] >= VISIBLE
        np.add.at(counts[i], (row[vis, i].astype(int), col[vis, i].astype(int)), 1.0)
    smooth = _gaussian_blur(torch.from_numpy(counts), SMOOTH_CELLS)  # (N, h, w)
    total = smooth.flatten(1).sum(-1)[:, None, None]
    uniform = torch.full_like(smooth, 1.0 / (h * w))
    share = torch.where(total > 0, smooth / total.clamp_min(1e-12), uniform)
    return torch.log((1 - FLOOR) * share + FLOOR * uniform).float()


def _gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, h, w) -> the same blurred by a Gaussian of ``sigma`` cells (zero outside the map)."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=maps.dtype)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    out = F.conv2d(maps[:, None], g.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(out, g.view(1, 1, -1, 1), padding=(radius, 0))[:, 0]
