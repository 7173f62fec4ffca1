"""The nine body parts SSN anchors on, and the geometry that moves keypoints with the images.

Paper, "Implementation Details / Supervised Labels": the parts are head, body, crotch, left and
right elbows, knees and feet. Their order here is the part index ``i`` of eq. (3)-(4): part ``i``
of the semi-supervised strategy is anchored at keypoint ``i``.

A keypoint is ``(x, y, v)`` in the pixel coordinates of its frame (x to the right, y down, pixel
centres at ``+0.5``), with COCO's visibility flag ``v``: 0 not labeled, 1 labeled but not visible,
2 labeled and visible. Only ``v == 2`` anchors a part (see ``anchor_mask``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PARTS: tuple[str, ...] = (
    "head",
    "body",
    "crotch",
    "left_elbow",
    "right_elbow",
    "left_knee",
    "right_knee",
    "left_foot",
    "right_foot",
)
NUM_PARTS = len(PARTS)

# Fixed colours (RGB) so that a part looks the same on every page and in every figure.
PART_COLORS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),  # head: red
    (255, 225, 25),  # body: yellow
    (245, 130, 48),  # crotch: orange
    (60, 180, 75),  # left elbow: green
    (0, 130, 200),  # right elbow: blue
    (145, 30, 180),  # left knee: purple
    (70, 240, 240),  # right knee: cyan
    (240, 50, 230),  # left foot: magenta
    (128, 128, 0),  # right foot: olive
)

# The drawn skeleton: pairs of part indices.
SKELETON: tuple[tuple[int, int], ...] = ((0, 1), (1, 3), (1, 4), (1, 2), (2, 5), (2, 6), (5, 7), (6, 8))

# A horizontal flip turns the left elbow into a right elbow: index i goes to FLIP_PERMUTATION[i].
FLIP_PERMUTATION: tuple[int, ...] = (0, 1, 2, 4, 3, 6, 5, 8, 7)

NOT_LABELED, NOT_VISIBLE, VISIBLE = 0, 1, 2


def empty_keypoints(num_parts: int = NUM_PARTS) -> np.ndarray:
    """A (num_parts, 3) float array of unlabeled keypoints."""
    return np.zeros((num_parts, 3), dtype=np.float32)


def anchor_mask(kps: np.ndarray) -> np.ndarray:
    """Which parts anchor SSN: labeled and visible. kps: (..., N, 3) -> (..., N) bool."""
    return np.asarray(kps)[..., 2] >= VISIBLE


def resize_keypoints(kps: np.ndarray, src_size: Sequence[int], dst_size: Sequence[int]) -> np.ndarray:
    """Move keypoints from a (width, height) frame to a resized (width, height) frame.

    Labels of unlabeled parts (v == 0) stay at zero so they never look like a point at the origin.
    """
    out = np.array(kps, dtype=np.float32, copy=True)
    sx = dst_size[0] / float(src_size[0])
    sy = dst_size[1] / float(src_size[1])
    labeled = out[..., 2] > NOT_LABELED
    out[..., 0] = np.where(labeled, out[..., 0] * sx, 0.0)
    out[..., 1] = np.where(labeled, out[..., 1] * sy, 0.0)
    return out


def crop_keypoints(kps: np.ndarray, left: float, top: float, size: Sequence[int]) -> np.ndarray:
    """Keypoints after cropping the box (left, top, width, height=size). Points that leave the
    crop become NOT_VISIBLE (they are labeled, just not in the picture any more)."""
    out = np.array(kps, dtype=np.float32, copy=True)
    labeled = out[..., 2] > NOT_LABELED
    out[..., 0] = np.where(labeled, out[..., 0] - left, 0.0)
    out[..., 1] = np.where(labeled, out[..., 1] - top, 0.0)
    inside = (out[..., 0] >= 0) & (out[..., 0] < size[0]) & (out[..., 1] >= 0) & (out[..., 1] < size[1])
    out[..., 2] = np.where(labeled & ~inside, np.minimum(out[..., 2], NOT_VISIBLE), out[..., 2])
    return out


def flip_keypoints(kps: np.ndarray, width: int) -> np.ndarray:
    """Keypoints of the horizontally mirrored frame: x -> width - x, and left/right parts swap."""
    out = np.array(kps, dtype=np.float32, copy=True)
    labeled = out[..., 2] > NOT_LABELED
    out[..., 0] = np.where(labeled, width - out[..., 0], 0.0)
    if out.shape[-2] == NUM_PARTS:
        out = out[..., list(FLIP_PERMUTATION), :]
    return out


@dataclass(frozen=True)
class CellGeometry:
    """Where the receptive fields of a feature map's cells sit in the image.

    Cell (col, row) looks at an image region centred at ``offset + stride * (col, row)`` pixels
    (continuous coordinates: pixel i spans [i, i + 1)). For a ResNet stem the centre of a stride-s
    cell j sits near pixel s * j, not at s * j + s / 2, so the cell that "holds" a point is not
    floor(x / s): it is the cell whose centre is nearest. ``ssn3d.models.cells.measure_geometry``
    measures stride and offset from a backbone; ``uniform`` is a grid with nothing behind it.

    Attributes:
        stride: (sx, sy) pixels between neighbouring cell centres.
        offset: (ox, oy) the centre of cell (0, 0) in pixels.
    """

    stride: tuple[float, float]
    offset: tuple[float, float]

    @classmethod
    def uniform(cls, image_size: Sequence[int], feature_size: Sequence[int]) -> CellGeometry:
        """Cells tiling the (W, H) image evenly, each centred in its tile (a map with no network behind it)."""
        sx = image_size[0] / float(feature_size[0])
        sy = image_size[1] / float(feature_size[1])
        return cls((sx, sy), (sx / 2, sy / 2))

    def cell_of(self, xy: Any, feature_size: Sequence[int]) -> Any:
        """Points (..., 2) -> the (col, row) whose centre is nearest, clamped to the (w, h) map.

        Works on numpy arrays and torch tensors alike (only ``//``, ``/`` and ``.clip``), so the
        training anchors and the app's overlays share this one rule. Returns floats; cast to int.
        """
        col = ((xy[..., 0] - self.offset[0]) / self.stride[0] + 0.5) // 1
        row = ((xy[..., 1] - self.offset[1]) / self.stride[1] + 0.5) // 1
        return col.clip(0, feature_size[0] - 1), row.clip(0, feature_size[1] - 1)

    def centre_of(self, cells: np.ndarray) -> np.ndarray:
        """Cells (..., 2) (col, row) -> their receptive-field centres (..., 2) in image pixels."""
        cells = np.asarray(cells, dtype=np.float32)
        x = self.offset[0] + self.stride[0] * cells[..., 0]
        y = self.offset[1] + self.stride[1] * cells[..., 1]
        return np.stack([x, y], axis=-1).astype(np.float32)


# Geometries measured in this process for maps of a given (image size, feature size): what turns an
# attention peak back into pixels when the caller only holds the maps (the app's overlays). A model's
# extractor registers its backbone's geometry before it hands out maps.
_GEOMETRIES: dict[tuple[tuple[int, int], tuple[int, int]], CellGeometry] = {}


def register_geometry(image_size: Sequence[int], feature_size: Sequence[int], geometry: CellGeometry) -> None:
    """Remember ``geometry`` for maps of ``feature_size`` (w, h) over frames of ``image_size`` (W, H)."""
    key = ((int(image_size[0]), int(image_size[1])), (int(feature_size[0]), int(feature_size[1])))
    _GEOMETRIES[key] = geometry


def geometry_for(image_size: Sequence[int], feature_size: Sequence[int]) -> CellGeometry:
    """The geometry registered for these sizes, else ``CellGeometry.uniform``."""
    key = ((int(image_size[0]), int(image_size[1])), (int(feature_size[0]), int(feature_size[1])))
    return _GEOMETRIES.get(key) or CellGeometry.uniform(image_size, feature_size)


def image_to_feature_cell(
    xy: np.ndarray,
    image_size: Sequence[int],
    feature_size: Sequence[int],
    geometry: CellGeometry | None = None,
) -> np.ndarray:
    """The feature-map cell (col, row) whose receptive-field centre is nearest an image point.

    The model's anchors use the same rule (``ssn3d.models.ssn3d.keypoints_to_cells``), so the app's
    overlays and the training anchors agree. ``geometry`` defaults to ``geometry_for`` the sizes.
    """
    geometry = geometry or geometry_for(image_size, feature_size)
    col, row = geometry.cell_of(np.asarray(xy, dtype=np.float64), feature_size)
    return np.stack([col, row], axis=-1).astype(np.int64)


def feature_cell_to_image(
    cell: np.ndarray,
    image_size: Sequence[int],
    feature_size: Sequence[int],
    geometry: CellGeometry | None = None,
) -> np.ndarray:
    """The receptive-field centre of a feature-map cell (col, row) in image pixels (inverse of the rule above)."""
    return (geometry or geometry_for(image_size, feature_size)).centre_of(cell)
