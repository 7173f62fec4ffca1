"""Eq. (3) and the anchors' windows without unfolding the feature map into all its k x k windows.

Eq. (3), Y^i = sum_hw A^i_hw * window(X)_hw, read per window offset d = (dy, dx) is

    Y^i[:, dy, dx] = sum_hw A^i_hw * X[:, src_d(h, w)],   src_d(h, w) = (clamp(h + dy - r), clamp(w + dx - r)),

r = k // 2, the clamp being the edge padding (replicate): the window of a border cell reads the border
again. Unfolding X builds a (B, C*k*k, H*W) tensor (a 151 M-element one at the paper's 1024 x 16 x 8
maps, B*T = 128) and col2im in backward. Here the shift moves to the attention side instead: each
map is scattered to the cells its k*k offsets read, S (B, N*k*k, H*W) with S[i, d, src_d(h, w)] +=
A^i_hw (a border cell collects the weight of every window that reads it), and

    Y = S @ X_flat^T        # (B, N*k*k, H*W) x (B, H*W, C) -> (B, N*k*k, C)

is one batched matmul whose only new tensor is S (N*k*k*H*W per frame: 81 x 128 at the paper's
shape, against C*k*k*H*W = 9216 x 128 for unfolding). Why one bmm rather than k*k small ones over
shifted views: one kernel launch each way on a GPU, one large GEMM for the CPU's BLAS, and no
strided-view backward (which materialises a full-size gradient per view). Why S over the map itself
rather than over the edge-padded map: the GEMMs are (H+k-1)(W+k-1) / HW times smaller (1.4x at
16 x 8) and no padded copy of X is built. For a channels_last map (the GPU's layout) X_flat^T is
already contiguous, so nothing of size C*H*W is copied at all. (On a GPU the scatter's border sums
use atomics, so their float rounding order may vary between runs.)

The anchors' windows are eq. (3) with a one-hot attention map at the keypoint's cell
(``anchor_attention``), so semi-supervised parts come out of the same matmul, and the supervised
strategy's mean window (the mean over all H*W windows: k*k shifted means) is the same matmul with a
uniform map, so a supervised frame's N parts are one matmul too.
"""

from __future__ import annotations

from functools import lru_cache

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


def _window_sources(height: int, width: int, window: int, device: torch.device) -> torch.Tensor:
    """Flat (d, src_d(h, w)) for every offset d and cell (h, w): the (k*k*H*W,) index of the scatter."""
    k, r = window, window // 2
    rows = torch.arange(height, device=device)[:, None]
    cols = torch.arange(width, device=device)[None, :]
    per_offset = [
        ((rows + dy - r).clamp(0, height - 1) * width + (cols + dx - r).clamp(0, width - 1)).flatten()
        + (dy * k + dx) * height * width
        for dy in range(k)
        for dx in range(k)
    ]
    return torch.cat(per_offset)


# eager steps build the index once per map size; a compiled graph traces the builder (dynamo would only
# warn about the cache and trace through it anyway)
@lru_cache(maxsize=16)
def _cached_window_sources(height: int, width: int, window: int, device: torch.device) -> torch.Tensor:
    # made outside inference mode: the index a model builds while evaluating (mid-training, the app) serves
    # the training steps after it, and autograd refuses to save an inference tensor
    with torch.inference_mode(False):
        return _window_sources(height, width, window, device)


def scattered_attention(attn: torch.Tensor, window: int) -> torch.Tensor:
    """Every attention map at the cells its window offsets read: (B, N, H, W) -> S (B, N*k*k, H*W).

    Row (i, dy, dx) holds at cell c the sum of A^i over the cells whose window reads c at (dy, dx):
    A^i shifted by (r - dy, r - dx), with the weight of the shifted-out border piled onto the edge.
    Summed in at least float32 (the border's few sums), returned in ``attn``'s dtype.
    """
    _check_window(window)
    b, n, h, w = attn.shape
    kk = window * window
    sources = _window_sources if torch.compiler.is_compiling() else _cached_window_sources
    src = sources(h, w, window, attn.device).expand(b * n, kk * h * w)
    sum_dtype = torch.promote_types(attn.dtype, torch.float32)  # bf16/fp16 maps summed in float32
    a = attn.to(sum_dtype).reshape(b * n, h * w).repeat(1, kk)  # (B*N, k*k*H*W): A^i once per offset
    s = a.new_zeros(b * n, kk * h * w).scatter_add_(1, src, a)
    return s.view(b, n * kk, h * w).to(attn.dtype)  # (B, N*k*k, H*W)


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
    k, n = window, attn.shape[1]
    s = scattered_attention(attn, k).to(x.dtype)  # (B, N*k*k, H*W)
    y = torch.bmm(s, x.flatten(2).transpose(1, 2))  # (B, N*k*k, C)
    return y.reshape(b, n, k, k, c).permute(0, 1, 4, 2, 3)  # (B, N, C, k, k)


def cell_attention(cells: torch.Tensor, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot maps at integer cells (col, row): (B, N, 2) -> (B, N, H, W), 1 at the cell, 0 elsewhere."""
    index = (cells[..., 1] * width + cells[..., 0]).long()  # (B, N) flat cell index
    # a scatter into zeros of ``dtype``: F.one_hot builds an int64 map and checks its range on the host first
    flat = torch.zeros(*index.shape, height * width, dtype=dtype, device=cells.device)
    flat.scatter_(-1, index[..., None], 1.0)  # (B, N, H*W)
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
