"""Click handling for labeling the anchor keypoints of semi-supervised SSN (pure, no UI).

Paper, section "Semi-supervised Training" and "Different Learning Strategy": a few frames per
tracklet (two in the paper) carry keypoints of the N = 9 parts; part ``i`` of eq. (3) is anchored at
keypoint ``i`` on those frames. This module holds everything the annotation page does with a click,
so that it can be tested without a browser:

* ``scale_click``: a click on the displayed image -> the frame's own pixel coordinates;
* ``handle_click``: place / move / delete a point, then select the next unlabeled part;
* ``UndoStack``: the last changes of one user, as plain JSON-able values;
* ``copy_previous``: start a frame from the nearest labeled frame before it;
* ``tracklet_progress`` / ``dataset_progress``: labeled frames (every part done) against the goal;
* ``next_unlabeled_frame`` / ``next_unlabeled_tracklet``: where the labeler goes next;
* ``draw_keypoints``: the points and the skeleton in the fixed part colours of ``ssn3d.keypoints``;
* ``accept_suggestions`` / ``draw_suggestions``: a pose detector's keypoints (``ssn3d.pose``) offered
  as suggestions, which become labels only when accepted.

A point outside the frame is refused with the rule the importers use
(``ssn3d.interchange.hide_outside_frame``): it could never anchor a part window there.

Keypoints are (N, 3) float arrays of (x, y, v) in frame pixels, v as in COCO (0 not labeled,
1 not visible, 2 visible). Every function returns a new array and never changes its input.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ssn3d.keypoints import (
    NOT_LABELED,
    NOT_VISIBLE,
    NUM_PARTS,
    PART_COLORS,
    SKELETON,
    VISIBLE,
    empty_keypoints,
)

_logger = logging.getLogger(__name__)

Mode = Literal["place", "move", "delete"]
GOAL_PER_TRACKLET = 2  # paper: "we select two images with high-quality labels from each video tracklet"


def scale_click(
    x: float, y: float, shown_size: Sequence[float], frame_size: Sequence[int]
) -> tuple[float, float]:
    """A click at display pixel (x, y) on an image shown at ``shown_size`` (width, height) -> frame pixels.

    The click lands on display pixel (x, y), whose centre is (x + 0.5, y + 0.5); that centre is
    scaled to the frame of ``frame_size`` (width, height) and clamped inside it, so a click on the
    last displayed pixel never leaves the frame.

    Raises:
        ValueError: when a size is not positive.
    """
    sw, sh = float(shown_size[0]), float(shown_size[1])
    fw, fh = float(frame_size[0]), float(frame_size[1])
    if min(sw, sh, fw, fh) <= 0:
        raise ValueError(f"image sizes must be positive, got shown {shown_size} and frame {frame_size}.")
    fx = (float(x) + 0.5) * fw / sw
    fy = (float(y) + 0.5) * fh / sh
    return float(np.clip(fx, 0.0, np.nextafter(fw, 0))), float(np.clip(fy, 0.0, np.nextafter(fh, 0)))


def next_unlabeled(kps: np.ndarray, after: int) -> int | None:
    """The first part after ``after`` (wrapping around) that is not labeled yet; None when all are."""
    n = len(kps)
    for step in range(1, n + 1):
        i = (after + step) % n
        if kps[i, 2] == NOT_LABELED:
            return i
    return None


def nearest_part(kps: np.ndarray, x: float, y: float, radius: float) -> int | None:
    """The visible labeled part whose point is closest to (x, y) and within ``radius`` pixels."""
    pts = np.asarray(kps, dtype=np.float64)
    visible = pts[:, 2] >= VISIBLE
    if not visible.any():
        return None
    d = np.hypot(pts[:, 0] - x, pts[:, 1] - y)
    d[~visible] = np.inf
    i = int(np.argmin(d))
    return i if d[i] <= radius else None


def set_point(kps: np.ndarray, part: int, x: float, y: float) -> np.ndarray:
    """Place ``part`` at (x, y), visible."""
    out = np.array(kps, dtype=np.float32, copy=True)
    out[part] = (x, y, VISIBLE)
    return out


def mark_not_visible(kps: np.ndarray, part: int) -> np.ndarray:
    """Label ``part`` as present but hidden (v = 1): it will not anchor SSN (``anchor_mask``)."""
    out = np.array(kps, dtype=np.float32, copy=True)
    out[part] = (0.0, 0.0, NOT_VISIBLE)
    return out


def clear_point(kps: np.ndarray, part: int) -> np.ndarray:
    """Remove the label of ``part`` (v = 0)."""
    out = np.array(kps, dtype=np.float32, copy=True)
    out[part] = (0.0, 0.0, NOT_LABELED)
    return out


@dataclass(frozen=True)
class ClickResult:
    """What a click did.

    Attributes:
        keypoints: the frame's keypoints after the click, (N, 3).
        part: the part selected for the next click.
        grabbed: in move mode, the part picked up by this click and waiting for its new place.
        changed: whether ``keypoints`` differ from before (and must be saved).
        message: one short sentence for the user.
    """

    keypoints: np.ndarray
    part: int
    grabbed: int | None
    changed: bool
    message: str


def handle_click(
    kps: np.ndarray,
    part: int,
    x: float,
    y: float,
    *,
    mode: Mode = "place",
    grabbed: int | None = None,
    radius: float = 6.0,
    part_names: Sequence[str] | None = None,
    frame_size: Sequence[float] | None = None,
) -> ClickResult:
    """Apply one click at frame pixel (x, y).

    * place: put the selected ``part`` there, then select the next unlabeled part (or keep it
      when every part is labeled);
    * move: the first click picks up the nearest point within ``radius``; the next click puts it
      down at the clicked place;
    * delete: remove the nearest point within ``radius``.

    Args:
        kps: the frame's keypoints, (N, 3).
        part: the selected part index.
        x: the click in frame pixels (see ``scale_click``).
        y: the click in frame pixels.
        mode: place | move | delete.
        grabbed: the part picked up by an earlier move click, or None.
        radius: how far (frame pixels) a click may land from a point to pick it.
        part_names: names for the message (default: part numbers).
        frame_size: the frame's (width, height); a place or a move outside it (beyond the importers'
            small tolerance) is refused with a message, one within the tolerance lands on the border.

    Returns:
        A ``ClickResult``.
    """
    kps = np.asarray(kps, dtype=np.float32)
    if not 0 <= part < len(kps):
        raise ValueError(f"part {part} does not exist; choose 0..{len(kps) - 1}.")
    name = (lambda i: part_names[i]) if part_names is not None else (lambda i: f"part {i}")
    putting = mode == "place" or (mode == "move" and grabbed is not None)
    if putting and frame_size is not None:
        w, h = float(frame_size[0]), float(frame_size[1])
        if is_outside_frame(x, y, w, h):
            return ClickResult(
                kps,
                part,
                grabbed,
                False,
                f"({x:g}, {y:g}) lies outside the {w:g} x {h:g} frame; place the point inside it",
            )
        # onto the border, a hundredth inside: float32 storage would round nextafter(w) up to w itself
        x, y = float(np.clip(x, 0.0, w - 0.01)), float(np.clip(y, 0.0, h - 0.01))
    if mode == "place":
        out = set_point(kps, part, x, y)
        nxt = next_unlabeled(out, part)
        return ClickResult(out, part if nxt is None else nxt, None, True, f"placed {name(part)}")
    if mode == "move":
        if grabbed is None:
            hit = nearest_part(kps, x, y, radius)
            if hit is None:
                return ClickResult(
                    kps, part, None, False, "no point near the click; click on a point to move it"
                )
            return ClickResult(kps, hit, hit, False, f"picked up {name(hit)}; click where it belongs")
        out = set_point(kps, grabbed, x, y)
        return ClickResult(out, grabbed, None, True, f"moved {name(grabbed)}")
    if mode == "delete":
        hit = nearest_part(kps, x, y, radius)
        if hit is None:
            return ClickResult(
                kps, part, None, False, "no point near the click; click on a point to delete it"
            )
        out = clear_point(kps, hit)
        return ClickResult(out, hit, None, True, f"deleted {name(hit)}")
    raise ValueError(f"click mode {mode!r} is unknown; choose place, move or delete.")


def is_outside_frame(x: float, y: float, width: float, height: float) -> bool:
    """Whether frame pixel (x, y) lies outside a ``width`` x ``height`` frame by the importers' rule."""
    from ssn3d.interchange import hide_outside_frame

    probe = np.array([[x, y, VISIBLE]], dtype=np.float64)  # (1, 3): one visible point
    return hide_outside_frame(probe, width, height) > 0


