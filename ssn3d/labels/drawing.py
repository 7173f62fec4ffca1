"""Drawing labels and suggestions on a frame for the annotation page (pure, no UI).

Points and the skeleton are drawn in the fixed part colours of ``ssn3d.keypoints``; a pose
detector's suggestions (``ssn3d.labels.pose``) are hollow rings, so a suggestion never looks like
a label until it is accepted (``ssn3d.labels.editing.accept_suggestions``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ssn3d.keypoints import NOT_LABELED, PART_COLORS, SKELETON, VISIBLE


def draw_keypoints(
    image: Image.Image | np.ndarray,
    kps: np.ndarray | None,
    *,
    scale: float = 1.0,
    radius: float = 4.0,
    selected: int | None = None,
    colors: Sequence[tuple[int, int, int]] = PART_COLORS,
    skeleton: Sequence[tuple[int, int]] = SKELETON,
) -> Image.Image:
    """The frame resized by ``scale`` with the skeleton and the visible points drawn over it.

    Args:
        image: the frame (PIL image or (H, W, 3) uint8 array).
        kps: (N, 3) keypoints in the frame's pixels, or None.
        scale: display scale (nearest-neighbour resize, so pixels stay sharp for precise clicks).
        radius: point radius in display pixels.
        selected: a part to ring in white (the part the next click places).
        colors: RGB per part.
        skeleton: pairs of part indices to join.

    Returns:
        A new RGB image of size round(scale * (W, H)).
    """
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    img = img.convert("RGB")
    if scale != 1.0:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.NEAREST)
    else:
        img = img.copy()
    if kps is None:
        return img
    pts = np.asarray(kps, dtype=np.float64)
    draw = ImageDraw.Draw(img)
    visible = pts[:, 2] >= VISIBLE
    width = max(1, round(radius / 2))
    for a, b in skeleton:
        if a < len(pts) and b < len(pts) and visible[a] and visible[b]:
            draw.line(
                [tuple(pts[a, :2] * scale), tuple(pts[b, :2] * scale)], fill=(255, 255, 255), width=width
            )
    for i in np.flatnonzero(visible):
        cx, cy = pts[i, :2] * scale
        color = tuple(colors[i % len(colors)])
        r = radius
        if i == selected:
            draw.ellipse([cx - r - 2, cy - r - 2, cx + r + 2, cy + r + 2], outline=(255, 255, 255), width=2)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color, outline=(0, 0, 0))
    return img


def draw_tag(image: Image.Image, lines: Sequence[str], color: tuple[int, int, int]) -> Image.Image:
    """``image`` with ``lines`` of text on a box of ``color`` in its top-left corner (drawn in place).

    The page names the part the next click places this way, on the image where the eyes are, in
    the part's own colour; a second line lists the parts marked hidden, which have no point to draw.
    """
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(10, image.height // 40))
    text = "\n".join(lines)
    left, top, right, bottom = draw.multiline_textbbox((3, 2), text, font=font)
    draw.rectangle([0, 0, right + 3, bottom + 3], fill=color)
    ink = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)  # dark text on light parts, light on dark
    draw.multiline_text((3, 2), text, fill=ink, font=font)
    return image


def draw_suggestions(
    image: Image.Image,
    kps: np.ndarray | None,
    suggested: np.ndarray,
    confidence: np.ndarray,
    *,
    scale: float = 1.0,
    radius: float = 4.0,
    colors: Sequence[tuple[int, int, int]] = PART_COLORS,
) -> Image.Image:
    """Draw a detector's suggestions on ``image`` (already at display ``scale``) in place.

    A suggestion is a hollow ring in its part's colour (a label is a filled dot), with its confidence
    beside it; an unsure one (v = 1) has a thin ring. Parts the user already labeled are not drawn.

    Args:
        image: the displayed frame (from ``draw_keypoints``).
        kps: the frame's saved keypoints (N, 3), or None.
        suggested: the detector's keypoints (N, 3) in frame pixels.
        confidence: (N,) in [0, 1].
        scale: display pixels per frame pixel.
        radius: ring radius in display pixels.
        colors: RGB per part.
    """
    labeled = np.zeros(len(suggested), dtype=bool) if kps is None else np.asarray(kps)[:, 2] > NOT_LABELED
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(9, round(radius * 2.2)))
    r = radius + 1
    for i, (x, y, v) in enumerate(np.asarray(suggested, dtype=np.float64)):
        if labeled[i] or v == NOT_LABELED:
            continue
        cx, cy = x * scale, y * scale
        color = tuple(colors[i % len(colors)])
        thick = max(2, round(radius / 2)) if v >= VISIBLE else 1
        draw.ellipse([cx - r - 1, cy - r - 1, cx + r + 1, cy + r + 1], outline=(0, 0, 0), width=1)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=color, width=thick)
        draw.text(
            (cx + r + 2, cy - r),
            f"{float(confidence[i]):.2f}",
            fill=color,
            font=font,
            stroke_width=1,
            stroke_fill=(0, 0, 0),
        )
    return image


def display_scale(frame_size: Sequence[int], target_height: int = 512, max_scale: float = 8.0) -> float:
    """An integer-friendly scale that shows a frame about ``target_height`` pixels tall (never smaller)."""
    h = max(1, int(frame_size[1]))
    return float(max(1.0, min(max_scale, math.floor(target_height / h * 2) / 2)))
