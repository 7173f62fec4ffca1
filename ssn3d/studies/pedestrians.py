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
The PCK, its matching and its baselines are ``ssn3d.metrics``'s, the peaks ``ssn3d.attention``'s, the
same code that measures the video models.

Choices the paper leaves open: the backbone is trained with SSN when it has no ImageNet weights (a
random backbone is no feature extractor); phase 1 uses labeled crops only, phase 2 mixes labeled
and unlabeled crops half and half (anchors stay on, as in "Semi-supervised Training"); every crop is
flipped at random (keypoints flipped and left/right swapped with it) and shifted/scaled a little.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from ssn3d import attention
from ssn3d.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ssn3d.engine.optim import adam
from ssn3d.keypoints import FLIP_PERMUTATION, NUM_PARTS
from ssn3d.losses import ssn_loss
from ssn3d.metrics import mean_positions, pck_report, random_peak_pck
from ssn3d.models.backbone import Backbone, find_imagenet_file
from ssn3d.models.ssn import SSN
from ssn3d.models.ssn3d import keypoints_to_cells
from ssn3d.studies import recorded_path

_logger = logging.getLogger(__name__)

STRATEGIES = ("semi", "unsupervised")
PCK_ALPHA = 0.1  # issue: within 0.1 x crop height


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
    eval_every: int = 100  # iterations between PCK measurements during training (0: at the end only)
    strategies: tuple[str, ...] = STRATEGIES
    loss: dict[str, list[float]] = field(default_factory=dict)


def quick_config(**overrides: object) -> PedestrianStudyConfig:
    """CPU seconds for tests: a fixed random backbone, SSN trained on its cached features."""
    # a fixed random backbone localises only through its zero-padding border cue, so no context padding here
    base = dict(count=48, labeled=16, train_backbone=False, context_pad=0, hidden=64, iters=100, eval_every=0)
    base.update(overrides)
    return PedestrianStudyConfig(**base)


# ---------------------------------------------------------------------------- data


def load_crops(folder: Path, size: tuple[int, int]) -> tuple[list[str], torch.Tensor, np.ndarray, list[str]]:
    """Crops of a Pedestrian-128 folder, resized to (height, width).

    Returns:
        names, images (P, 3, H, W) in [0, 1], true keypoints (P, 9, 3) in output pixels, labeled names.
    """
    from ssn3d.labels.store import AnnotationStore

    meta_path = folder / "dataset.json"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{meta_path} is missing; make crops with `python -m ssn3d synth pedestrians {folder} --single`."
        )
    import json

    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict) or not {"images", "keypoints", "labels"} <= meta.keys():
        raise ValueError(
            f"{folder} holds no Pedestrian-128 crops (its dataset.json lists no images, keypoints and labels; "
            f"a walkers dataset?); make crops with `python -m ssn3d synth pedestrians OUT --single`."
        )
    names, h, w = list(meta["images"]), size[0], size[1]
    truth = AnnotationStore(folder / meta["keypoints"]).frames()
    labeled = sorted(AnnotationStore(folder / meta["labels"]).frames())
    imgs, kps = [], []
    for n in names:
        im = Image.open(folder / n).convert("RGB")
        k = truth[n].copy()
        k[:, 0] *= w / im.width
        k[:, 1] *= h / im.height
        imgs.append(np.asarray(im.resize((w, h), Image.BILINEAR)))
        kps.append(k)
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
    return names, x, np.stack(kps).astype(np.float32), labeled


def normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean.to(x.device)) / std.to(x.device)


