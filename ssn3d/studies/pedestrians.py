"""The paper's Pedestrian 128 study (section "Study on SSN / Pedestrian 128", Figure 4).

SSN on 128 pedestrian crops of 60 x 120, "3 blocks of ResNet34" giving 128 x 8 x 15 features,
3 x 3 windows; 16 crops carry keypoint labels. Semi-supervised: labeled crops anchor part i at
keypoint i (eq. 3 with Y^i = X at the keypoint), "During training, we use the labeled images to
guide SSN training. After that, we continue training SSN with unlabeled data"; unsupervised: the
same SSN with no anchors. The paper shows attention maps; our crops (``ssn3d.data.synth.walkers``,
``generate_pedestrian128``) have true keypoints, so the study measures PCK on the unlabeled crops:
part i is correct on a crop when its attention peak (the centre of the arg-max cell) lies within
0.1 x crop height of the visible keypoint i. Unsupervised parts have no names, so each is matched
to one keypoint by the assignment that maximises the total PCK (Hungarian, on all unlabeled crops).
The PCK, its matching and its baselines are ``ssn3d.part_pck``'s, the peaks ``ssn3d.attention``'s, the
same code that measures the video models.

The study is three rooms: the crops and their augmentation (``ssn3d.studies.pedestrian_crops``),
training one strategy (``ssn3d.studies.pedestrian_training``, with the choices the paper leaves
open), and this module: the config, the PCK record and its figures.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssn3d import attention
from ssn3d.keypoints import NUM_PARTS
from ssn3d.models.backbone import Backbone, find_imagenet_file
from ssn3d.models.facing import FacingHead
from ssn3d.models.ssn import SSN
from ssn3d.part_pck import best_side_report, cell_centres, mean_positions, pck_report, random_peak_pck
from ssn3d.studies import recorded_path
from ssn3d.studies.pedestrian_crops import load_crops
from ssn3d.studies.pedestrian_training import attention_of, train_strategy

_logger = logging.getLogger(__name__)

STRATEGIES = ("semi", "unsupervised")
PCK_ALPHA = 0.1  # a part is correct within 0.1 x crop height of its keypoint


@dataclass
class PedestrianStudyConfig:
    data: str = ""  # a Pedestrian-128 folder (synth pedestrians --single); "" = generate into <out>/crops
    count: int = 128  # paper: 128 crops
    labeled: int = 16  # paper: 16 labeled by hand
    seed: int = 0
    height: int = 120  # paper: 60 x 120 crops
    width: int = 60
    backbone: str = "resnet34"  # paper: 3 blocks of ResNet34 -> 128 x 8 x 15
    stages: int = 2
    weights: str = "imagenet"  # local torch cache only; random init when absent
    train_backbone: bool = True  # needed with random init; False trains SSN on fixed features (fast)
    window: int = 3  # paper: 3 x 3
    hidden: int = 512  # K, paper: 512
    iters: int = 300  # per strategy; about 12 min each on a loaded 2-core CPU (benchmarks/RESULTS-studies.md)
    warmup: float = 0.3  # share of iterations on labeled crops only (paper: labeled first, then unlabeled)
    batch: int = 16
    lr: float = 1e-3  # paper silent; Adam's default
    weight_decay: float = 5e-4  # paper: 5e-4
    augment: bool = True  # random flip, shift/scale and colour jitter
    color_jitter: float = (
        0.25  # brightness/contrast/saturation range: 16 labeled people must not be learned by colour
    )
    context_pad: int = 16  # replicated border (pixels) around a crop before the backbone, cropped off after
    device: str = "cpu"
    attention_loss: float = (
        0.0  # NOT in the paper: weight of CE pulling part i's attention peak to keypoint i
    )
    position_prior: float = (
        0.0  # NOT in the paper: weight of the labeled crops' part-position prior on the semi maps
    )
    facing: float = 0.0  # NOT in the paper: canonical left/right parts + a facing head, its CE weight (semi)
    eval_every: int = 100  # iterations between PCK measurements during training (0: at the end only)
    strategies: tuple[str, ...] = STRATEGIES
    loss: dict[str, list[float]] = field(default_factory=dict)


def quick_config(**overrides: object) -> PedestrianStudyConfig:
    """CPU seconds for tests: a fixed random backbone, SSN trained on its cached features."""
    # a fixed random backbone localises only through its zero-padding border cue, so no context padding here
    base = dict(count=48, labeled=16, train_backbone=False, context_pad=0, hidden=64, iters=100, eval_every=0)
    base.update(overrides)
    return PedestrianStudyConfig(**base)


# ---------------------------------------------------------------------------- PCK


def baselines(
    kps: np.ndarray,
    labeled_kps: np.ndarray,
    image_size: tuple[int, int],
    feature_size: tuple[int, int],
    tol: float,
) -> dict:
    """Reference PCKs: a peak in a uniformly random cell, and every part at its mean labeled position.

    Args:
        kps: (P, 9, 3) true keypoints of the measured crops.
        labeled_kps: (L, 9, 3) the labeled crops' keypoints (their mean is the position baseline).
        image_size: (height, width) of a crop.
        feature_size: (h, w) of its feature map.
        tol: pixels.
    """
    (h, w), (fh, fw) = image_size, feature_size
    chance = random_peak_pck(kps, cell_centres((fw, fh), (w, h)), tol)["overall"]
    mean = mean_positions(labeled_kps)  # (9, 2)
    prior = pck_report(np.broadcast_to(mean, (len(kps), *mean.shape)), kps, tol)
    return {"chance": chance, "mean_position": prior}


# ---------------------------------------------------------------------------- the study


def run_pedestrian_study(
    cfg: PedestrianStudyConfig,
    out_dir: str | Path,
    progress: bool = True,
    callback: Callable[[str, int, float], None] | None = None,
) -> dict:
    """Make (or read) the crops, train each strategy, measure PCK, write JSON and figures.

    Writes ``pedestrians.json``, ``pedestrians_loss.png``, ``pedestrians_pck.png`` and
    ``pedestrians_attention_<strategy>.png`` into ``out_dir``.

    Returns:
        The JSON record.
    """
    from ssn3d.io import atomic_write_json

    _check(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folder = _crop_folder(cfg, out, progress)
    names, raw, kps, labeled_names = load_crops(folder, (cfg.height, cfg.width))
    lab = np.array([names.index(n) for n in labeled_names])
    unl = np.setdiff1d(np.arange(len(names)), lab)
    anchors = np.zeros_like(kps)
    anchors[lab] = kps[lab]
    tol = PCK_ALPHA * cfg.height
    pretrained = cfg.weights not in ("none", "") and (
        cfg.weights != "imagenet" or find_imagenet_file(cfg.backbone)
    )
    record = asdict(cfg)
    record.update(
        folder=recorded_path(folder, out),
        labeled_names=labeled_names,
        tolerance_px=tol,
        pretrained=bool(pretrained),
        unlabeled=len(unl),
        results={},
    )
    maps_of = {}
    for strategy in cfg.strategies:
        rep, maps_of[strategy] = _run_strategy(cfg, strategy, raw, kps, anchors, lab, unl, progress, callback)
        record["results"][strategy] = rep
        _logger.info("%s: PCK %.3f", strategy, rep["overall"])
    feat = maps_of[cfg.strategies[-1]].shape[-2:]
    record["baselines"] = baselines(kps[unl], kps[lab], (cfg.height, cfg.width), tuple(feat), tol)
    record["feature_size"] = list(feat)
    record["loss"] = cfg.loss
    atomic_write_json(out / "pedestrians.json", record)
    _write_figures(cfg, record, out, raw, kps, maps_of, np.concatenate([lab[:1], unl[:5]]))
    return record


def _check(cfg: PedestrianStudyConfig) -> None:
    bad = [s for s in cfg.strategies if s not in STRATEGIES]
    if bad or not cfg.strategies or cfg.iters < 1 or cfg.batch < 2 or not 0 <= cfg.warmup <= 1:
        raise ValueError(
            f"strategies must be among {', '.join(STRATEGIES)}, iters >= 1, batch >= 2, 0 <= warmup <= 1."
        )
    if cfg.facing < 0 or cfg.position_prior < 0 or cfg.attention_loss < 0:
        raise ValueError("facing, position_prior and attention_loss are weights: 0 (off) or more.")


def _crop_folder(cfg: PedestrianStudyConfig, out: Path, progress: bool) -> Path:
    """``cfg.data``, or crops generated into ``out/crops`` when it is empty."""
    if cfg.data:
        return Path(cfg.data)
    from ssn3d.data.synth.walkers import generate_pedestrian128

    folder = out / "crops"
    generate_pedestrian128(folder, count=cfg.count, labeled=cfg.labeled, seed=cfg.seed, progress=progress)
    return folder


def _run_strategy(
    cfg: PedestrianStudyConfig,
    strategy: str,
    raw: torch.Tensor,
    kps: np.ndarray,
    anchors: np.ndarray,
    lab: np.ndarray,
    unl: np.ndarray,
    progress: bool,
    callback: Callable[[str, int, float], None] | None,
) -> tuple[dict[str, Any], torch.Tensor]:
    """Train one strategy and measure it on the unlabeled crops: (its PCK report, all attention maps).

    The loss of every iteration goes into ``cfg.loss[strategy]``. Unsupervised parts have no names,
    so their PCK matches parts to keypoints.
    """
    tol, size, match = PCK_ALPHA * cfg.height, (cfg.width, cfg.height), strategy == "unsupervised"

    def measure(bb: Backbone, net: SSN, head: FacingHead | None) -> float:
        pts = attention.peak_points(
            attention_of(bb, net, raw[unl], cfg.device, cfg.context_pad, head).numpy(), size
        )
        return pck_report(pts, kps[unl], tol, match=match)["overall"]

    backbone, ssn, losses, curve, head = train_strategy(
        cfg, strategy, raw, anchors, lab, progress, callback, measure
    )
    cfg.loss[strategy] = losses
    maps = attention_of(backbone, ssn, raw, cfg.device, cfg.context_pad, head)
    peaks = attention.peak_points(maps[unl].numpy(), size)
    rep = pck_report(peaks, kps[unl], tol, match=match)
    if not match:  # named parts: how much of the miss is left and right read the wrong way round
        rep["best_side"] = best_side_report(peaks, kps[unl], tol)
    rep["pck_curve"] = [*curve, [cfg.iters, rep["overall"]]]
    tail = losses[-max(1, len(losses) // 10) :]
    rep.update(final_loss=sum(tail) / len(tail))
    return rep, maps


def _write_figures(
    cfg: PedestrianStudyConfig,
    record: dict[str, Any],
    out: Path,
    raw: torch.Tensor,
    kps: np.ndarray,
    maps_of: dict[str, torch.Tensor],
    show: np.ndarray,
) -> None:
    """The loss curves, the PCK bars and each strategy's attention on the crops ``show``."""
    from ssn3d.studies import figures

    figures.loss_curves(
        cfg.loss, math.log(NUM_PARTS), out / "pedestrians_loss.png", "SSN on Pedestrian-128-style crops"
    )
    figures.pedestrian_pck(record, out / "pedestrians_pck.png")
    for strategy, maps in maps_of.items():
        peaks = attention.peak_points(maps[show].numpy(), (cfg.width, cfg.height))
        assignment = record["results"][strategy]["assignment"]
        path = out / f"pedestrians_attention_{strategy}.png"
        figures.pedestrian_attention(raw[show], maps[show], peaks, kps[show], assignment, strategy, path)
