"""The extra alignment losses (ssn3d.alignment_losses): zero exactly when their property holds, larger when not."""

from __future__ import annotations

import math

import pytest
import torch

from ssn3d.alignment_losses import (
    BackgroundCE,
    FlipConsistency,
    PositionCE,
    TemporalStability,
    background_cells,
    gaussian_cell_targets,
    soft_argmax,
)
from ssn3d.keypoints import FLIP_PERMUTATION
from ssn3d.models.ssn import SSN

H, W, N = 6, 4, 9  # a non-square map, so a (col, row) / (row, col) mix-up changes the result


def peaked(cells: torch.Tensor, height: float = 8.0) -> torch.Tensor:
    """(B, N, 2) cells (col, row) -> (B, N, H, W) logits with one peak of ``height`` at each cell."""
    b, n = cells.shape[:2]
    logits = torch.zeros(b, n, H, W)
    bi, ni = torch.meshgrid(torch.arange(b), torch.arange(n), indexing="ij")
    logits[bi, ni, cells[..., 1], cells[..., 0]] = height
    return logits


def random_cells(b: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(W, (b, N), generator=g), torch.randint(H, (b, N), generator=g)], -1)


def one_hot_maps(cells: torch.Tensor) -> torch.Tensor:
    """(..., 2) cells -> (..., H, W) maps with all mass on the cell."""
    return gaussian_cell_targets(cells, (H, W), 0.0).reshape(*cells.shape[:-1], H, W)


# --------------------------------------------------------------------------- PositionCE


def test_position_ce_prefers_the_keypoint_cell_and_respects_col_row() -> None:
    cells = random_cells(3)
    mask = torch.ones(3, N, dtype=torch.bool)
    loss = PositionCE(weight=1.0)
    at_keypoint = loss(peaked(cells), cells, mask)
    elsewhere = loss(peaked((cells + torch.tensor([1, 2])) % torch.tensor([W, H])), cells, mask)
    sharper = loss(peaked(cells, 20.0), cells, mask)
    assert sharper < at_keypoint < elsewhere
    assert sharper < 1e-6
    # one keypoint at (col 1, row 3): a peak at (row 3, col 1) is right, one at (row 1, col 3) is wrong
    kp = torch.tensor([[[1, 3]]]).expand(1, N, 2)
    right = peaked(kp)
    wrong = peaked(kp.flip(-1))
    one = torch.ones(1, N, dtype=torch.bool)
    assert loss(right, kp, one) < 0.1 < loss(wrong, kp, one)


def test_position_ce_one_hot_is_the_negative_log_attention_at_the_cell() -> None:
    logits = torch.randn(2, N, H, W, generator=torch.Generator().manual_seed(1))
    cells = random_cells(2, seed=2)
    mask = torch.rand(2, N, generator=torch.Generator().manual_seed(3)) < 0.6
    attn = logits.flatten(2).softmax(-1)
    at_cell = attn.gather(-1, (cells[..., 1] * W + cells[..., 0])[..., None]).squeeze(-1)
    expected = -(at_cell[mask].log()).mean()
    assert torch.allclose(PositionCE(weight=1.0)(logits, cells, mask), expected, atol=1e-5)
    assert torch.allclose(PositionCE(weight=2.5)(logits, cells, mask), 2.5 * expected, atol=1e-5)


def test_position_ce_gaussian_target_is_zero_at_the_target_and_larger_elsewhere() -> None:
    cells = random_cells(2)
    mask = torch.ones(2, N, dtype=torch.bool)
    loss = PositionCE(weight=1.0, sigma=1.0)
    target = gaussian_cell_targets(cells, (H, W), 1.0)
    assert torch.allclose(target.sum(-1), torch.ones(2, N))
    exact = target.log().reshape(2, N, H, W)  # logits whose softmax is the target
    assert loss(exact, cells, mask).abs() < 1e-5
    assert loss(peaked(cells, 20.0), cells, mask) > 0.2  # too sharp for a Gaussian target
    assert loss(exact.roll(2, -2), cells, mask) > 0.5


