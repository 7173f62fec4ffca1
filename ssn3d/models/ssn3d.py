"""SSN3D: backbone -> SSN per frame -> per-part 3D conv across frames -> fusion (paper, Figure 1).

Train mode returns ``SSN3DOutput(embedding, ssn_loss, attention)``; eval mode returns the
embedding (B, D). A batch of clips is (B, T, C, H, W) throughout; keypoints, when given, are
(B, T, N, 3) rows of (x, y, v) in the clip's pixel coordinates (``ssn3d.keypoints``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ssn3d.keypoints import CellGeometry, geometry_for
from ssn3d.models.aggregator import Fusion, PartConv3dBlocks
from ssn3d.models.cells import measure_geometry
from ssn3d.models.ssn import SSN, SSNOutput, ssn_loss


class SSN3DOutput(NamedTuple):
    embedding: torch.Tensor  # (B, D)
    ssn_loss: torch.Tensor  # scalar L_SSN (0 for the supervised strategy)
    attention: torch.Tensor | None  # (B, T, N, h, w), None for the supervised strategy


def keypoints_to_cells(
    keypoints: torch.Tensor,
    image_size: tuple[int, int],
    feature_size: tuple[int, int],
    geometry: CellGeometry | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., N, 3) pixel keypoints -> (..., N, 2) long cells (col, row) and (..., N) anchor mask.

    The cell is the one whose receptive-field centre is nearest (``CellGeometry.cell_of``, the rule of
    ``ssn3d.keypoints.image_to_feature_cell``); ``geometry`` defaults to ``geometry_for`` the sizes.
    """
    geometry = geometry or geometry_for(image_size, feature_size)
    col, row = geometry.cell_of(keypoints[..., :2].float(), feature_size)
    return torch.stack([col, row], -1).long(), keypoints[..., 2] >= 2


class SSN3D(nn.Module):
    """The SSN3D embedding model.

    Args:
        backbone: a ``Backbone`` (or any module with ``out_channels`` and ``stride``).
        num_parts: N.
        window: k.
        attn_channels: K.
        part_channels: R, width of each part's 3D block.
        embed_dim: D.
        strategy: unsupervised | semi | supervised.
        shared_classifier: one attention classifier for all frames (paper) or one per frame index.
        num_frames: T, the number of classifiers when not shared.
        ssn_reduction: "mean" or "sum" over parts in L_SSN.
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        num_parts: int = 9,
        window: int = 3,
        attn_channels: int = 512,
        part_channels: int = 256,
        embed_dim: int = 1024,
        strategy: str = "semi",
        shared_classifier: bool = True,
        num_frames: int = 4,
        ssn_reduction: str = "mean",
    ) -> None:
        super().__init__()
        if strategy not in ("unsupervised", "semi", "supervised"):
            raise ValueError(f"strategy must be unsupervised, semi or supervised, not {strategy!r}")
        self.backbone = backbone
        self.strategy, self.shared, self.num_parts = strategy, shared_classifier, num_parts
        self.ssn_reduction = ssn_reduction
        c = backbone.out_channels
        n_ssn = 1 if shared_classifier else num_frames
        self.ssn = nn.ModuleList(
            SSN(in_channels=c, num_parts=num_parts, window=window, hidden=attn_channels) for _ in range(n_ssn)
        )
        self.parts3d = PartConv3dBlocks(
            num_parts=num_parts, in_channels=c, channels=part_channels, window=window
        )
        self.fusion = Fusion(in_features=num_parts * part_channels, embed_dim=embed_dim)
        self.embed_dim = embed_dim

    def forward_features(
        self, clips: torch.Tensor, keypoints: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """clips (B, T, 3, H, W) -> part windows (B, T, N, C, k, k), L_SSN, attention (B, T, N, h, w)."""
        b, t = clips.shape[:2]
        feats = self.backbone(clips.flatten(0, 1))  # (B*T, C, h, w)
        fh, fw = feats.shape[-2:]
        cells = mask = None
        if keypoints is not None and self.strategy != "unsupervised":
            cells, mask = keypoints_to_cells(
                keypoints, (clips.shape[-1], clips.shape[-2]), (fw, fh), self.cell_geometry()
            )  # (B, T, N, 2)
        feats = feats.unflatten(0, (b, t))  # (B, T, C, h, w)
        outs: list[tuple[list[int], SSNOutput]] = []
        groups = [range(t)] if self.shared else [range(i, t, len(self.ssn)) for i in range(len(self.ssn))]
        for g, frames in enumerate(
            groups
        ):  # non-shared: classifier g sees frames g, g+T, ... (one per frame index)
            idx = list(frames)
            if not idx:
                continue
            out = self.ssn[g](
                feats[:, idx].flatten(0, 1),
                None if cells is None else cells[:, idx].flatten(0, 1),
                None if mask is None else mask[:, idx].flatten(0, 1),
                supervised=self.strategy == "supervised",
            )
            outs.append((idx, out))
        return self._assemble(outs, b, t)

    def _assemble(
        self, outs: list[tuple[list[int], SSNOutput]], b: int, t: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        first = outs[0][1]
        parts = first.parts.new_empty(b, t, *first.parts.shape[1:])
        attn = (
            None if first.attention is None else first.attention.new_empty(b, t, *first.attention.shape[1:])
        )
        loss = parts.new_zeros((), dtype=torch.float32)
        for idx, o in outs:
            parts[:, idx] = o.parts.unflatten(0, (b, len(idx)))
            if attn is not None:
                attn[:, idx] = o.attention.unflatten(0, (b, len(idx)))
            if o.logits is not None:
                loss = loss + ssn_loss(
                    o.logits, self.ssn_reduction
                )  # non-shared: T independent SSN losses, summed
        return parts, loss, attn

    def cell_geometry(self) -> CellGeometry:
        """Where the backbone's cells look in the image (measured once per backbone kind)."""
        return measure_geometry(self.backbone)

    def forward_head(self, parts: torch.Tensor) -> torch.Tensor:
        """(B, T, N, C, k, k) -> (B, D)."""
        return self.fusion(self.parts3d(parts))

    def forward(
        self, clips: torch.Tensor, keypoints: torch.Tensor | None = None
    ) -> SSN3DOutput | torch.Tensor:
        parts, loss, attn = self.forward_features(clips, keypoints)
        emb = self.forward_head(parts)
        return SSN3DOutput(emb, loss, attn) if self.training else emb

    @torch.no_grad()
    def attention_maps(self, clips: torch.Tensor) -> torch.Tensor:
        """The N attention maps of every frame, (B, T, N, h, w), each summing to 1 (no anchors)."""
        b, t = clips.shape[:2]
        feats = self.backbone(clips.flatten(0, 1)).unflatten(0, (b, t))
        maps = [self.ssn[i % len(self.ssn)].attention(feats[:, i]) for i in range(t)]
        return torch.stack(maps, 1)
