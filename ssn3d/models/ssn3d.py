"""SSN3D: backbone -> SSN per frame -> per-part 3D conv across frames -> fusion (paper, Figure 1).

Train mode returns ``SSN3DOutput(embedding, ssn_logits, attention)`` (L_SSN of the logits is
``ssn3d.losses.ssn_loss``); eval mode returns the
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
from ssn3d.models.ssn import SSN, SSNOutput


class SSN3DOutput(NamedTuple):
    embedding: torch.Tensor  # (B, D)
    ssn_logits: torch.Tensor | None  # (B, T, N, N) 2nd-round p_{i,j} per frame; None for supervised
    attention: torch.Tensor | None  # (B, T, N, h, w), None for the supervised strategy
    anchor_logits: torch.Tensor | None = None  # (M, G, N, N) of labeled frames fed beside the clips


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
    ) -> None:
        super().__init__()
        if strategy not in ("unsupervised", "semi", "supervised"):
            raise ValueError(f"strategy must be unsupervised, semi or supervised, not {strategy!r}")
        self.backbone = backbone
        self.strategy, self.shared, self.num_parts = strategy, shared_classifier, num_parts
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
        """clips (B, T, 3, H, W) -> part windows (B, T, N, C, k, k), 2nd-round logits (B, T, N, N) in
        training (else None), attention (B, T, N, h, w)."""
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
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Put each classifier's frames back in clip order: parts, logits and attention (B, T, ...)."""
        first = outs[0][1]

        def empty(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.new_empty(b, t, *x.shape[1:])

        parts, logits, attn = empty(first.parts), empty(first.logits), empty(first.attention)
        for idx, o in outs:
            parts[:, idx] = o.parts.unflatten(0, (b, len(idx)))
            if logits is not None:
                logits[:, idx] = o.logits.unflatten(0, (b, len(idx)))
            if attn is not None:
                attn[:, idx] = o.attention.unflatten(0, (b, len(idx)))
        return parts, logits, attn

    def cell_geometry(self) -> CellGeometry:
        """Where the backbone's cells look in the image (measured once per backbone kind)."""
        return measure_geometry(self.backbone)

    def forward_head(self, parts: torch.Tensor) -> torch.Tensor:
        """(B, T, N, C, k, k) -> (B, D)."""
        return self.fusion(self.parts3d(parts))

    def forward_anchors(self, frames: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor | None:
        """Labeled frames (M, 3, H, W) + keypoints (M, N, 3) -> 2nd-round logits (M, G, N, N) through
        each of the G classifiers, labeled parts anchored (paper, "Semi-supervised Training"): the
        labeled images that come with a selected snippet, for L_SSN only."""
        if self.strategy != "semi" or not self.training:
            return None
        feats = self.backbone(frames)  # (M, C, h, w)
        cells, mask = keypoints_to_cells(
            keypoints,
            (frames.shape[-1], frames.shape[-2]),
            (feats.shape[-1], feats.shape[-2]),
            self.cell_geometry(),
        )
        return torch.stack([ssn(feats, cells, mask).logits for ssn in self.ssn], 1)

    def forward(
        self,
        clips: torch.Tensor,
        keypoints: torch.Tensor | None = None,
        anchor_frames: torch.Tensor | None = None,
        anchor_keypoints: torch.Tensor | None = None,
    ) -> SSN3DOutput | torch.Tensor:
        """clips (B, T, 3, H, W), keypoints (B, T, N, 3); in training also the batch's labeled frames
        (M, 3, H, W) with keypoints (M, N, 3). Train: ``SSN3DOutput``; eval: the embedding (B, D)."""
        parts, logits, attn = self.forward_features(clips, keypoints)
        emb = self.forward_head(parts)
        if not self.training:
            return emb
        anchors = None
        if anchor_frames is not None and anchor_keypoints is not None and anchor_frames.shape[0]:
            anchors = self.forward_anchors(anchor_frames, anchor_keypoints)
        return SSN3DOutput(emb, logits, attn, anchors)

    @torch.no_grad()
    def attention_maps(self, clips: torch.Tensor) -> torch.Tensor:
        """The N attention maps of every frame, (B, T, N, h, w), each summing to 1 (no anchors)."""
        b, t = clips.shape[:2]
        feats = self.backbone(clips.flatten(0, 1)).unflatten(0, (b, t))
        maps = [self.ssn[i % len(self.ssn)].attention(feats[:, i]) for i in range(t)]
        return torch.stack(maps, 1)
