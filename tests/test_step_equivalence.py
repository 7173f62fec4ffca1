"""SSN and SSN3D's training step against the formulation they replaced for CPU speed: values and gradients.

The reference below is the earlier code path, written out with the modules' own parameters: the
1st round as a conv on a replicate-padded map with its bias, then the linear layer on the permuted
map; eq. (3) as the unfold/einsum (and the anchors' windows by advanced indexing); the 2nd round
as the same conv on the explicit part windows; the per-part 3D blocks as their Conv3d modules. The
new code computes the 2nd round from the 1st round's conv responses, pads once and runs fewer
kernels; every output and every gradient must stay the same up to float rounding: in float64 to
1e-10, in float32 to 1e-5 of each tensor's largest magnitude (a sum of many terms rounds in absolute,
not per-element, terms).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssn3d.alignment_losses import background_cells
from ssn3d.models.aggregator import PartConv3dBlocks
from ssn3d.models.backbone import Backbone
from ssn3d.models.ssn import SSN, SSNOutput, _softmax_maps
from ssn3d.models.ssn3d import SSN3D, keypoints_to_cells
from ssn3d.models.windows import pad_edges

RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}
B, C, N, H, W = 6, 8, 5, 7, 4  # frames, channels, parts, a non-square map


# --------------------------------------------------------------------------- the reference: the earlier SSN


def ref_map_logits(ssn: SSN, x: torch.Tensor) -> torch.Tensor:
    f = ssn.classifier
    h = F.relu(F.conv2d(pad_edges(x, ssn.window), f.conv.weight, f.conv.bias))  # (B, K, H, W)
    logits = F.linear(h.permute(0, 2, 3, 1), f.fc.weight, f.fc.bias).permute(0, 3, 1, 2)
    logits = logits[:, : ssn.num_parts] if ssn.background else logits
    return logits if ssn.prior is None else ssn.prior(logits)


def ref_classify_windows(ssn: SSN, windows: torch.Tensor) -> torch.Tensor:
    """(B, M, C, k, k) -> (B, M, N): the conv on each explicit window, then the linear layer."""
    f = ssn.classifier
    h = F.relu(F.conv2d(windows.flatten(0, 1), f.conv.weight, f.conv.bias)).flatten(1)
    return F.linear(h, f.fc.weight, f.fc.bias).unflatten(0, windows.shape[:2])


def ref_window_at(x: torch.Tensor, cells: torch.Tensor, k: int) -> torch.Tensor:
    xp = pad_edges(x, k)
    offs = torch.arange(k)
    rows, cols = cells[..., 1, None] + offs, cells[..., 0, None] + offs  # (B, M, k) in padded coordinates
    bidx = torch.arange(x.shape[0])[:, None, None, None]
    return xp.permute(0, 2, 3, 1)[bidx, rows[..., :, None], cols[..., None, :]].permute(0, 1, 4, 2, 3)


def ref_ssn(ssn: SSN, x: torch.Tensor, cells: torch.Tensor | None, mask: torch.Tensor | None) -> SSNOutput:
    k, b, c = ssn.window, x.shape[0], x.shape[1]
    map_logits = ref_map_logits(ssn, x)
    attn = _softmax_maps(map_logits, x.dtype)
    unfolded = F.unfold(pad_edges(x, k), k)  # (B, C*k*k, H*W)
    parts = torch.einsum("bnl,bdl->bnd", attn.flatten(2), unfolded).reshape(b, -1, c, k, k)
    if cells is not None:
        parts = torch.where(mask[..., None, None, None], ref_window_at(x, cells, k), parts)
    if not ssn.training:
        return SSNOutput(parts, attn, None)
    background = None
    if ssn.background:
        bg_cells = background_cells(attn, ssn.num_parts, cells=cells, mask=mask)
        background = ref_classify_windows(ssn, ref_window_at(x, bg_cells, k))
    return SSNOutput(parts, attn, ref_classify_windows(ssn, parts), map_logits, background)


# --------------------------------------------------------------------------- helpers


def _weighted_sum(tensors: list[torch.Tensor | None], seed: int) -> torch.Tensor:
    """A scalar that weighs every output element differently, so each gradient path is checked."""
    g = torch.Generator().manual_seed(seed)
    return sum((t * torch.randn(t.shape, generator=g)).sum() for t in tensors if t is not None)


def _close(a: torch.Tensor, r: torch.Tensor, msg: str = "") -> None:
    rtol = RTOL[r.dtype] if r.is_floating_point() else 0.0
    atol = rtol * float(r.detach().abs().max()) if r.is_floating_point() and r.numel() else 0.0
    torch.testing.assert_close(a, r, rtol=rtol, atol=atol, msg=(lambda m: f"{msg}: {m}") if msg else None)


def _assert_same(new: list[torch.Tensor | None], ref: list[torch.Tensor | None]) -> None:
    assert len(new) == len(ref)
    for a, r in zip(new, ref):
        assert (a is None) == (r is None)
        if a is not None:
            _close(a, r)


def _frames(
    seed: int, k: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, H, W, generator=g).to(dtype).requires_grad_()
    cells = torch.stack(
        [torch.randint(0, W, (B, N), generator=g), torch.randint(0, H, (B, N), generator=g)], -1
    )
    cells[0, 0], cells[-1, -1] = torch.tensor([0, 0]), torch.tensor([W - 1, H - 1])  # border windows
    mask = torch.rand(B, N, generator=g) < 0.5
    mask[0, 0], mask[0, 1] = True, False
    return x, cells, mask


# --------------------------------------------------------------------------- SSN alone


@pytest.mark.parametrize(
    "k, anchored, background, prior",
    [
        (3, False, False, 0.0),
        (3, True, False, 0.0),
        (3, True, True, 0.0),
        (3, True, False, 0.5),
        (1, True, True, 0.0),
        (5, False, True, 0.0),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ssn_outputs_and_gradients_equal_the_earlier_formulation(
    k: int, anchored: bool, background: bool, prior: float, dtype: torch.dtype
) -> None:
    torch.manual_seed(k)
    ssn = SSN(
        in_channels=C, num_parts=N, window=k, hidden=6, background=background, position_prior=prior
    ).train()
    ssn.to(dtype)
    if prior:
        ssn.prior.set_prior(torch.randn(N, 3, 2))  # resampled to the map: the prior's path too
    x, cells, mask = _frames(k, k, dtype)
    cells, mask = (cells, mask) if anchored else (None, None)
    new, ref = ssn(x, cells, mask), ref_ssn(ssn, x, cells, mask)
    _assert_same(list(new), list(ref))
    leaves = [x, *ssn.parameters()]
    g_new = torch.autograd.grad(_weighted_sum(list(new), 1), leaves)
    g_ref = torch.autograd.grad(_weighted_sum(list(ref), 1), leaves)
    _assert_same(list(g_new), list(g_ref))

    ssn.eval()
    with torch.no_grad():
        _assert_same(list(ssn(x, cells, mask)), list(ref_ssn(ssn, x, cells, mask)))
        _close(ssn.map_logits(x), ref_map_logits(ssn, x))


def test_the_explicit_window_2nd_round_equals_the_one_from_the_maps() -> None:
    """``AttentionClassifier.forward`` on Y^i (the module's public 2nd round) agrees with SSN's logits."""
    ssn = SSN(in_channels=C, num_parts=N, window=3, hidden=6).train()
    x, cells, mask = _frames(4, 3)
    out = ssn(x, cells, mask)
    _close(ssn.classifier(out.parts), out.logits)


# --------------------------------------------------------------------------- the whole SSN3D step


def ref_parts3d(model: SSN3D, parts: torch.Tensor) -> torch.Tensor:
    """The per-part blocks as their Conv3d modules on the (B, N*C, T, k, k) layout."""
    blocks = model.parts3d
    b, t, n, c, k, _ = parts.shape
    x = parts.permute(0, 2, 3, 1, 4, 5).reshape(b, n * c, t, k, k)  # Conv3d layout, parts as groups
    return blocks.temporal(blocks.reduce(x)).mean(dim=(2, 3, 4)).reshape(b, n, blocks.channels)


def ref_step(model: SSN3D, clips, kps, frames, frame_kps) -> list[torch.Tensor]:
    """The earlier shared-classifier forward: embedding, 2nd-round logits, maps, anchors' outputs."""
    b, t = clips.shape[:2]
    feats = model.backbone(clips.flatten(0, 1))
    size, fsize = (clips.shape[-1], clips.shape[-2]), (feats.shape[-1], feats.shape[-2])
    cells, mask = keypoints_to_cells(kps, size, fsize, model.cell_geometry())
    out = ref_ssn(model.ssn[0], feats, cells.flatten(0, 1), mask.flatten(0, 1))
    emb = model.fusion(ref_parts3d(model, out.parts.unflatten(0, (b, t))))
    a_feats = model.backbone(frames)
    a_cells, a_mask = keypoints_to_cells(frame_kps, size, fsize, model.cell_geometry())
    anchors = ref_ssn(model.ssn[0], a_feats, a_cells, a_mask)
    return [
        emb,
        out.logits,
        out.attention,
        out.map_logits,
        anchors.logits,
        anchors.attention,
        anchors.map_logits,
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ssn3d_training_step_equals_the_earlier_formulation(dtype: torch.dtype) -> None:
    """Tiny SSN3D (one-stage ResNet18, shared classifier, anchors fed beside the clips): every output the
    losses read and the gradient of every parameter. BatchNorm runs in training mode, so the model is
    copied for the reference rather than run twice (the running statistics would move). Six clips: the
    embedding's BatchNorm1d over two samples amplifies float32 rounding past any fixed tolerance."""
    torch.manual_seed(0)
    backbone = Backbone(name="resnet18", stages=1, weights="none")
    model = SSN3D(backbone=backbone, num_parts=9, attn_channels=8, part_channels=4, embed_dim=16).train()
    reference = SSN3D(
        backbone=Backbone(name="resnet18", stages=1, weights="none"),
        num_parts=9,
        attn_channels=8,
        part_channels=4,
        embed_dim=16,
    ).train()
    reference.load_state_dict(model.state_dict())
    model.to(dtype), reference.to(dtype)
    g = torch.Generator().manual_seed(1)
    clips = torch.randn(6, 3, 3, 64, 32, generator=g).to(dtype)
    kps = torch.zeros(6, 3, 9, 3)
    kps[:, 0, :, 0], kps[:, 0, :, 1], kps[:, 0, :, 2] = (
        torch.linspace(0, 31, 9),
        torch.linspace(0, 63, 9),
        2.0,
    )
    frames = torch.randn(3, 3, 64, 32, generator=g).to(dtype)
    frame_kps = kps[0, :1].repeat(3, 1, 1)
    frame_kps[1, 4:, 2] = 0  # some parts unlabeled: attended, not anchored

    out = model(clips, kps, frames, frame_kps)
    new = [
        out.embedding,
        out.ssn_logits,
        out.attention,
        out.map_logits,
        out.anchor_logits[:, 0],
        out.anchors.attention[:, 0],
        out.anchors.map_logits[:, 0],
    ]
    ref = ref_step(reference, clips, kps, frames, frame_kps)
    new[1:4] = [v.flatten(0, 1) for v in new[1:4]]  # (B, T, ...) -> (B*T, ...) as the reference has them
    _assert_same(new, ref)
    _weighted_sum(new, 2).backward()
    _weighted_sum(ref, 2).backward()
    bad = []
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        assert p.grad is not None, name
        try:
            _close(p.grad, q.grad, name)
        except AssertionError as e:
            bad.append(" ".join(str(e).splitlines()[:5]))
    assert not bad, "\n".join(bad)


class _Conv3dSubclass(nn.Conv3d):
    """A swapped conv class (as an ablation passes one): the blocks must run its own forward."""


def test_part_blocks_reduce_matmul_equals_the_grouped_conv3d() -> None:
    torch.manual_seed(3)
    fast = PartConv3dBlocks(num_parts=N, in_channels=C, channels=4).train()
    conv = PartConv3dBlocks(num_parts=N, in_channels=C, channels=4, conv3d_layer=_Conv3dSubclass).train()
    conv.load_state_dict(fast.state_dict())  # the same parameters and state-dict keys
    for dtype in (torch.float32, torch.float64):
        fast.to(dtype), conv.to(dtype)
        parts = torch.randn(3, 4, N, C, 3, 3, dtype=dtype, requires_grad=True)  # (B, T, N, C, k, k)
        new, ref = fast(parts), conv(parts)
        _close(new, ref)
        leaves_new, leaves_ref = [parts, *fast.parameters()], [parts, *conv.parameters()]
        g = torch.randn(new.shape, dtype=dtype)
        _assert_same(
            list(torch.autograd.grad(new, leaves_new, g)), list(torch.autograd.grad(ref, leaves_ref, g))
        )
