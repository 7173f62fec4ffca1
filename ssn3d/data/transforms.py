"""Clip transforms: one set of random decisions for all frames of a clip; keypoints move with the pixels.

Paper, "Implementation Details": inputs are resized to 256 x 128. The paper names no augmentation;
we use the field's usual horizontal flip (p = 0.5) and offer two more, off by default: a random
translation (zero-pad by ``pad`` pixels in normalized space, i.e. the ImageNet mean colour, then
crop back) and random erasing (one box, filled with the mean colour). Every random decision is drawn
once per clip, so the T frames stay aligned for the 3D convolution. Labeled keypoints follow the
resize, crop and flip (a flip swaps left and right parts; ``ssn3d.keypoints.flip_keypoints``);
a keypoint that leaves the picture or falls inside the erased box becomes "labeled, not visible".
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from ssn3d.keypoints import NOT_VISIBLE, NUM_PARTS, crop_keypoints, flip_keypoints, resize_keypoints

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_MEAN255 = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0
_STD255 = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0
_INV_STD255 = 1.0 / _STD255  # normalized = pixel * _INV_STD255 + _SHIFT
_SHIFT = -_MEAN255 / _STD255


class Uint8Clip(NamedTuple):
    """One training clip as a worker would send it (a quarter of the bytes of a float32 clip)."""

    clip: torch.Tensor  # (T, 3, H, W) uint8, resized, not mirrored
    keypoints: np.ndarray  # (T, 9, 3) float32 in output pixels, already mirrored when ``flip``
    flip: bool  # mirror the pixels on the device (``normalize_and_flip``)


class ClipTransform:
    """Resize, augment and normalize a clip of PIL images, moving its keypoints along.

    Args:
        height: output height H (paper: 256).
        width: output width W (paper: 128).
        train: draw random augmentations (False: resize and normalize only).
        flip_prob: probability of a horizontal flip of the whole clip.
        pad: random translation of up to ``pad`` pixels (0: off).
        erase_prob: probability of erasing one random box in every frame (0: off).
    """

    def __init__(
        self,
        height: int,
        width: int,
        *,
        train: bool,
        flip_prob: float = 0.5,
        pad: int = 0,
        erase_prob: float = 0.0,
    ) -> None:
        if height <= 0 or width <= 0:
            raise ValueError(f"ClipTransform needs a positive size, got {height} x {width}.")
        if not 0.0 <= flip_prob <= 1.0 or not 0.0 <= erase_prob <= 1.0 or pad < 0:
            raise ValueError("flip_prob and erase_prob must lie in [0, 1] and pad must be >= 0.")
        self.height, self.width, self.train = height, width, train
        self.flip_prob, self.pad, self.erase_prob = flip_prob, pad, erase_prob

    def __repr__(self) -> str:
        return (
            f"ClipTransform({self.height}, {self.width}, train={self.train}, flip_prob={self.flip_prob}, "
            f"pad={self.pad}, erase_prob={self.erase_prob})"
        )

    def _pixels(self, images: list[Image.Image], flip: bool) -> torch.Tensor:
        """Resize and optionally mirror: list of T images -> (T, 3, H, W) uint8, a view of (T, H, W, 3)."""
        size = (self.width, self.height)
        arrays = []
        for img in images:
            if img.mode != "RGB":
                img = img.convert("RGB")
            if img.size != size:
                img = img.resize(size, Image.BILINEAR)
            if flip:  # on uint8 pixels: a quarter of the bytes of flipping the float tensor
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            arrays.append(np.asarray(img))
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # (T, 3, H, W) uint8 view

    def to_tensor(self, images: list[Image.Image], flip: bool = False) -> torch.Tensor:
        """Resize, optionally mirror, and normalize: list of T images -> (T, 3, H, W) float."""
        x = self._pixels(images, flip)
        # one contiguous uint8 -> float copy, then in-place scale and shift (fastest measured order)
        return x.to(torch.float32, memory_format=torch.contiguous_format).mul_(_INV_STD255).add_(_SHIFT)

    def to_uint8(
        self,
        images: list[Image.Image],
        keypoints: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
    ) -> Uint8Clip:
        """What a worker sends for the device to normalize: resized uint8 frames and the flip decision.

        The same random decision as ``__call__`` with the same ``rng`` (the flip is its first draw), and
        the same keypoints (already mirrored when ``flip``); the pixels are mirrored by
        ``normalize_and_flip`` on the device. Translation and erasing work in normalized space, so this
        path takes transforms without them.

        Args:
            images: T frames (any sizes and modes).
            keypoints: (T, 9, 3) in each frame's own pixels, or None.
            rng: the clip's random decisions (train mode; a fresh one if None).

        Returns:
            Uint8Clip(clip (T, 3, H, W) uint8 contiguous and not mirrored, keypoints (T, 9, 3), flip).
        """
        if self.pad > 0 or self.erase_prob > 0:
            raise ValueError(
                "uint8 clips are resized and flipped only; pad and erase_prob need the float path (to_tensor)."
            )
        kps = self._resized_keypoints(images, keypoints)
        flip = False
        if self.train:
            rng = rng if rng is not None else np.random.default_rng()
            flip = bool(rng.random() < self.flip_prob)  # the draw ``__call__`` makes
            if flip:
                kps = flip_keypoints(kps, self.width)
        clip = self._pixels(images, False).contiguous()  # (T, 3, H, W) uint8
        return Uint8Clip(clip, kps.astype(np.float32), flip)

    def _resized_keypoints(self, images: list[Image.Image], keypoints: np.ndarray | None) -> np.ndarray:
        """A clip's keypoints (T, 9, 3) moved from each frame's own pixels to the output size (zeros if None)."""
        if not images:
            raise ValueError("a clip needs at least one frame.")
        t = len(images)
        kps = (
            np.zeros((t, NUM_PARTS, 3), np.float32)
            if keypoints is None
            else np.asarray(keypoints, np.float32)
        )
        if kps.shape[0] != t:
            raise ValueError(f"keypoints cover {kps.shape[0]} frames but the clip has {t}.")
        out_size = (self.width, self.height)
        return np.stack([resize_keypoints(k, img.size, out_size) for k, img in zip(kps, images)])

    def __call__(
        self,
        images: list[Image.Image],
        keypoints: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Transform one clip.

        Args:
            images: T frames (any sizes and modes).
            keypoints: (T, 9, 3) in each frame's own pixels, or None (no labels).
            rng: the source of the clip's random decisions (train mode; a fresh one if None).

        Returns:
            clip (T, 3, H, W) ImageNet-normalized, and keypoints (T, 9, 3) float32 in output pixels.
        """
        kps = self._resized_keypoints(images, keypoints)
        if not self.train:
            return self.to_tensor(images), kps
        rng = rng if rng is not None else np.random.default_rng()
        flip = bool(rng.random() < self.flip_prob)  # drawn once: every frame of the clip is mirrored, or none
        clip = self.to_tensor(images, flip)
        if flip:
            kps = flip_keypoints(kps, self.width)
        if self.pad > 0:
            dx, dy = (int(v) for v in rng.integers(0, 2 * self.pad + 1, size=2))
            padded = torch.nn.functional.pad(clip, (self.pad, self.pad, self.pad, self.pad))
            clip = padded[..., dy : dy + self.height, dx : dx + self.width].contiguous()
            kps = crop_keypoints(kps, dx - self.pad, dy - self.pad, (self.width, self.height))
        if self.erase_prob > 0 and rng.random() < self.erase_prob:
            box = random_erase_box(rng, self.height, self.width)
            if box is not None:
                x0, y0, w, h = box
                clip[..., y0 : y0 + h, x0 : x0 + w] = 0.0  # the mean colour after normalization
                inside = (
                    (kps[..., 0] >= x0)
                    & (kps[..., 0] < x0 + w)
                    & (kps[..., 1] >= y0)
                    & (kps[..., 1] < y0 + h)
                )
                kps[..., 2] = np.where(
                    inside & (kps[..., 2] > 0), np.minimum(kps[..., 2], NOT_VISIBLE), kps[..., 2]
                )
        return clip, kps.astype(np.float32)