def augment(
    x: torch.Tensor, kps: torch.Tensor, gen: torch.Generator, shift: float = 0.06, scale: float = 0.08
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flip, shift and scale of images (B, 3, H, W) and their keypoints (B, 9, 3), together."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=gen) < 0.5
    s = 1 + (torch.rand(b, generator=gen) * 2 - 1) * scale  # zoom factor
    tx, ty = ((torch.rand(b, generator=gen) * 2 - 1) * shift for _ in range(2))
    sign = torch.where(flip, -1.0, 1.0)
    # output pixel u (normalised to [-1, 1]) samples input sign * u / s + t
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = sign / s, 1 / s
    theta[:, 0, 2], theta[:, 1, 2] = tx, ty
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    flip, s, tx, ty, sign = (t.to(kps.device) for t in (flip, s, tx, ty, sign))  # drawn on the CPU generator
    k = kps.clone()
    u = (k[..., 0] / w * 2 - 1 - tx[:, None]) * s[:, None] * sign[:, None]
    v = (k[..., 1] / h * 2 - 1 - ty[:, None]) * s[:, None]
    k[..., 0], k[..., 1] = (u + 1) / 2 * w, (v + 1) / 2 * h
    k = torch.where(flip[:, None, None], k[:, list(FLIP_PERMUTATION)], k)  # the person's left is now right
    inside = (k[..., 0] >= 0) & (k[..., 0] < w) & (k[..., 1] >= 0) & (k[..., 1] < h)
    k[..., 2] = torch.where(inside, k[..., 2], torch.clamp(k[..., 2], max=1.0))
    return out, k


def features(backbone: Backbone, x: torch.Tensor, pad: int) -> torch.Tensor:
    """Backbone features of normalised crops (B, 3, H, W) -> (B, C, H / s, W / s).

    The crop is edge-padded by ``pad`` pixels first and the matching cells cut off afterwards: the
    ResNet's zero padding would otherwise make border and corner cells unlike any other, and SSN
    would "separate" the corners as parts (the reason ``ssn3d.models.ssn`` edge-pads its windows).
    """
    cells = pad // backbone.stride
    if cells == 0:
        return backbone(x)
    p = cells * backbone.stride
    f = backbone(F.pad(x, (p, p, p, p), mode="replicate"))
    return f[..., cells:-cells, cells:-cells]


def color_jitter(x: torch.Tensor, amount: float, gen: torch.Generator) -> torch.Tensor:
    """Random brightness, contrast and saturation per image, x (B, 3, H, W) in [0, 1]."""
    b = x.shape[0]

    def factor() -> torch.Tensor:
        return (1 + (torch.rand(b, generator=gen) * 2 - 1) * amount).view(b, 1, 1, 1).to(x.device)

    gray = x.mean(1, keepdim=True)
    x = gray + (x - gray) * factor()  # saturation
    mean = x.mean((1, 2, 3), keepdim=True)
    x = mean + (x - mean) * factor()  # contrast
    return (x * factor()).clamp(0, 1)  # brightness


# ---------------------------------------------------------------------------- training


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


def train_strategy(
    cfg: PedestrianStudyConfig,
    strategy: str,
    images: torch.Tensor,
    anchors: np.ndarray,
    labeled_idx: np.ndarray,
    progress: bool = True,
    callback: Callable[[str, int, float], None] | None = None,
    evaluate: Callable[[Backbone, SSN], float] | None = None,
) -> tuple[Backbone, SSN, list[float], list[list[float]]]:
    """Train SSN (and the backbone when ``cfg.train_backbone``) with one strategy.

    Args:
        images: (P, 3, H, W) crops in [0, 1].
        anchors: (P, 9, 3) keypoints of the labeled crops (zeros elsewhere), output pixels.
        labeled_idx: indices of the labeled crops.
        callback: ``callback(strategy, iteration, loss)`` after every step.
        evaluate: a measure of the models, taken every ``cfg.eval_every`` iterations.

    Returns:
        backbone, ssn, the loss of every iteration and [[iteration, measure], ...].
    """
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    dev = cfg.device
    backbone = Backbone(name=cfg.backbone, stages=cfg.stages, weights=cfg.weights).to(dev)
    ssn = SSN(
        in_channels=backbone.out_channels, num_parts=NUM_PARTS, window=cfg.window, hidden=cfg.hidden
    ).to(dev)
    params = list(ssn.parameters()) + (list(backbone.parameters()) if cfg.train_backbone else [])
    opt = adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    backbone.train(cfg.train_backbone)
    ssn.train()
    h, w = images.shape[-2:]
    kps_all = torch.from_numpy(anchors)
    cached = None
    if not cfg.train_backbone:  # fixed features: compute once, flipped too when augmenting
        with torch.no_grad():
            views = [images, images.flip(-1)] if cfg.augment else [images]
            cached = [
                torch.cat([backbone(v[i : i + 32].to(dev)) for i in range(0, len(v), 32)]) for v in views
            ]
    everyone = np.arange(len(images))
    losses: list[float] = []
    curve: list[list[float]] = []
    bar = tqdm(range(cfg.iters), desc=f"SSN {strategy}", disable=not progress, leave=False)
    for it in bar:
        idx = _batch_indices(it, cfg, labeled_idx, everyone, strategy, gen)
        k = kps_all[idx]
        if cached is not None:
            flip = (
                (torch.rand(len(idx), generator=gen) < 0.5)
                if cfg.augment
                else torch.zeros(len(idx), dtype=torch.bool)
            )
            feats = torch.where(flip.to(dev)[:, None, None, None], cached[-1][idx], cached[0][idx])
            kf = k.clone()
            kf[..., 0] = torch.where(k[..., 2] > 0, w - k[..., 0], 0.0)
            k = torch.where(flip[:, None, None], kf[:, list(FLIP_PERMUTATION)], k)
        else:
            x = images[idx].to(dev)
            if cfg.augment:
                x, k = augment(x, k.to(dev), gen)
                x = color_jitter(x, cfg.color_jitter, gen)
            feats = features(backbone, normalize(x), cfg.context_pad)
        cells = mask = None
        if strategy == "semi":
            cells, mask = keypoints_to_cells(k.to(dev), (w, h), (feats.shape[-1], feats.shape[-2]))
        out = ssn(feats, cells, mask)
        loss = ssn_loss(out.logits)
        if cfg.attention_loss and mask is not None and bool(mask.any()):
            fw = feats.shape[-1]
            flat = (cells[..., 1] * fw + cells[..., 0]).unsqueeze(
                -1
            )  # (B, N, 1) index of the keypoint's cell
            p = out.attention.flatten(2).gather(-1, flat).squeeze(-1)  # (B, N)
            loss = loss + cfg.attention_loss * -(p[mask].clamp_min(1e-8).log()).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if callback:
            callback(strategy, it, losses[-1])
        if evaluate and cfg.eval_every and (it + 1) % cfg.eval_every == 0 and it + 1 < cfg.iters:
            curve.append([it + 1, evaluate(backbone, ssn)])
            backbone.train(cfg.train_backbone)
            ssn.train()
    return backbone, ssn, losses, curve


@torch.no_grad()
def attention_of(backbone: Backbone, ssn: SSN, images: torch.Tensor, device: str, pad: int) -> torch.Tensor:
    """(P, 3, H, W) crops in [0, 1] -> (P, N, h, w) attention maps (no anchors), on the CPU."""
    backbone.eval()
    ssn.eval()
    chunks = (images[i : i + 32].to(device) for i in range(0, len(images), 32))
    return torch.cat([ssn.attention(features(backbone, normalize(x), pad)).cpu() for x in chunks])


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
    chance = random_peak_pck(kps, attention.cell_centres((fw, fh), (w, h)), tol)["overall"]
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
    from ssn3d.studies import figures

    bad = [s for s in cfg.strategies if s not in STRATEGIES]
    if bad or cfg.iters < 1 or cfg.batch < 2 or not 0 <= cfg.warmup <= 1:
        raise ValueError(
            f"strategies must be among {', '.join(STRATEGIES)}, iters >= 1, batch >= 2, 0 <= warmup <= 1."
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(cfg.data) if cfg.data else out / "crops"
    if not cfg.data:
        from ssn3d.data.synth.walkers import generate_pedestrian128

        generate_pedestrian128(folder, count=cfg.count, labeled=cfg.labeled, seed=cfg.seed, progress=progress)
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

        def measure(bb: Backbone, net: SSN, strategy: str = strategy) -> float:
            pts = attention.peak_points(
                attention_of(bb, net, raw[unl], cfg.device, cfg.context_pad).numpy(), (cfg.width, cfg.height)
            )
            return pck_report(pts, kps[unl], tol, match=strategy == "unsupervised")["overall"]

        backbone, ssn, losses, curve = train_strategy(
            cfg, strategy, raw, anchors, lab, progress, callback, measure
        )
        cfg.loss[strategy] = losses
        maps = attention_of(backbone, ssn, raw, cfg.device, cfg.context_pad)
        maps_of[strategy] = maps
        pts = attention.peak_points(maps[unl].numpy(), (cfg.width, cfg.height))
        rep = pck_report(pts, kps[unl], tol, match=strategy == "unsupervised")
        rep["pck_curve"] = [*curve, [cfg.iters, rep["overall"]]]
        tail = losses[-max(1, len(losses) // 10) :]
        rep.update(final_loss=sum(tail) / len(tail))
        record["results"][strategy] = rep
        _logger.info("%s: PCK %.3f", strategy, rep["overall"])
    feat = maps.shape[-2:]
    record["baselines"] = baselines(kps[unl], kps[lab], (cfg.height, cfg.width), tuple(feat), tol)
    record["feature_size"] = list(feat)
    record["loss"] = cfg.loss
    atomic_write_json(out / "pedestrians.json", record)
    figures.loss_curves(
        cfg.loss, math.log(NUM_PARTS), out / "pedestrians_loss.png", "SSN on Pedestrian-128-style crops"
    )
    figures.pedestrian_pck(record, out / "pedestrians_pck.png")
    show = np.concatenate([lab[:1], unl[:5]])
    for strategy, maps in maps_of.items():
        peaks = attention.peak_points(maps[show].numpy(), (cfg.width, cfg.height))
        assignment = record["results"][strategy]["assignment"]
        path = out / f"pedestrians_attention_{strategy}.png"
        figures.pedestrian_attention(raw[show], maps[show], peaks, kps[show], assignment, strategy, path)
    return record
