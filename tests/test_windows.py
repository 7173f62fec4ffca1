"""ssn3d.models.windows against the unfold/gather implementation SSN used before: values and gradients.

fp32 on the CPU, odd k in {1, 3, 5}, non-square maps, several frames per batch. Gradients are
compared w.r.t. the feature maps and the attention maps, with a random upstream gradient so every
output element weighs differently.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssn3d.models.windows import (
    anchor_attention,
    mean_window,
    pad_edges,
    supervised_parts,
    weighted_windows,
    windows_at,
)

B, C, N, H, W = 3, 5, 4, 7, 4  # B*T frames, channels, parts, a non-square map
TOL = dict(atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- the reference: unfold and gather


def unfold_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """All edge-padded k x k windows: (B, C, H, W) -> (B, C*k*k, H*W), channel-major like Conv2d."""
    return F.unfold(pad_edges(x, window), window)


def window_at(x: torch.Tensor, cells: torch.Tensor, window: int) -> torch.Tensor:
    """The window centred at cells (col, row) by advanced indexing: (B, C, H, W), (B, N, 2) -> (B, N, C, k, k)."""
    xp = pad_edges(x, window)
    offs = torch.arange(window)
    rows = cells[..., 1, None] + offs  # (B, N, k), in padded coordinates
    cols = cells[..., 0, None] + offs
    bidx = torch.arange(x.shape[0])[:, None, None, None]
    out = xp.permute(0, 2, 3, 1)[bidx, rows[..., :, None], cols[..., None, :]]  # (B, N, k, k, C)
    return out.permute(0, 1, 4, 2, 3)


def _inputs(seed: int, window: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, H, W, generator=g, dtype=torch.float64).float().requires_grad_()
    attn = torch.randn(B, N, H * W, generator=g).softmax(-1).reshape(B, N, H, W).requires_grad_()
    cols = torch.randint(0, W, (B, N), generator=g)
    rows = torch.randint(0, H, (B, N), generator=g)
    cells = torch.stack([cols, rows], -1)  # (B, N, 2), border cells included
    cells[0, 0] = torch.tensor([0, 0])
    cells[-1, -1] = torch.tensor([W - 1, H - 1])
    mask = torch.rand(B, N, generator=g) < 0.5
    mask[0, 0], mask[0, 1] = True, False  # both kinds are present
    return x, attn, cells, mask


def _grads(out: torch.Tensor, leaves: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    return list(torch.autograd.grad(out, leaves, upstream, retain_graph=True))


def _reference_parts(x: torch.Tensor, attn: torch.Tensor, k: int) -> torch.Tensor:
    return torch.einsum("bnl,bdl->bnd", attn.flatten(2), unfold_windows(x, k)).reshape(B, N, C, k, k)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_weighted_windows_equal_unfold_einsum_values_and_gradients(k: int) -> None:
    x, attn, _, _ = _inputs(k, k)
    ref, new = _reference_parts(x, attn, k), weighted_windows(x, attn, k)
    assert new.shape == (B, N, C, k, k)
    torch.testing.assert_close(new, ref, **TOL)
    for g_new, g_ref in zip(_grads(new, [x, attn], 1), _grads(ref, [x, attn], 1)):
        torch.testing.assert_close(g_new, g_ref, **TOL)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_anchored_parts_equal_where_of_window_at(k: int) -> None:
    x, attn, cells, mask = _inputs(10 + k, k)
    ref = torch.where(mask[..., None, None, None], window_at(x, cells, k), _reference_parts(x, attn, k))
    new = weighted_windows(x, anchor_attention(attn, cells, mask), k)
    torch.testing.assert_close(new, ref, **TOL)
    g_new, g_ref = _grads(new, [x, attn], 2), _grads(ref, [x, attn], 2)
    torch.testing.assert_close(g_new[0], g_ref[0], **TOL)
    torch.testing.assert_close(g_new[1], g_ref[1], **TOL)
    assert (g_new[1][mask] == 0).all()  # an anchored part does not train its attention map


def test_all_false_mask_leaves_attention_unchanged() -> None:
    _, attn, cells, mask = _inputs(3, 3)
    assert torch.equal(anchor_attention(attn, cells, torch.zeros_like(mask)), attn)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_windows_at_and_mean_window_equal_gather_and_unfold_mean(k: int) -> None:
    x, _, cells, mask = _inputs(20 + k, k)
    ref_at, new_at = window_at(x, cells, k), windows_at(x, cells, k)
    torch.testing.assert_close(new_at, ref_at, **TOL)
    torch.testing.assert_close(_grads(new_at, [x], 3)[0], _grads(ref_at, [x], 3)[0], **TOL)

    ref_mean = unfold_windows(x, k).mean(-1).reshape(B, 1, C, k, k)
    new_mean = mean_window(x, k)
    torch.testing.assert_close(new_mean, ref_mean, **TOL)
    torch.testing.assert_close(_grads(new_mean, [x], 4)[0], _grads(ref_mean, [x], 4)[0], **TOL)

    ref_sup = torch.where(mask[..., None, None, None], ref_at, ref_mean)
    new_sup = supervised_parts(x, cells, mask, k)
    torch.testing.assert_close(new_sup, ref_sup, **TOL)
    torch.testing.assert_close(_grads(new_sup, [x], 5)[0], _grads(ref_sup, [x], 5)[0], **TOL)


def test_channels_last_maps_and_the_padding_rule_match() -> None:
    x, attn, _, _ = _inputs(7, 3)
    xp = pad_edges(x, 3)  # replicate: the border row and column repeat, the interior is untouched
    assert torch.equal(xp[:, :, 0, 1:-1], x[:, :, 0]) and torch.equal(xp[:, :, 1:-1, -1], x[:, :, :, -1])
    assert torch.equal(xp[:, :, 1:-1, 1:-1], x)
    cl = x.detach().to(memory_format=torch.channels_last)
    torch.testing.assert_close(weighted_windows(cl, attn, 3), _reference_parts(x, attn, 3), **TOL)


def test_bad_shapes_and_even_windows_are_refused() -> None:
    x, attn, _, _ = _inputs(8, 3)
    with pytest.raises(ValueError, match="positive odd"):
        weighted_windows(x, attn, 2)
    with pytest.raises(ValueError, match="does not match"):
        weighted_windows(x, attn[..., :-1], 3)


def test_an_index_cached_while_evaluating_serves_the_training_step_after_it() -> None:
    """Evaluation (inference mode) mid-training, or the app, must not leave an index autograd refuses."""
    from ssn3d.models.windows import weighted_windows

    x = torch.randn(2, 4, 7, 3)  # a map size no other test uses, so this call builds the cached index
    attn = torch.softmax(torch.randn(2, 5, 21), -1).reshape(2, 5, 7, 3)
    with torch.inference_mode():
        weighted_windows(x, attn, 3)
    xt, at = x.clone().requires_grad_(True), attn.clone().requires_grad_(True)  # the step trains both
    weighted_windows(xt, at, 3).pow(2).sum().backward()
    assert xt.grad.abs().sum() > 0 and at.grad.abs().sum() > 0