def part_state(kps: np.ndarray, part: int) -> str:
    """How ``part`` stands on a frame, in words: "placed", "hidden" (labeled not visible) or "" (to do)."""
    v = int(np.asarray(kps)[part, 2])
    return "placed" if v == VISIBLE else "hidden" if v == NOT_VISIBLE else ""


def changed_part(before: np.ndarray | None, after: np.ndarray | None) -> int | None:
    """The first part whose label differs between two versions of a frame (None = no label); None if none."""
    a = new_keypoints() if before is None else np.asarray(before)
    b = new_keypoints() if after is None else np.asarray(after)
    diff = np.flatnonzero((a != b).any(axis=1))
    return int(diff[0]) if diff.size else None


def is_new_click(value: Mapping[str, Any] | None, last_time: float | None) -> bool:
    """Whether an image-coordinates widget value is a fresh click (the widget repeats its last one)."""
    if not value or "x" not in value or "y" not in value:
        return False
    return last_time is None or value.get("unix_time") != last_time


@dataclass
class UndoStack:
    """The last ``limit`` changes of one user: (frame, keypoints before the change or None).

    Held in the app's per-user session state; entries are plain lists so the stack stays JSON-able.
    """

    limit: int = 50
    entries: list[tuple[str, list[list[float]] | None]] = field(default_factory=list)

    def push(self, frame: str, before: np.ndarray | None) -> None:
        self.entries.append((frame, None if before is None else np.asarray(before, dtype=float).tolist()))
        del self.entries[: max(0, len(self.entries) - self.limit)]

    def pop(self) -> tuple[str, np.ndarray | None] | None:
        """The last change to revert: (frame, the keypoints to restore, None = no label), or None."""
        if not self.entries:
            return None
        frame, before = self.entries.pop()
        return frame, None if before is None else np.asarray(before, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.entries)


