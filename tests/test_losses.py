"""Eq. (4)-(6): SSN cross-entropy and the batch-hard triplet loss."""

from __future__ import annotations

import math

import pytest
import torch

from ssn3d.losses import BatchHardTriplet, pairwise_distance, ssn_loss, total_loss


def test_triplet_is_zero_when_margin_is_met() -> None:
    d = 4
    # two ids far apart, each tight: d(a,n)/sqrt(d) - d(a,p)/sqrt(d) >> margin
    emb = torch.tensor([[0.0] * d, [0.1] + [0.0] * (d - 1), [10.0] * d, [10.0] * (d - 1) + [10.1]])
    pids = torch.tensor([0, 0, 1, 1])
    assert float(BatchHardTriplet(0.3)(emb, pids)) == 0.0


def test_triplet_is_positive_and_hand_computed_when_margin_is_violated() -> None:
    emb = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    pids = torch.tensor([0, 0, 1, 1])
    loss = BatchHardTriplet(0.5)(emb, pids)
    s = math.sqrt(2)
    # anchor 0: hardest pos 2, hardest neg 1; anchor 1: pos 2, neg 1; anchor 2: pos 2, neg 1; anchor 3: pos 2, neg 1
    expected = 0.5 + 2 / s - 1 / s
    assert abs(float(loss) - expected) < 1e-5
    assert float(loss) > 0


def test_triplet_distances_are_scaled_by_sqrt_d() -> None:
    torch.manual_seed(0)
    emb = torch.randn(8, 16)
    pids = torch.arange(4).repeat_interleave(2)
    big = torch.cat([emb, emb, emb, emb], 1)  # 4x the dims, 2x the distances: /sqrt(4d) keeps the loss
    assert abs(float(BatchHardTriplet(0.0)(emb, pids)) - float(BatchHardTriplet(0.0)(big, pids))) < 1e-4


