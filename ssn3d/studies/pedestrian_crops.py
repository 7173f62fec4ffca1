"""Pedestrian-128 crops for the SSN study: reading a crop folder, augmentation and backbone features.

The paper's crops are 60 x 120 people (section "Study on SSN / Pedestrian 128"); ours come from
``ssn3d.data.synth.walkers.generate_pedestrian128`` with their true keypoints. The augmentation the
paper leaves open is ours: every crop flipped at random (keypoints flipped and left/right swapped
with it), shifted and scaled a little, and colour-jittered so that 16 labeled people are not
learned by their colours.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ssn3d.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ssn3d.keypoints import FLIP_PERMUTATION
from ssn3d.models.backbone import Backbone


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
