"""Eq. (3) and the anchors' windows without unfolding the feature map into all its k x k windows.

Eq. (3), Y^i = sum_hw A^i_hw * window(X)_hw, read per window offset (dy, dx) is

    Y^i[:, dy, dx] = sum_hw A^i_hw * Xpad[:, h + dy, w + dx],

the attention map times the edge-padded map shifted by (dy, dx). Unfolding X builds a
(B, C*k*k, H*W) tensor (a 151 M-element one at the paper's 1024 x 16 x 8 maps, B*T = 128) and
col2im in backward. Here the shift moves to the attention side instead: each map is placed at the
k*k offsets inside the padded grid, S (B, N*k*k, Hp*Wp) with Hp = H + k - 1, Wp = W + k - 1, and

    Y = S @ Xpad_flat^T        # (B, N*k*k, Hp*Wp) x (B, Hp*Wp, C) -> (B, N*k*k, C)

is one batched matmul whose only new tensor is S (N*k*k*Hp*Wp per frame: 81 x 180 at the paper's
shape, against C*k*k*H*W = 9216 x 128 for unfolding). Why one bmm rather than k*k small ones over
shifted views: one kernel launch each way on a GPU, one large GEMM for the CPU's BLAS, and no
strided-view backward (which materialises a full-size gradient per view). For a channels_last map
(the GPU's layout) Xpad_flat^T is already contiguous, so nothing of size C*H*W is copied at all.

The anchors' windows are eq. (3) with a one-hot attention map at the keypoint's cell
(``anchor_attention``), so semi-supervised parts come out of the same matmul, and the supervised
strategy's mean window (the mean over all H*W windows: k*k shifted means) is the same matmul with a
uniform map, so a supervised frame's N parts are one matmul too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_edges(x: torch.Tensor, window: int) -> torch.Tensor:
    """Replicate the border so every cell has a full k x k window: (B, C, H, W) -> (B, C, H+k-1, W+k-1).

    The one padding rule of both rounds of SSN (``ssn3d.models.ssn``): the 1st round's convolution
    and eq. (3) see the same windows.
    """
    r = window // 2
    return F.pad(x, (r, r, r, r), mode="replicate") if r else x


def _check_window(window: int) -> None:
    if window < 1 or window % 2 == 0:
        raise ValueError(f"the window k must be a positive odd number (a centred window), got {window}.")


def shifted_attention(attn: torch.Tensor, window: int) -> torch.Tensor:
    """Every attention map at every window offset in the padded grid: (B, N, H, W) -> (B, N*k*k, Hp*Wp).

    Row (i, dy, dx) holds A^i at rows dy..dy+H-1 and columns dx..dx+W-1 of an (Hp, Wp) grid of zeros.
    """
    _check_window(window)
    b, n, h, w = attn.shape
    k = window
    shifts = [F.pad(attn, (dx, k - 1 - dx, dy, k - 1 - dy)) for dy in range(k) for dx in range(k)]
    return torch.stack(shifts, 2).reshape(b, n * k * k, (h + k - 1) * (w + k - 1))  # (B, N*k*k, Hp*Wp)


def weighted_windows(x: torch.Tensor, attn: torch.Tensor, window: int) -> torch.Tensor:
    """Eq. (3): the attention-weighted sum of the edge-padded k x k windows of ``x``.

    Equal to ``einsum("bnl,bdl->bnd", attn.flatten(2), unfold_windows(x, k))`` reshaped to
    (B, N, C, k, k), without the (B, C*k*k, H*W) tensor.

    Args:
        x: (B, C, H, W) feature maps.
        attn: (B, N, H, W) weights per part (softmax maps, or one-hot maps for anchors).
        window: k, odd.

    Returns:
        (B, N, C, k, k) part windows, a view whose (C, k, k) block is channels_last per window.
    """
    b, c, h, w = x.shape
    if attn.shape[0] != b or attn.shape[2:] != (h, w):
        raise ValueError(f"attention {tuple(attn.shape)} does not match the feature maps {tuple(x.shape)}.")
    return padded_weighted_windows(pad_edges(x, window), attn, window)


def padded_weighted_windows(xp: torch.Tensor, attn: torch.Tensor, window: int) -> torch.Tensor:
    """``weighted_windows`` of an already edge-padded map, for a caller that pads once for two uses.

    Args:
        xp: (B, C, H+k-1, W+k-1), ``pad_edges`` of the feature maps.
        attn: (B, N, H, W).
        window: k, odd.

    Returns:
        (B, N, C, k, k), as ``weighted_windows``.
    """
    b, c = xp.shape[:2]
    k, n = window, attn.shape[1]
    s = shifted_attention(attn.to(xp.dtype), k)  # (B, N*k*k, Hp*Wp)
    y = torch.bmm(s, xp.flatten(2).transpose(1, 2))  # (B, N*k*k, C)
    return y.reshape(b, n, k, k, c).permute(0, 1, 4, 2, 3)  # (B, N, C, k, k)


def cell_attention(cells: torch.Tensor, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot maps at integer cells (col, row): (B, N, 2) -> (B, N, H, W), 1 at the cell, 0 elsewhere."""
    index = (cells[..., 1] * width + cells[..., 0]).long()  # (B, N) flat cell index
    flat = F.one_hot(index, height * width).to(dtype)  # (B, N, H*W)
    return flat.reshape(*cells.shape[:-1], height, width)