def test_position_ce_masked_parts_contribute_nothing_and_gradients_reach_the_rest() -> None:
    logits = torch.randn(2, N, H, W, generator=torch.Generator().manual_seed(4), requires_grad=True)
    cells = random_cells(2)
    mask = torch.zeros(2, N, dtype=torch.bool)
    mask[0, :3] = True
    loss = PositionCE(weight=1.0)(logits, cells, mask)
    loss.backward()
    grad = logits.grad.abs().flatten(2).sum(-1)  # (B, N)
    assert (grad[mask] > 0).all() and (grad[~mask] == 0).all()
    changed = logits.detach().clone()
    changed[~mask] = torch.randn_like(changed[~mask])
    assert torch.equal(PositionCE(weight=1.0)(changed, cells, mask), loss.detach())


def test_position_ce_all_false_mask_and_weight_zero_give_a_finite_zero() -> None:
    logits = torch.randn(2, N, H, W, requires_grad=True)
    cells = random_cells(2)
    none = torch.zeros(2, N, dtype=torch.bool)
    for loss in (PositionCE(weight=1.0)(logits, cells, none), PositionCE()(logits, cells, ~none)):
        assert loss.shape == () and loss.item() == 0.0 and torch.isfinite(loss)
        loss.backward()  # joined to the graph: adding it to the total loss is safe
    with pytest.raises(ValueError, match="must be >= 0"):
        PositionCE(weight=-1.0)


def test_position_ce_trains_a_real_ssn_classifier() -> None:
    torch.manual_seed(0)
    ssn = SSN(in_channels=8, num_parts=N, window=3, hidden=16)
    x = torch.randn(2, 8, H, W)
    cells, mask = random_cells(2), torch.ones(2, N, dtype=torch.bool)
    loss = PositionCE(weight=1.0)(ssn.classifier.forward_map(x), cells, mask)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ssn.classifier.parameters())


# --------------------------------------------------------------------------- TemporalStability


def test_soft_argmax_finds_the_cell_of_a_one_hot_map() -> None:
    cells = random_cells(2)
    assert torch.allclose(soft_argmax(one_hot_maps(cells)), cells.float())


def test_temporal_stability_zero_when_still_and_huber_beyond_delta() -> None:
    loss = TemporalStability(weight=1.0, delta=1.0)
    still = one_hot_maps(random_cells(2)).unsqueeze(1).expand(2, 4, N, H, W)  # (B, T, N, h, w)
    assert loss(still).item() == 0.0
    start = torch.zeros(1, N, 2, dtype=torch.long)
    half = one_hot_maps(start)
    small = torch.stack([half, one_hot_maps(start + torch.tensor([0, 1]))], 1)  # 1 cell down
    big = torch.stack([half, one_hot_maps(start + torch.tensor([0, 4]))], 1)  # 4 cells down
    assert loss(small).item() == pytest.approx(1.0, abs=1e-5)
    assert loss(big).item() == pytest.approx(2 * 4 - 1, abs=1e-4)  # linear, not 16
    assert loss(big).item() < 4**2


def test_temporal_stability_gradients_and_short_clips() -> None:
    logits = torch.randn(2, 3, N, H, W, generator=torch.Generator().manual_seed(5), requires_grad=True)
    attn = logits.flatten(3).softmax(-1).reshape(logits.shape)
    loss = TemporalStability(weight=1.0)(attn)
    assert loss > 0 and torch.isfinite(loss)
    loss.backward()
    assert logits.grad.abs().sum() > 0 and torch.isfinite(logits.grad).all()
    single = TemporalStability(weight=1.0)(attn[:, :1].detach())
    assert single.item() == 0.0 and TemporalStability()(attn.detach()).item() == 0.0


# --------------------------------------------------------------------------- FlipConsistency