def random_erase_box(
    rng: np.random.Generator, height: int, width: int, area=(0.02, 0.4), ratio=(0.3, 3.3)
) -> tuple[int, int, int, int] | None:
    """A random box (x, y, w, h) covering ``area`` of the image with aspect ``ratio`` (Zhong et al. 2020)."""
    for _ in range(10):
        target = rng.uniform(*area) * height * width
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        h, w = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < h < height and 0 < w < width:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    return None


def denormalize(tensor: torch.Tensor) -> np.ndarray:
    """Undo ImageNet normalization for display: (3, H, W) -> (H, W, 3) uint8, (T, 3, H, W) -> (T, H, W, 3)."""
    x = tensor.detach().float().cpu()
    single = x.dim() == 3
    if single:
        x = x[None]
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"denormalize expects (3, H, W) or (T, 3, H, W), got {tuple(tensor.shape)}.")
    x = (x * _STD255 + _MEAN255).clamp_(0, 255).round_().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return x[0] if single else x


def uint8_batches_on(setting: bool | None, device: torch.device) -> bool:
    """Whether training reads uint8 batches (``data.uint8_batches``; None: on CUDA only).

    On a CPU the normalisation moves from the workers into the training process, which measured
    slower there (benchmarks/RESULTS-training.md); on a GPU it is one elementwise pass.
    """
    return device.type == "cuda" if setting is None else bool(setting)


