"""The attention classifier's frame context (``model.attn_context``, NOT in the paper)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny import tiny_overrides

from ssn3d.config import ConfigError, load_config
from ssn3d.losses import ssn_loss
from ssn3d.models import AttentionClassifier, build_model
from ssn3d.models.ssn import frame_context, pad_edges


def _pair() -> tuple[AttentionClassifier, AttentionClassifier]:
    """The paper's classifier and one with context, sharing conv and fc weights."""
    torch.manual_seed(0)
    plain = AttentionClassifier(in_channels=8, num_parts=4, window=3, hidden=16)
    ctx = AttentionClassifier(in_channels=8, num_parts=4, window=3, hidden=16, context=True)
    ctx.load_state_dict({**plain.state_dict(), "context.weight": ctx.context.weight}, strict=True)
    return plain, ctx


def _windows(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> every edge-padded 3 x 3 window (B, H*W, C, 3, 3), row-major."""
    b, c, h, w = x.shape
    return F.unfold(pad_edges(x, 3), 3).transpose(1, 2).reshape(b, h * w, c, 3, 3)


def test_an_untrained_context_classifier_is_the_papers() -> None:
    plain, ctx = _pair()
    x = torch.randn(2, 8, 6, 5)
    torch.testing.assert_close(ctx.forward_map(x), plain.forward_map(x))
    g = frame_context(x)[:, None].expand(-1, 30, -1)
    torch.testing.assert_close(ctx(_windows(x), g), plain(_windows(x)))


def test_both_rounds_read_the_same_context_so_a_window_keeps_its_first_round_logit() -> None:
    _, ctx = _pair()
    torch.nn.init.normal_(ctx.context.weight)
    x = torch.randn(2, 8, 6, 5)
    first = ctx.forward_map(x)  # (B, N, H, W)
    second = ctx(_windows(x), frame_context(x)[:, None].expand(-1, 30, -1))  # (B, H*W, N)
    torch.testing.assert_close(second, first.flatten(2).transpose(1, 2), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="context"):
        ctx(_windows(x))


def test_the_same_window_in_another_frame_gets_other_logits() -> None:
    """What the context is for: the cell alone cannot say which way the person faces; the frame can."""
    _, ctx = _pair()
    torch.nn.init.normal_(ctx.context.weight)
    a = torch.randn(1, 8, 6, 5)
    b = a.clone()
    b[..., 4:, :] += 3.0  # the bottom rows differ; the 3 x 3 window around cell (1, 2) is the same
    la, lb = ctx.forward_map(a)[0, :, 1, 2], ctx.forward_map(b)[0, :, 1, 2]
    assert not torch.allclose(la, lb)


def test_every_parameter_of_a_context_model_learns_and_only_attention_models_take_it() -> None:
    torch.manual_seed(0)
    over = tiny_overrides({"model": {"attn_channels": 16, "part_channels": 8}})
    model = build_model(load_config(None, [*over, "model.strategy=semi", "model.attn_context=true"]).model)
    clips = torch.randn(2, 4, 3, 64, 32)
    kps = torch.zeros(2, 4, 9, 3)
    kps[:, 0, :, 0], kps[:, 0, :, 1], kps[:, 0, :, 2] = 16.0, torch.linspace(4, 60, 9), 2.0
    out = model(clips, kps)
    (out.embedding.pow(2).mean() + ssn_loss(out.ssn_logits)).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead
    with pytest.raises(ConfigError, match="model.attn_context=True needs SSN attention"):
        load_config(None, [*over, "model.strategy=supervised", "model.attn_context=true"])


def test_the_ssn_steps_second_round_with_context_equals_the_classifier_on_its_part_windows() -> None:
    """The fast 2nd round (weighted sums of the 1st round's responses) keeps the context term exactly."""
    from ssn3d.models import SSN

    torch.manual_seed(0)
    ssn = SSN(in_channels=8, num_parts=4, window=3, hidden=16, context=True).train()
    torch.nn.init.normal_(ssn.classifier.context.weight)
    x = torch.randn(3, 8, 6, 5)
    out = ssn(x)
    g = frame_context(x)[:, None].expand(-1, 4, -1)  # (B, N, C)
    torch.testing.assert_close(out.logits, ssn.classifier(out.parts, g), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.map_logits, ssn.classifier.forward_map(x))
