"""Training SSN on Pedestrian-128 crops with one strategy: semi-supervised or unsupervised.

Paper, "Study on SSN / Pedestrian 128": labeled crops anchor part i at keypoint i (eq. 3 with
Y^i = X at the keypoint); "During training, we use the labeled images to guide SSN training. After
that, we continue training SSN with unlabeled data". Unsupervised: the same SSN with no anchors.
Choices the paper leaves open: the backbone is trained with SSN when it has no ImageNet weights (a
random backbone is no feature extractor); phase 1 uses labeled crops only, phase 2 mixes labeled and
unlabeled crops half and half (anchors stay on, as in "Semi-supervised Training").

Option NOT in the paper (``facing`` > 0, semi only): the video model's canonical left/right parts
(``ssn3d.models.facing``): the labeled crops' keypoints are put in the order of a person facing the
camera before the anchors and the prior see them, a ``FacingHead`` on the crop's features learns by
cross-entropy (weight ``facing``) which way the labeled crops face, and ``attention_of`` names the
maps person-side from its answer, one crop at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from ssn3d.alignment_losses import FacingBCE
from ssn3d.engine.optim import adam
from ssn3d.keypoints import FLIP_PERMUTATION, NUM_PARTS, geometry_for
from ssn3d.losses import ssn_loss
from ssn3d.models.backbone import Backbone
from ssn3d.models.facing import (
    FacingHead,
    canonical_keypoints,
    canonical_labels,
    facing_head_for,
    facing_targets,
    person_sides,
)
from ssn3d.models.position_prior import counted_log_prior
from ssn3d.models.ssn import SSN
from ssn3d.models.ssn3d import keypoints_to_cells
from ssn3d.studies.pedestrian_crops import augment, color_jitter, features, normalize

if TYPE_CHECKING:  # the config lives with the study; importing it at run time would be circular
    from ssn3d.studies.pedestrians import PedestrianStudyConfig


def _batch_indices(
    it: int,
    cfg: PedestrianStudyConfig,
    labeled: np.ndarray,
    everyone: np.ndarray,
    strategy: str,
    gen: torch.Generator,
) -> np.ndarray:
    """Semi: labeled crops only during warm-up, then half labeled, half unlabeled; unsupervised: any crop."""

    def draw(pool: np.ndarray, n: int) -> np.ndarray:
        return pool[torch.randint(len(pool), (n,), generator=gen).numpy()]

    if strategy == "unsupervised":
        return draw(everyone, cfg.batch)
    if it < cfg.warmup * cfg.iters:
        return draw(labeled, cfg.batch)
    unlabeled = np.setdiff1d(everyone, labeled)
    return np.concatenate([draw(labeled, cfg.batch // 2), draw(unlabeled, cfg.batch - cfg.batch // 2)])


class TrainedSSN(NamedTuple):
    """What ``train_strategy`` gives back."""

    backbone: Backbone
    ssn: SSN
    losses: list[float]  # the loss of every iteration
    curve: list[list[float]]  # [[iteration, measure], ...]
    facing: FacingHead | None = None  # with the ``facing`` option (semi only)


def _build(
    cfg: PedestrianStudyConfig, strategy: str
) -> tuple[Backbone, SSN, FacingHead | None, torch.optim.Optimizer]:
    """The backbone, SSN, the facing head (option, semi only) and the optimizer of what trains, all in
    training mode; a semi SSN carries the position prior when the config asks for one (``_count_prior``)."""
    dev = cfg.device
    backbone = Backbone(name=cfg.backbone, stages=cfg.stages, weights=cfg.weights).to(dev)
    ssn = SSN(
        in_channels=backbone.out_channels,
        num_parts=NUM_PARTS,
        window=cfg.window,
        hidden=cfg.hidden,
        position_prior=cfg.position_prior if strategy == "semi" else 0.0,
    ).to(dev)
    # the video model's head (through the network's next stage), NOT in the paper
    head = facing_head_for(backbone, cfg.weights).to(dev) if cfg.facing > 0 and strategy == "semi" else None
    params = list(ssn.parameters()) + (list(backbone.parameters()) if cfg.train_backbone else [])
    params += list(head.parameters()) if head is not None else []
    opt = adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    backbone.train(cfg.train_backbone)
    ssn.train()
    return backbone, ssn, head, opt


@torch.no_grad()
def _count_prior(
    cfg: PedestrianStudyConfig,
    backbone: Backbone,
    ssn: SSN,
    images: torch.Tensor,
    anchors: np.ndarray,
    labeled: np.ndarray,
    canonical: bool = False,
) -> None:
    """The part-position prior of the labeled crops (NOT in the paper; ``ssn3d.models.position_prior``),
    on the feature map of this backbone, by the cell rule of the anchors (``keypoints_to_cells``)."""
    was_training = backbone.training
    fh, fw = features(backbone.eval(), normalize(images[:1].to(cfg.device)), cfg.context_pad).shape[-2:]
    backbone.train(was_training)
    h, w = images.shape[-2:]
    kps = canonical_labels(anchors[labeled]) if canonical else anchors[labeled]  # the maps' order
    ssn.prior.set_prior(counted_log_prior(kps, geometry_for((w, h), (fw, fh)), (fw, fh)))


@torch.no_grad()
def _cached_features(
    cfg: PedestrianStudyConfig, backbone: Backbone, images: torch.Tensor
) -> list[torch.Tensor]:
    """Fixed-backbone features of every crop, of its mirror image too when augmenting: [(P, C, h, w), ...]."""
    views = [images, images.flip(-1)] if cfg.augment else [images]
    dev = cfg.device
    return [torch.cat([backbone(v[i : i + 32].to(dev)) for i in range(0, len(v), 32)]) for v in views]


def _batch(
    cfg: PedestrianStudyConfig,
    backbone: Backbone,
    images: torch.Tensor,
    k: torch.Tensor,
    idx: np.ndarray,
    cached: list[torch.Tensor] | None,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (B, C, h, w) of the crops ``idx`` and their keypoints (B, 9, 3), augmented alike."""
    dev = cfg.device
    if cached is None:
        x = images[idx].to(dev)
        if cfg.augment:
            x, k = augment(x, k.to(dev), gen)
            x = color_jitter(x, cfg.color_jitter, gen)
        return features(backbone, normalize(x), cfg.context_pad), k
    w = images.shape[-1]
    flip = (
        (torch.rand(len(idx), generator=gen) < 0.5)
        if cfg.augment
        else torch.zeros(len(idx), dtype=torch.bool)
    )
    feats = torch.where(flip.to(dev)[:, None, None, None], cached[-1][idx], cached[0][idx])
    kf = k.clone()
    kf[..., 0] = torch.where(k[..., 2] > 0, w - k[..., 0], 0.0)
    return feats, torch.where(flip[:, None, None], kf[:, list(FLIP_PERMUTATION)], k)