def copy_previous(frames: Sequence[str], index: int, labels: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The keypoints of the nearest labeled frame before ``frames[index]`` (or after, when none is before).

    Args:
        frames: the tracklet's frame keys in order.
        index: the current frame.
        labels: {frame key: (N, 3) keypoints} of the labeled frames.
    """
    order = list(range(index - 1, -1, -1)) + list(range(index + 1, len(frames)))
    for j in order:
        kps = labels.get(frames[j])
        if kps is not None and (np.asarray(kps)[:, 2] > NOT_LABELED).any():
            return np.array(kps, dtype=np.float32, copy=True)
    return None


def is_started(kps: np.ndarray | None) -> bool:
    """At least one part of the frame is labeled (visible or not)."""
    return kps is not None and bool((np.asarray(kps)[:, 2] > NOT_LABELED).any())


def is_labeled(kps: np.ndarray | None) -> bool:
    """A frame counts as labeled when its parts are done: every part placed or marked not visible.

    A frame with a few points is only started: counting it would call a tracklet done ("7/2 labeled")
    while its anchors are missing most parts.
    """
    return kps is not None and bool((np.asarray(kps)[:, 2] > NOT_LABELED).all())


@dataclass(frozen=True)
class Progress:
    """Labeled frames against the goal.

    Attributes:
        labeled: frames whose parts are done (``is_labeled``).
        started: frames with some parts labeled, not all.
        goal: frames wanted (per tracklet: ``GOAL_PER_TRACKLET``; over a dataset: the sum).
        tracklets_done: tracklets that reached their goal (1 or 0 for one tracklet).
        tracklets: how many tracklets were counted.
    """

    labeled: int
    started: int
    goal: int
    tracklets_done: int
    tracklets: int

    @property
    def fraction(self) -> float:
        return 1.0 if self.goal == 0 else min(1.0, self.labeled / self.goal)


def tracklet_progress(
    frames: Iterable[str], labels: Mapping[str, np.ndarray], goal: int = GOAL_PER_TRACKLET
) -> Progress:
    """Labeled frames of one tracklet (frame keys) against ``goal`` (capped at the tracklet's length)."""
    keys = list(frames)
    labeled = sum(is_labeled(labels.get(k)) for k in keys)
    started = sum(is_started(labels.get(k)) for k in keys) - labeled
    g = min(goal, len(keys))
    return Progress(labeled, started, g, int(labeled >= g), 1)


def dataset_progress(
    tracklets: Iterable[Iterable[str]], labels: Mapping[str, np.ndarray], goal: int = GOAL_PER_TRACKLET
) -> Progress:
    """``tracklet_progress`` summed over tracklets; ``labeled`` counts at most ``goal`` per tracklet."""
    labeled = started = want = done = count = 0
    for frames in tracklets:
        p = tracklet_progress(frames, labels, goal)
        labeled += min(p.labeled, p.goal)
        started += p.started
        want += p.goal
        done += p.tracklets_done
        count += 1
    return Progress(labeled, started, want, done, count)


def next_unlabeled_frame(frames: Sequence[str], index: int, labels: Mapping[str, np.ndarray]) -> int | None:
    """The next frame after ``index`` (wrapping around) that is not labeled yet; None when all are.

    A started frame comes first, so a frame left half done is finished before a new one is begun.
    """
    order = [(index + step) % len(frames) for step in range(1, len(frames) + 1)]
    for wanted in (is_started, lambda kps: True):
        for j in order:
            kps = labels.get(frames[j])
            if not is_labeled(kps) and wanted(kps):
                return j
    return None


def next_unlabeled_tracklet(
    tracklets: Sequence[Sequence[str]],
    index: int,
    labels: Mapping[str, np.ndarray],
    goal: int = GOAL_PER_TRACKLET,
) -> int | None:
    """The next tracklet after ``index`` (wrapping around) short of its goal; None when every one is done."""
    n = len(tracklets)
    for step in range(1, n + 1):
        j = (index + step) % n
        if not tracklet_progress(tracklets[j], labels, goal).tracklets_done:
            return j
    return None


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


def accept_suggestions(
    kps: np.ndarray | None, suggested: np.ndarray, parts: Iterable[int] | None = None
) -> np.ndarray:
    """A frame's keypoints with the confident suggestions accepted as labels.

    Only parts the user has not labeled yet are filled, so a correction made before accepting stays;
    only confident suggestions (v = 2, see ``ssn3d.pose.landmarks_to_parts``) are taken: an unsure one
    is left for the user to place or mark hidden, rather than stored as a guess.

    Args:
        kps: the frame's saved keypoints (N, 3), or None for an unlabeled frame.
        suggested: the detector's keypoints (N, 3).
        parts: accept only these parts (default: every part).

    Returns:
        New (N, 3) keypoints.
    """
    out = new_keypoints() if kps is None else np.array(kps, dtype=np.float32, copy=True)
    sug = np.asarray(suggested, dtype=np.float32)
    take = (out[:, 2] == NOT_LABELED) & (sug[:, 2] >= VISIBLE)
    if parts is not None:
        chosen = np.zeros(len(out), dtype=bool)
        chosen[list(parts)] = True
        take &= chosen
    out[take] = sug[take]
    return out


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


def new_keypoints() -> np.ndarray:
    """An unlabeled frame, (N, 3)."""
    return empty_keypoints(NUM_PARTS)


def display_scale(frame_size: Sequence[int], target_height: int = 512, max_scale: float = 8.0) -> float:
    """An integer-friendly scale that shows a frame about ``target_height`` pixels tall (never smaller)."""
    h = max(1, int(frame_size[1]))
    return float(max(1.0, min(max_scale, math.floor(target_height / h * 2) / 2)))
