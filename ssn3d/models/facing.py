"""Which way a person faces, so that the left and right parts keep their names (NOT in the paper).

Option ``model.facing`` with its loss ``loss.facing``. A 3 x 3 window sees a knee but not whose knee
it is: facing the camera, a person's left limbs lie on the image's right; facing away, on its left.
Measured on walkers, most limb misses of the best semi-supervised rows are the mirror part, and the
model's choice of side is mostly one per tracklet (benchmarks/RESULTS.md, section 1, "Third round").

So with this option the attention classifier names the paired parts in one fixed order, *canonical*:
the order of a person facing the camera (part "left knee" = the knee on the image's right, whichever
way the person faces). A small head reads from the frame's feature map whether the person faces the
camera, and the maps are given their person-side names from its answer:

* in training, the labeled keypoints are put into canonical order with the facing their own
  positions show (``facing_targets``: are the left limbs right of the right limbs?), before anchors,
  ``PositionCE`` and the position prior see them; the head learns that facing by cross-entropy on
  the same labeled frames (``FacingBCE`` in ``ssn3d.alignment_losses``);
* at inference, ``person_sides`` swaps each clip's paired maps back when the head says "away". The
  decision is one per clip: a clip is a few consecutive frames of one tracklet, in which a walker
  does not turn round, and the mean of its frames' logits is steadier than any one frame.

The embedding keeps the canonical parts: a part's 3D convolution then sees the limb on the same side
of the image in every clip, which is what alignment across frames needs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ssn3d.keypoints import FLIP_PERMUTATION, VISIBLE

# The person's left part of each left/right pair, and its right twin (elbows, knees, feet).
LEFT_PARTS = tuple(i for i, j in enumerate(FLIP_PERMUTATION) if j > i)
RIGHT_PARTS = tuple(FLIP_PERMUTATION[i] for i in LEFT_PARTS)
FACING_HIDDEN = 32  # the head's width: it answers one question from the whole frame


class FacingHead(nn.Module):
    """Feature map (B, C, h, w) -> (B,) logit of "faces the camera".

    Optionally a trunk first: the backbone network's next stage (``Backbone.next_stage``, with the
    backbone's weights). Facing is a question about the whole person (is that a face or the back of a
    head, given this person's skin and hair?), which a deeper, coarser layer answers better: a probe on
    ImageNet MobileNetV2 read it at 0.69 from stride 8 and 0.77 from stride 16 (held-out walkers,
    128 x 64, fitted on the labeled frames). Then a 3 x 3 conv and ReLU, the map's mean and max side by
    side and one linear layer: the cue (a face, a chest print, a backpack seen from behind) is small and
    anywhere in the frame, so the max finds it where the mean would dilute it.

    Args:
        in_channels: C of the map it reads (the trunk's output channels with a trunk).
        trunk: a module applied to the feature map first, or None.
        hidden: K of the conv.
    """

    def __init__(self, in_channels: int, trunk: nn.Module | None = None, hidden: int = FACING_HIDDEN) -> None:
        super().__init__()
        self.trunk = trunk
        self.conv = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.fc = nn.Linear(2 * hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.trunk is not None:
            x = self.trunk(x)  # (B, C', h / 2, w / 2)
        z = torch.relu(self.conv(x))  # (B, K, h', w')
        return self.fc(torch.cat([z.mean((-2, -1)), z.amax((-2, -1))], -1).float())[:, 0]  # (B,)


def facing_head_for(backbone: nn.Module, weights: str = "none") -> FacingHead:
    """The head of a ``Backbone``: through its network's next stage with ``weights`` (``Backbone.next_stage``),
    or on its own map when it keeps the last stage."""
    following = backbone.next_stage(weights)
    return FacingHead(backbone.out_channels) if following is None else FacingHead(following[1], following[0])


def facing_targets(keypoints: torch.Tensor) -> torch.Tensor:
    """The facing that labeled keypoints show: (..., N, 3) pixels -> (...) float32.

    1: faces the camera (the left limbs lie right of the right ones, summed over the pairs with both
    points visible), 0: faces away, NaN: unknown (no visible pair, or an exact tie).
    """
    left, right = keypoints[..., LEFT_PARTS, :], keypoints[..., RIGHT_PARTS, :]  # (..., 3, 3)
    both = (left[..., 2] >= VISIBLE) & (right[..., 2] >= VISIBLE)  # (..., 3)
    spread = torch.where(both, left[..., 0] - right[..., 0], torch.zeros_like(left[..., 0])).sum(-1).float()
    unknown = torch.full_like(spread, float("nan"))
    return torch.where(spread == 0, unknown, (spread > 0).float())


def swap_sides(x: torch.Tensor, swap: torch.Tensor, dim: int) -> torch.Tensor:
    """Every left/right pair of ``x`` exchanged along the parts axis ``dim`` where ``swap`` (x's leading
    dims up to ``dim``, bool) holds; the other entries unchanged."""
    mirrored = x.index_select(dim, torch.tensor(FLIP_PERMUTATION, device=x.device))
    while swap.dim() < x.dim():
        swap = swap.unsqueeze(-1)
    return torch.where(swap, mirrored, x)


def canonical_keypoints(keypoints: torch.Tensor, facing: torch.Tensor) -> torch.Tensor:
    """Labels (..., N, 3) in canonical order: left and right parts exchanged where ``facing`` (...) is 0
    (faces away); unknown facing (NaN) leaves a frame as labeled."""
    return swap_sides(keypoints, facing == 0, keypoints.dim() - 2)


def canonical_labels(keypoints: np.ndarray) -> np.ndarray:
    """``canonical_keypoints`` of labels (F, N, 3) by their own facing, for NumPy callers (a prior's counts)."""
    kps = torch.from_numpy(np.asarray(keypoints, dtype=np.float32))
    return canonical_keypoints(kps, facing_targets(kps)).numpy()


def person_sides(maps: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Canonical maps (B, T, N, h, w) -> person-side maps, one decision per clip from the frames' facing
    logits (B, T): a clip whose mean logit is below 0 faces away and has its pairs exchanged."""
    away = logits.float().mean(1) < 0  # (B,)
    return swap_sides(maps, away, 2)
