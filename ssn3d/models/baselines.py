"""The ablation baselines: no part alignment.

* ``TemporalPooling``: the field's usual video-ReID baseline: global average pooling of each
  frame's backbone features, then the mean over frames, then a BN neck.
* ``PlainConv3d``: one 3D conv over the whole, unaligned feature maps across frames (what the
  paper's introduction says suffers from misalignment), then global pooling and the same fusion.

Both use the same truncated backbone as SSN3D so that an ablation changes the head alone, and
return (B, D) in eval and ``SSN3DOutput`` with no SSN logits in training, so the engine treats
every architecture alike.
"""

from __future__ import annotations

import torch
from torch import nn

from ssn3d.models.ssn3d import SSN3DOutput


class TemporalPooling(nn.Module):
    """Frame features -> spatial GAP -> temporal mean -> Linear + BN to ``embed_dim``."""

    def __init__(self, *, backbone: nn.Module, embed_dim: int = 1024) -> None:
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(backbone.out_channels, embed_dim, bias=False)
        self.bn = nn.BatchNorm1d(embed_dim)
        self.embed_dim = embed_dim

    def forward(
        self, clips: torch.Tensor, keypoints: torch.Tensor | None = None
    ) -> SSN3DOutput | torch.Tensor:
        b, t = clips.shape[:2]
        f = self.backbone(clips.flatten(0, 1)).mean(dim=(2, 3))  # (B*T, C)
        emb = self.bn(self.fc(f.unflatten(0, (b, t)).mean(1)))  # (B, D)
        return SSN3DOutput(emb, None, None) if self.training else emb


class PlainConv3d(nn.Module):
    """Unaligned 3D convolution: (B, C, T, h, w) -> 1x1x1 reduce -> 3x3x3 -> global pool -> fusion."""

    def __init__(self, *, backbone: nn.Module, channels: int = 512, embed_dim: int = 1024) -> None:
        super().__init__()
        self.backbone = backbone
        c = backbone.out_channels
        self.conv = nn.Sequential(
            nn.Conv3d(c, channels, 1, bias=False),
            nn.BatchNorm3d(channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm3d(channels),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(channels, embed_dim, bias=False)
        self.bn = nn.BatchNorm1d(embed_dim)
        self.embed_dim = embed_dim

    def forward(
        self, clips: torch.Tensor, keypoints: torch.Tensor | None = None
    ) -> SSN3DOutput | torch.Tensor:
        b, t = clips.shape[:2]
        f = self.backbone(clips.flatten(0, 1)).unflatten(0, (b, t))  # (B, T, C, h, w)
        x = self.conv(f.transpose(1, 2))  # (B, C, T, h, w): Conv3d layout
        emb = self.bn(self.fc(x.mean(dim=(2, 3, 4))))
        return SSN3DOutput(emb, None, None) if self.training else emb