def _maps(b: int, seed: int, requires_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.randn(
        b, N, H, W, generator=torch.Generator().manual_seed(seed), requires_grad=requires_grad
    )
    return logits, logits.flatten(2).softmax(-1).reshape(logits.shape)


def test_flip_consistency_zero_for_the_true_mirror_and_larger_otherwise() -> None:
    loss = FlipConsistency(weight=1.0)
    _, a = _maps(3, 6)
    mirror = a[:, list(FLIP_PERMUTATION)].flip(-1)
    assert loss(a, mirror).abs() < 1e-6
    not_swapped = a.flip(-1)  # mirrored, but left and right parts not exchanged
    not_mirrored = a[:, list(FLIP_PERMUTATION)]
    assert loss(a, not_swapped) > 1e-3 and loss(a, not_mirrored) > 1e-3
    assert loss(a, not_swapped) <= math.log(2)
    # symmetric: the mirror of the mirror is the frame
    assert torch.allclose(loss(a, not_swapped), loss(not_swapped, a), atol=1e-6)


def test_flip_consistency_gradients_reach_both_views_and_n_is_checked() -> None:
    la, a = _maps(2, 7, requires_grad=True)
    lm, m = _maps(2, 8, requires_grad=True)
    FlipConsistency(weight=1.0)(a, m).backward()
    assert la.grad.abs().sum() > 0 and lm.grad.abs().sum() > 0
    assert FlipConsistency()(a, m).item() == 0.0
    with pytest.raises(ValueError, match="flip permutation"):
        FlipConsistency(weight=1.0)(a[:, :4], m[:, :4])
    assert FlipConsistency(weight=1.0, permutation=(1, 0, 2, 3))(a[:, :4], m[:, :4]) > 0
    with pytest.raises(ValueError, match="permutation"):
        FlipConsistency(weight=1.0, permutation=(0, 0, 1))


# --------------------------------------------------------------------------- background


def test_background_cells_avoid_attention_peaks_and_keypoints() -> None:
    attn = torch.full((1, N, H, W), 1e-3)
    attn[:, :, :3, :] = 1.0  # every part looks at the top half
    attn = attn / attn.flatten(2).sum(-1)[..., None, None]
    got = background_cells(attn, 4, radius=-1)
    assert got.shape == (1, 4, 2) and got.dtype == torch.long
    assert (got[..., 1] >= 3).all()  # rows of the bottom half
    # a keypoint at (col 0, row 5) excludes its neighbourhood
    kp = torch.tensor([[[0, 5]]]).expand(1, N, 2)
    got = background_cells(attn, 4, radius=1, cells=kp, mask=torch.ones(1, N, dtype=torch.bool))
    near = ((got[..., 0] - 0).abs() <= 1) & ((got[..., 1] - 5).abs() <= 1)
    assert not near.any() and (got[..., 1] >= 3).all()
    with pytest.raises(ValueError, match="count"):
        background_cells(attn, H * W + 1)


def test_background_ce_lower_when_background_windows_say_no_part() -> None:
    b, k = 2, 3
    part = torch.full((b, N, N + 1), -4.0)
    part[:, torch.arange(N), torch.arange(N)] = 4.0  # part i says class i
    bg_right = torch.full((b, k, N + 1), -4.0)
    bg_right[..., N] = 4.0
    bg_wrong = torch.full((b, k, N + 1), -4.0)
    bg_wrong[..., 0] = 4.0  # background windows taken for the head
    loss = BackgroundCE(weight=1.0)
    right, wrong = loss(part, bg_right), loss(part, bg_wrong)
    assert right < 0.01 < wrong
    parts_as_background = part.clone()
    parts_as_background[..., N] = 8.0
    assert loss(parts_as_background, bg_right) > right + 1.0


def test_background_ce_gradients_shapes_and_off_switch() -> None:
    part = torch.randn(2, N, N + 1, requires_grad=True)
    bg = torch.randn(2, 5, N + 1, requires_grad=True)
    loss = BackgroundCE(weight=0.5)(part, bg)
    loss.backward()
    assert part.grad.abs().sum() > 0 and bg.grad.abs().sum() > 0
    assert BackgroundCE()(part, bg).item() == 0.0
    with pytest.raises(ValueError, match="N \\+ 1"):
        BackgroundCE(weight=1.0)(part[..., :N], bg[..., :N])


# --------------------------------------------------------------------------- AlignmentTerms (the wiring)


def _semi_model(*overrides: str) -> torch.nn.Module:
    from tiny import tiny_overrides

    from ssn3d.config import load_config
    from ssn3d.models import build_model

    torch.manual_seed(0)
    cfg = load_config(
        None, [*tiny_overrides({"model": {"attn_channels": 16, "part_channels": 8}}), *overrides]
    )
    return build_model(cfg.model), cfg


def _keypoints(b: int, t: int, frames: tuple[int, ...]) -> torch.Tensor:
    kp = torch.zeros(b, t, 9, 3)
    for i in range(9):
        kp[:, list(frames), i] = torch.tensor([3.0 + 3 * (i % 3), 5.0 + 6 * (i // 3), 2.0])
    return kp


def test_alignment_terms_are_empty_when_every_weight_is_zero() -> None:
    from ssn3d.alignment_losses import AlignmentTerms
    from ssn3d.config import LossConfig

    terms = AlignmentTerms(LossConfig())
    assert terms.active == () and not terms.needs_mirror
    model, _ = _semi_model()
    assert terms(model(torch.randn(2, 4, 3, 64, 32))) == {}


def test_position_ce_reads_labeled_clip_frames_and_the_frames_beside_the_clip() -> None:
    """The anchored parts of both kinds of labeled frames enter one mean; unlabeled frames do not."""
    from ssn3d.alignment_losses import AlignmentTerms

    model, cfg = _semi_model("loss.position_ce=1")
    terms = AlignmentTerms(cfg.loss)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 3, 64, 32, generator=g)
    frames = torch.randn(3, 3, 64, 32, generator=g)
    beside = _keypoints(3, 1, (0,))[:, 0]
    out = model(x, _keypoints(2, 4, (1,)), frames, beside)
    got = terms(out)["position_ce"]
    clip_logits = out.map_logits[:, 1]  # (2, 9, h, w): the labeled clip frames
    want = PositionCE(weight=1.0)(
        torch.cat([clip_logits, out.anchors.map_logits[:, 0]]),
        torch.cat([out.cells[:, 1], out.anchors.cells]),
        torch.cat([out.mask[:, 1], out.anchors.mask]),
    )
    torch.testing.assert_close(got, want)
    unlabeled = model(x, _keypoints(2, 4, ()), None, None)
    assert terms(unlabeled)["position_ce"].item() == 0.0  # nothing labeled: a zero in the graph


def test_temporal_flip_and_background_terms_read_their_model_outputs() -> None:
    from ssn3d.alignment_losses import AlignmentTerms

    model, cfg = _semi_model(
        "loss.temporal_stability=1",
        "loss.flip_consistency=1",
        "model.background_class=true",
        "loss.background=1",
    )
    terms = AlignmentTerms(cfg.loss)
    assert terms.active == ("temporal_stability", "flip_consistency", "background") and terms.needs_mirror
    g = torch.Generator().manual_seed(4)
    out = model(torch.randn(2, 4, 3, 64, 32, generator=g), _keypoints(2, 4, (0,)),
                torch.randn(3, 3, 64, 32, generator=g), _keypoints(3, 1, (0,))[:, 0], mirror_anchors=True)  # fmt: skip
    got = terms(out)
    torch.testing.assert_close(got["temporal_stability"], TemporalStability(weight=1.0)(out.attention))
    a = out.anchors
    torch.testing.assert_close(
        got["flip_consistency"], FlipConsistency(weight=1.0)(a.attention[:, 0], a.mirrored_attention[:, 0])
    )
    want = BackgroundCE(weight=1.0)(
        torch.cat([out.ssn_logits.flatten(0, 1), a.logits[:, 0]]),
        torch.cat([out.background_logits.flatten(0, 1), a.background_logits[:, 0]]),
    )
    torch.testing.assert_close(got["background"], want)
    assert all(torch.isfinite(v) and v > 0 for v in got.values())