def anchor_attention(attn: torch.Tensor, cells: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The attention maps with part i's map replaced by a one-hot map at keypoint i where ``mask``.

    ``weighted_windows(x, anchor_attention(attn, cells, mask), k)`` equals
    ``torch.where(mask, window_at(x, cells, k), weighted_windows(x, attn, k))``: the anchors' windows
    and the attended parts in one matmul. An all-False mask leaves ``attn`` unchanged, so there is
    nothing to test on the host first.

    Args:
        attn: (B, N, H, W).
        cells: (B, N, 2) long cells (col, row).
        mask: (B, N) bool, True where keypoint i anchors part i.
    """
    one_hot = cell_attention(cells, attn.shape[2], attn.shape[3], attn.dtype)
    return torch.where(mask[..., None, None], one_hot, attn)  # (B, N, H, W)


def windows_at(x: torch.Tensor, cells: torch.Tensor, window: int) -> torch.Tensor:
    """The k x k window centred at each cell (col, row): x (B, C, H, W), cells (B, N, 2) -> (B, N, C, k, k).

    The same values as an advanced-indexing gather from the padded map (the tests' reference), through
    the matmul of eq. (3) instead (the gather's backward is a scatter-add into a zero map).
    """
    return weighted_windows(x, cell_attention(cells, x.shape[2], x.shape[3], x.dtype), window)


def mean_window(x: torch.Tensor, window: int) -> torch.Tensor:
    """The mean of all H*W edge-padded k x k windows: (B, C, H, W) -> (B, 1, C, k, k).

    Eq. (3) with a uniform map (k*k shifted means). Through the matmul rather than an H x W average
    pool: the pool's backward keeps the padded map (B, C, Hp, Wp), the matmul only its constant map.
    """
    b, _, h, w = x.shape
    return weighted_windows(x, x.new_full((b, 1, h, w), 1.0 / (h * w)), window)


def supervised_parts(x: torch.Tensor, cells: torch.Tensor, mask: torch.Tensor, window: int) -> torch.Tensor:
    """The supervised strategy's parts: the window at keypoint i where ``mask``, else the mean window.

    One matmul: one-hot maps at the keypoints, uniform maps for the parts without one.

    Args:
        x: (B, C, H, W).
        cells: (B, N, 2) long cells (col, row).
        mask: (B, N) bool.
        window: k.

    Returns:
        (B, N, C, k, k).
    """
    h, w = x.shape[-2:]
    uniform = x.new_full((*mask.shape, h, w), 1.0 / (h * w))  # (B, N, H, W)
    return weighted_windows(x, anchor_attention(uniform, cells, mask), window)