def test_triplet_gradient_is_finite_for_identical_embeddings() -> None:
    emb = torch.zeros(4, 8, requires_grad=True)
    loss = BatchHardTriplet(0.3)(emb, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert torch.isfinite(emb.grad).all()


def test_pairwise_distance_matches_cdist() -> None:
    x, y = torch.randn(5, 7), torch.randn(6, 7)
    torch.testing.assert_close(pairwise_distance(x, y), torch.cdist(x, y), atol=1e-4, rtol=1e-4)


def test_ssn_loss_is_cross_entropy_of_row_i_against_label_i() -> None:
    # row i holds part i's logits over the N labels; this matrix is not symmetric, so a CE over the
    # columns (a transposed loss) gives another value
    logits = torch.tensor([[[5.0, 5.0, 5.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]]])
    rows = logits[0]
    want = float((rows.logsumexp(1) - rows.diagonal()).mean())
    assert float(ssn_loss(logits)) == pytest.approx(want, abs=1e-6)
    transposed = float((rows.logsumexp(0) - rows.diagonal()).mean())
    assert abs(transposed - want) > 0.05
    assert float(ssn_loss(logits, "sum")) == pytest.approx(3 * want, abs=1e-5)  # eq. (4) verbatim
    uniform = torch.zeros(2, 4, 4)
    assert abs(float(ssn_loss(uniform)) - math.log(4)) < 1e-6


def test_ssn_loss_of_per_frame_classifiers_and_anchor_frames() -> None:
    torch.manual_seed(0)
    clip = torch.randn(2, 3, 4, 4)  # (B, T, N, N): 3 classifiers
    anchors = torch.randn(5, 3, 4, 4)  # (M, G, N, N)
    per_t = [ssn_loss(torch.cat([clip[:, t], anchors[:, t]])) for t in range(3)]
    got = ssn_loss(clip, per_frame_classifiers=True, anchor_logits=anchors)
    torch.testing.assert_close(got, sum(per_t))
    shared = ssn_loss(clip, anchor_logits=anchors[:, :1])  # one classifier: every frame in one mean
    torch.testing.assert_close(shared, ssn_loss(torch.cat([clip.flatten(0, 1), anchors[:, 0]])))
    assert float(ssn_loss(None)) == 0.0


def test_triplet_under_cpu_bf16_autocast_equals_fp32() -> None:
    g = torch.Generator().manual_seed(0)
    # large norms, small differences (embeddings share an offset): a bf16 x @ y.T loses the positive distances
    common = 3 * torch.randn(1, 1024, generator=g)
    centres = 0.5 * torch.randn(8, 1024, generator=g)
    emb = common + centres.repeat_interleave(4, 0) + 0.5 * torch.randn(32, 1024, generator=g)
    pids = torch.arange(8).repeat_interleave(4)
    fp32 = BatchHardTriplet(0.3)(emb, pids)
    assert float(fp32) > 0.01  # the margin is violated, so distance errors show
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = BatchHardTriplet(0.3)(emb, pids)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(float(fp32), abs=1e-4)


def test_triplet_sum_is_eq5_verbatim() -> None:
    emb = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    pids = torch.tensor([0, 0, 1, 1])
    mean, total = BatchHardTriplet(0.5)(emb, pids), BatchHardTriplet(0.5, "sum")(emb, pids)
    assert float(total) == pytest.approx(4 * float(mean), rel=1e-6)


def test_total_loss_weights_ssn_by_lambda() -> None:
    assert abs(float(total_loss(torch.tensor(1.0), torch.tensor(2.0), 0.1)) - 1.2) < 1e-6


def test_ssn_loss_of_a_background_model_reads_the_first_n_logits() -> None:
    """With the (N+1)-th "no part" output, eq. (4) stays an N-way choice between the parts."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 9, 10, generator=g)
    anchors = torch.randn(3, 1, 9, 10, generator=g)
    assert torch.equal(ssn_loss(logits), ssn_loss(logits[..., :9]))
    got = ssn_loss(logits, anchor_logits=anchors)
    assert torch.equal(got, ssn_loss(logits[..., :9], anchor_logits=anchors[..., :9]))
    logits[..., 9] = 100.0  # the background logit does not enter L_SSN
    assert torch.equal(ssn_loss(logits, anchor_logits=anchors), got)


def test_total_loss_adds_the_named_extra_terms_and_is_eq6_without_them() -> None:
    triplet, ssn = torch.tensor(0.37), torch.tensor(2.11)
    assert torch.equal(total_loss(triplet, ssn, 0.1), triplet + 0.1 * ssn)
    assert torch.equal(total_loss(triplet, ssn, 0.1, {}), triplet + 0.1 * ssn)
    extra = {"position_ce": torch.tensor(0.5), "background": torch.tensor(0.25)}
    assert total_loss(triplet, ssn, 0.1, extra).item() == pytest.approx(0.37 + 0.211 + 0.75)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_triplet_masked_mean_equals_the_mean_over_valid_anchors(reduction: str) -> None:
    """Anchors without a positive (a lone id) leave the mean; no valid anchor gives 0 with a gradient."""
    emb = torch.randn(7, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    pids = torch.tensor([0, 0, 1, 1, 1, 2, 3])  # ids 2 and 3 have no positive
    loss = BatchHardTriplet(0.3, reduction)(emb, pids)
    dist = pairwise_distance(emb) / 5**0.5
    ref = []
    for a in range(5):  # the valid anchors, one by one
        same = pids == pids[a]
        same[a] = False
        ref.append((0.3 + dist[a][same].max() - dist[a][pids != pids[a]].min()).clamp_min(0))
    ref = torch.stack(ref)
    torch.testing.assert_close(loss, ref.sum() if reduction == "sum" else ref.mean())
    lone = BatchHardTriplet(0.3, reduction)(emb, torch.arange(7))  # no positive anywhere
    assert float(lone.detach()) == 0.0 and lone.requires_grad
    lone.backward()
    assert torch.isfinite(emb.grad).all() and (emb.grad == 0).all()
