"""Per-part 3D convolution blocks and the fusion layer (paper, "3D Convolutional Network Block").

Each of the N parts has a (T, k, k, C) tensor: its aligned windows across the clip's frames. The
paper gives each part its own 3D conv block ("the 3D convolutional blocks do not share weights")
and fuses the N resulting vectors into a 1024-d embedding. It does not draw the block; ours
(docs/DESIGN.md) is, per part and without weight sharing across parts:

    1x1x1 conv C -> R, BN, ReLU          (reduce: a 1024-wide 3x3x3 conv per part would cost 9 x 28M weights)
    3x3x3 conv R -> R, pad (1, 0, 0), BN, ReLU   (temporal kernel 3; spatial 3x3 valid -> 1x1)
    mean over time                        (any T: 4-frame training clips, 32-frame test chunks)

all N blocks at once as grouped convolutions (groups=N), then Linear(N*R -> D) + BN1d. The 1x1x1
reduce runs as one batched matmul with the conv's own weight (one (B*T*k*k, C) x (C, R) product per
part): the CPU has no fast kernel for a grouped 1x1x1 Conv3d (it fell back to a slow im2col path
whose backward cost several times the whole SSN head), and the matmul gives the same numbers.
"""

from __future__ import annotations

import torch
from torch import nn


class PartConv3dBlocks(nn.Module):
    """N independent 3D conv blocks, run as grouped Conv3d.

    Args:
        num_parts: N.
        in_channels: C.
        channels: R, per-part width.
        window: k of the part windows (the spatial kernel that collapses k x k to 1 x 1).
        conv3d_layer: the Conv3d class (swappable for ablations).
    """

    def __init__(
        self,
        *,
        num_parts: int,
        in_channels: int,
        channels: int = 256,
        window: int = 3,
        conv3d_layer: type[nn.Conv3d] = nn.Conv3d,
        norm_layer: type[nn.Module] = nn.BatchNorm3d,
    ) -> None:
        super().__init__()
        n = num_parts
        self.num_parts, self.channels = n, channels
        self.reduce = nn.Sequential(
            conv3d_layer(n * in_channels, n * channels, 1, groups=n, bias=False),
            norm_layer(n * channels),
            nn.ReLU(inplace=True),
        )
        self.temporal = nn.Sequential(
            conv3d_layer(
                n * channels, n * channels, (3, window, window), padding=(1, 0, 0), groups=n, bias=False
            ),
            norm_layer(n * channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, parts: torch.Tensor) -> torch.Tensor:
        """parts (B, T, N, C, k, k) -> per-part vectors (B, N, R)."""
        b = parts.shape[0]
        x = self.temporal(self._reduced(parts))  # (B, N*R, T, 1, 1)
        return x.mean(dim=(2, 3, 4)).reshape(b, self.num_parts, self.channels)

    def _reduced(self, parts: torch.Tensor) -> torch.Tensor:
        """The reduce block: (B, T, N, C, k, k) -> (B, N*R, T, k, k), the Conv3d layout, parts as groups."""
        b, t, n, c, k, _ = parts.shape
        conv, norm_act = self.reduce[0], self.reduce[1:]
        if type(conv) is not nn.Conv3d:  # a swapped conv class keeps its own forward
            x = parts.permute(0, 2, 3, 1, 4, 5).reshape(b, n * c, t, k, k)  # (B, N*C, T, k, k)
            return self.reduce(x)
        x = parts.permute(2, 0, 1, 4, 5, 3).reshape(n, b * t * k * k, c)  # (N, B*T*k*k, C)
        w = conv.weight.view(n, self.channels, c).transpose(1, 2).to(x.dtype)  # (N, C, R): group n's weight
        h = torch.bmm(x, w)  # (N, B*T*k*k, R)
        h = h.view(n, b, t, k, k, self.channels).permute(1, 0, 5, 2, 3, 4)  # (B, N, R, T, k, k)
        return norm_act(h.reshape(b, n * self.channels, t, k, k))


class Fusion(nn.Module):
    """Concatenated part vectors (B, N, R) -> embedding (B, D): Linear + BN1d (the BNNeck habit)."""

    def __init__(self, *, in_features: int, embed_dim: int = 1024) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, embed_dim, bias=False)
        self.bn = nn.BatchNorm1d(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(x.flatten(1)))
