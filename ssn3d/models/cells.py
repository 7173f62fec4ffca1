"""Measuring where a backbone's feature cells look in the image (the geometry of keypoint -> cell).

Paper, "Semi-supervised Training": Y^i is replaced by the window "at (h_i, w_i)", the cell of the
labeled key point. Which cell that is depends on the backbone: a ResNet cell j of stride s is
centred near pixel s * j (its stem pads every strided conv symmetrically), half a cell left of the
s * j + s / 2 that ``floor(x / s)`` assumes. Instead of deriving offsets layer by layer for every
backbone (a MobileNet differs from a ResNet), ``measure_geometry`` asks the network: the input
gradient of one output cell, on a deterministic init, is a blob around that cell's receptive field;
its centroid is the cell's centre. Cells near the middle of a square probe image are measured (the
border's zero padding pulls the centroid of border cells inwards); their mean offset from
stride * j is the geometry's offset. The result is cached per backbone kind in this process.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from ssn3d.keypoints import CellGeometry

_logger = logging.getLogger(__name__)

_CACHE: dict[tuple, CellGeometry] = {}
_PROBE_CELLS = (
    8  # the probe image is 2 * _PROBE_CELLS cells wide and high; cells around the middle are measured
)
_PROBE_IMAGES = 4  # random images whose |gradient| is summed: random weights make one image's blob ragged


def geometry_key(backbone: nn.Module) -> tuple:
    """What the geometry of ``backbone`` depends on: its kind, architecture name, depth and input channels."""
    return (
        type(backbone).__name__,
        getattr(backbone, "name", None),
        getattr(backbone, "stages", None),
        _in_channels(backbone),
    )


def _in_channels(backbone: nn.Module) -> int:
    first = next((m for m in backbone.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else int(getattr(backbone, "out_channels", 3))


def _centroid(weight: torch.Tensor) -> tuple[float, float]:
    """Centroid (x, y) in pixel coordinates (pixel i spans [i, i + 1)) of a non-negative (H, W) map."""
    h, w = weight.shape
    total = weight.sum().clamp_min(1e-30)
    xs = torch.arange(w, dtype=torch.float64) + 0.5
    ys = torch.arange(h, dtype=torch.float64) + 0.5
    return float((weight.sum(0) * xs).sum() / total), float((weight.sum(1) * ys).sum() / total)


def measure_geometry(backbone: nn.Module) -> CellGeometry:
    """Stride and receptive-field offset of ``backbone``'s cells, measured once per ``geometry_key``.

    A copy of the backbone is re-initialised from seed 0 (the geometry is the architecture's, not the
    weights'), put in eval mode on the CPU in float32, and fed four seeded random images of
    2 * 8 * stride pixels square. For the cells (j, j) with j in 6..10, the centroid of
    |d sum_c out[c, j, j] / d image| is the centre; the stride is the backbone's (its ``stride``, or
    the ratio of input to output size), and the offset is the mean of centre - stride * j.
    """
    key = geometry_key(backbone)
    if key in _CACHE:
        return _CACHE[key]
    stride = int(getattr(backbone, "stride", 0) or 0)
    if stride <= 1 and not any(isinstance(m, nn.Conv2d) for m in backbone.modules()):
        geometry = CellGeometry((1.0, 1.0), (0.5, 0.5))  # the identity: cell j is pixel j
        _CACHE[key] = geometry
        return geometry
    # the measurement needs autograd even when called under inference_mode (a fresh evaluation process)
    with torch.inference_mode(False), torch.enable_grad():
        probe = copy.deepcopy(backbone).to("cpu", torch.float32).eval()
        channels = _in_channels(backbone)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            for m in probe.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
                if hasattr(m, "reset_running_stats"):
                    m.reset_running_stats()
            if stride <= 0:  # no stride attribute: read it off a forward pass
                with torch.no_grad():
                    stride = max(1, round(64 / probe(torch.zeros(1, channels, 64, 64)).shape[-1]))
            size = 2 * _PROBE_CELLS * stride
            image = torch.randn(_PROBE_IMAGES, channels, size, size).requires_grad_(True)
        out = probe(image)  # (P, C, h, w); eval mode, so each image's gradient is its own
        cells = range(_PROBE_CELLS - 2, _PROBE_CELLS + 3)
        offsets = []
        for i, j in enumerate(cells):
            (grad,) = torch.autograd.grad(out[:, :, j, j].sum(), image, retain_graph=i < len(cells) - 1)
            cx, cy = _centroid(grad.abs().sum((0, 1)).double())
            offsets.append((cx - stride * j, cy - stride * j))
    ox = sum(o[0] for o in offsets) / len(offsets)
    oy = sum(o[1] for o in offsets) / len(offsets)
    geometry = CellGeometry((float(stride), float(stride)), (ox, oy))
    _logger.info(
        "Feature cells of %s: stride %.2f x %.2f px, cell (0, 0) centred at (%.2f, %.2f) px.",
        key[1] or key[0],
        *geometry.stride,
        *geometry.offset,
    )
    _CACHE[key] = geometry
    return geometry
