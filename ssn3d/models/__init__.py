"""Models: ``build_model(cfg.model)`` turns a ModelConfig into a module."""

from __future__ import annotations

from torch import nn

from ssn3d.config import ModelConfig, resolved_backbone_stages
from ssn3d.models.backbone import Backbone
from ssn3d.models.baselines import PlainConv3d, TemporalPooling
from ssn3d.models.facing import facing_head_for
from ssn3d.models.ssn import SSN, AttentionClassifier
from ssn3d.models.ssn3d import SSN3D, AnchorOutput, SSN3DOutput


def build_model(cfg: ModelConfig, *, load_weights: bool = True) -> nn.Module:
    """The model a ModelConfig describes (weights from local files only; see ``Backbone``)."""
    backbone = Backbone(
        name=cfg.backbone,
        stages=resolved_backbone_stages(cfg),
        in_channels=cfg.in_channels,
        weights=cfg.weights if load_weights else "none",
    )
    if cfg.arch == "temporal_pooling":
        return TemporalPooling(backbone=backbone, embed_dim=cfg.embed_dim)
    if cfg.arch == "conv3d":
        return PlainConv3d(backbone=backbone, channels=2 * cfg.part_channels, embed_dim=cfg.embed_dim)
    facing = None
    if cfg.facing:  # NOT in the paper: through the network's next stage, with the backbone's weights
        facing = facing_head_for(backbone, cfg.weights if load_weights else "none")
    return SSN3D(
        backbone=backbone,
        num_parts=cfg.num_parts,
        window=cfg.window,
        attn_channels=cfg.attn_channels,
        part_channels=cfg.part_channels,
        embed_dim=cfg.embed_dim,
        strategy=cfg.strategy,
        shared_classifier=cfg.shared_classifier,
        num_frames=cfg.num_frames,
        background_class=cfg.background_class,
        position_prior=cfg.position_prior,
        attn_context=cfg.attn_context,
        facing=facing,
    )


__all__ = [
    "SSN",
    "AnchorOutput",
    "SSN3D",
    "AttentionClassifier",
    "Backbone",
    "PlainConv3d",
    "SSN3DOutput",
    "TemporalPooling",
    "build_model",
]
