"""Eq. (4)-(6): SSN cross-entropy and the batch-hard triplet loss."""

from __future__ import annotations

import math

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


def test_ssn_loss_is_cross_entropy_with_target_i() -> None:
    logits = torch.tensor([[[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]]])
    low = float(ssn_loss(logits))
    assert low < 0.02
    shuffled = logits[:, [1, 2, 0]]
    assert float(ssn_loss(shuffled)) > 4.0
    uniform = torch.zeros(2, 4, 4)
    assert abs(float(ssn_loss(uniform)) - math.log(4)) < 1e-6
    assert abs(float(ssn_loss(uniform, "sum")) - 4 * math.log(4)) < 1e-5  # eq. (4) verbatim


def test_total_loss_weights_ssn_by_lambda() -> None:
    assert abs(float(total_loss(torch.tensor(1.0), torch.tensor(2.0), 0.1)) - 1.2) < 1e-6