def _attention_ce(attention: torch.Tensor, cells: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """NOT in the paper: mean -log attention (B, N, h, w) of each anchored part at its keypoint's cell."""
    fw = attention.shape[-1]
    flat = (cells[..., 1] * fw + cells[..., 0]).unsqueeze(-1)  # (B, N, 1) index of the keypoint's cell
    p = attention.flatten(2).gather(-1, flat).squeeze(-1)  # (B, N)
    return -(p[mask].clamp_min(1e-8).log()).mean()


def _step(
    cfg: PedestrianStudyConfig,
    strategy: str,
    ssn: SSN,
    head: FacingHead | None,
    opt: torch.optim.Optimizer,
    feats: torch.Tensor,
    k: torch.Tensor,
    image_size: tuple[int, int],
) -> float:
    """One optimisation step on a batch of features (B, C, h, w) and keypoints (B, 9, 3); the loss."""
    h, w = image_size
    cells = mask = None
    facing = None
    if head is not None:  # labels into canonical order; unlabeled crops (no visible pair) stay unknown
        target = facing_targets(k.to(cfg.device))  # (B,)
        k = canonical_keypoints(k.to(cfg.device), target)
        facing = FacingBCE(weight=cfg.facing)(head(feats), target)
    if strategy == "semi":
        cells, mask = keypoints_to_cells(k.to(cfg.device), (w, h), (feats.shape[-1], feats.shape[-2]))
    out = ssn(feats, cells, mask)
    loss = ssn_loss(out.logits)
    if cfg.attention_loss and mask is not None and bool(mask.any()):
        loss = loss + cfg.attention_loss * _attention_ce(out.attention, cells, mask)
    if facing is not None:
        loss = loss + facing
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def train_strategy(
    cfg: PedestrianStudyConfig,
    strategy: str,
    images: torch.Tensor,
    anchors: np.ndarray,
    labeled_idx: np.ndarray,
    progress: bool = True,
    callback: Callable[[str, int, float], None] | None = None,
    evaluate: Callable[[Backbone, SSN, FacingHead | None], float] | None = None,
) -> TrainedSSN:
    """Train SSN (and the backbone when ``cfg.train_backbone``) with one strategy.

    Args:
        images: (P, 3, H, W) crops in [0, 1].
        anchors: (P, 9, 3) keypoints of the labeled crops (zeros elsewhere), output pixels.
        labeled_idx: indices of the labeled crops.
        callback: ``callback(strategy, iteration, loss)`` after every step.
        evaluate: a measure of the models, taken every ``cfg.eval_every`` iterations.

    Returns:
        ``TrainedSSN``.
    """
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    backbone, ssn, head, opt = _build(cfg, strategy)
    if ssn.prior is not None:
        _count_prior(cfg, backbone, ssn, images, anchors, labeled_idx, canonical=head is not None)
    kps_all = torch.from_numpy(anchors)
    # fixed features: computed once
    cached = None if cfg.train_backbone else _cached_features(cfg, backbone, images)
    everyone = np.arange(len(images))
    losses: list[float] = []
    curve: list[list[float]] = []
    bar = tqdm(range(cfg.iters), desc=f"SSN {strategy}", disable=not progress, leave=False)
    for it in bar:
        idx = _batch_indices(it, cfg, labeled_idx, everyone, strategy, gen)
        feats, k = _batch(cfg, backbone, images, kps_all[idx], idx, cached, gen)
        losses.append(_step(cfg, strategy, ssn, head, opt, feats, k, tuple(images.shape[-2:])))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if callback:
            callback(strategy, it, losses[-1])
        if evaluate and cfg.eval_every and (it + 1) % cfg.eval_every == 0 and it + 1 < cfg.iters:
            curve.append([it + 1, evaluate(backbone, ssn, head)])
            backbone.train(cfg.train_backbone)
            ssn.train()
            if head is not None:
                head.train()
    return TrainedSSN(backbone, ssn, losses, curve, head)


@torch.no_grad()
def attention_of(
    backbone: Backbone,
    ssn: SSN,
    images: torch.Tensor,
    device: str,
    pad: int,
    facing: FacingHead | None = None,
) -> torch.Tensor:
    """(P, 3, H, W) crops in [0, 1] -> (P, N, h, w) attention maps (no anchors), on the CPU; with a
    facing head the canonical maps are named person-side, each crop by its own answer."""
    backbone.eval()
    ssn.eval()
    if facing is not None:
        facing.eval()
    out = []
    for i in range(0, len(images), 32):
        feats = features(backbone, normalize(images[i : i + 32].to(device)), pad)  # (P', C, h, w)
        maps = ssn.attention(feats)  # (P', N, h, w)
        if facing is not None:  # each crop a clip of one frame
            maps = person_sides(maps[:, None], facing(feats)[:, None])[:, 0]
        out.append(maps.cpu())
    return torch.cat(out)