@functools.lru_cache(maxsize=8)
def _device_constants(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """1/(255 std) and -mean/std on ``device``, computed as the worker path's are; made once per device."""
    mean255 = torch.tensor(mean).view(1, 1, 3, 1, 1) * 255.0
    std255 = torch.tensor(std).view(1, 1, 3, 1, 1) * 255.0
    return (1.0 / std255).to(device), (-mean255 / std255).to(device)


def normalize_and_flip(
    batch: torch.Tensor,
    flips: torch.Tensor,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The device half of the uint8 path: mirror the flipped clips, then ImageNet-normalize.

    The same numbers as ``ClipTransform.__call__`` in a worker: the constants are computed as that
    path's are, and the scale and shift run in float32 in the same order, whatever ``dtype`` is asked
    for at the end. No host sync: the flips select on the device.

    Args:
        batch: (B, T, 3, H, W) uint8 clips (``Uint8Clip.clip`` stacked).
        flips: (B,) bool, True where a clip's pixels are to be mirrored.
        mean: per-channel mean in [0, 1].
        std: per-channel std in [0, 1].
        dtype: the output dtype (bfloat16 saves the autocast's cast of the first convolution).

    Returns:
        (B, T, 3, H, W) normalized clips of ``dtype``.
    """
    if batch.dim() != 5 or batch.shape[2] != 3 or batch.dtype != torch.uint8:
        raise ValueError(
            f"normalize_and_flip expects (B, T, 3, H, W) uint8 clips, got {tuple(batch.shape)} {batch.dtype}."
        )
    if flips.shape != batch.shape[:1]:
        raise ValueError(
            f"flips must hold one decision per clip, {batch.shape[0]}, not {tuple(flips.shape)}."
        )
    inv_std, shift = _device_constants(tuple(mean), tuple(std), batch.device)  # (1, 1, 3, 1, 1) each
    pixels = torch.where(flips.to(batch.device, torch.bool).view(-1, 1, 1, 1, 1), batch.flip(-1), batch)
    x = pixels.to(torch.float32).mul_(inv_std).add_(shift)  # (B, T, 3, H, W)
    return x if dtype == torch.float32 else x.to(dtype)
