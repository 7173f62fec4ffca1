"""Click handling and saved edits for labeling the anchor keypoints of semi-supervised SSN (pure, no UI).

Paper, section "Semi-supervised Training" and "Different Learning Strategy": a few frames per
tracklet (two in the paper) carry keypoints of the N = 9 parts; part ``i`` of eq. (3) is anchored at
keypoint ``i`` on those frames. This module holds everything the annotation page does with a click,
so that it can be tested without a browser:

* ``handle_click``: place or delete a point, then select the next unlabeled part;
* ``move_point``: a point dragged to another place;
* ``apply_edit``: every change of a frame, saved at once with its undo entry; ``undo_last`` reverts one;
* ``UndoStack``: the last changes of one user, as plain JSON-able values;
* ``copy_previous``: start a frame from the nearest labeled frame before it;
* ``accept_suggestions``: a pose detector's keypoints (``ssn3d.labels.pose``), offered as
  suggestions, become labels only when accepted.

What counts as labeled and where to go next is ``ssn3d.labels.progress``; the page draws the
points itself, in the browser. A point outside the frame is refused with the rule the importers use
(``ssn3d.labels.importing.hide_outside_frame``): it could never anchor a part window there.

Keypoints are (N, 3) float arrays of (x, y, v) in frame pixels, v as in COCO (0 not labeled,
1 not visible, 2 visible). Every function returns a new array and never changes its input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ssn3d.keypoints import NOT_LABELED, NOT_VISIBLE, NUM_PARTS, VISIBLE, empty_keypoints
from ssn3d.labels.importing import hide_outside_frame
from ssn3d.labels.progress import is_labeled, is_started
from ssn3d.labels.store import AnnotationStore

_logger = logging.getLogger(__name__)

Mode = Literal["place", "delete"]


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
    """What a click (or a drag) did.

    Attributes:
        keypoints: the frame's keypoints after the click, (N, 3).
        part: the part selected for the next click.
        changed: whether ``keypoints`` differ from before (and must be saved).
        message: one short sentence for the user.
    """

    keypoints: np.ndarray
    part: int
    changed: bool
    message: str


def _names(part_names: Sequence[str] | None) -> Callable[[int], str]:
    return (lambda i: part_names[i]) if part_names is not None else (lambda i: f"part {i}")


def _put_down(x: float, y: float, frame_size: Sequence[float] | None) -> tuple[float, float] | str:
    """(x, y) moved onto the frame when it lies within the importers' tolerance; a sentence when outside."""
    if frame_size is None:
        return x, y
    w, h = float(frame_size[0]), float(frame_size[1])
    if is_outside_frame(x, y, w, h):
        return f"({x:g}, {y:g}) lies outside the {w:g} x {h:g} frame; place the point inside it"
    # onto the border, a hundredth inside: float32 storage would round nextafter(w) up to w itself
    return float(np.clip(x, 0.0, w - 0.01)), float(np.clip(y, 0.0, h - 0.01))


def handle_click(
    kps: np.ndarray,
    part: int,
    x: float,
    y: float,
    *,
    mode: Mode = "place",
    radius: float = 6.0,
    part_names: Sequence[str] | None = None,
    frame_size: Sequence[float] | None = None,
) -> ClickResult:
    """Apply one click at frame pixel (x, y).

    * place: put the selected ``part`` there, also on top of another point, then select the next
      unlabeled part (or keep it when every part is labeled);
    * delete: remove the nearest point within ``radius``.

    Moving a point is a drag, not a click: ``move_point``.

    Args:
        kps: the frame's keypoints, (N, 3).
        part: the selected part index.
        x: the click in frame pixels.
        y: the click in frame pixels.
        mode: place | delete.
        radius: how far (frame pixels) a click may land from a point to pick it.
        part_names: names for the message (default: part numbers).
        frame_size: the frame's (width, height); a place outside it (beyond the importers' small
            tolerance) is refused with a message, one within the tolerance lands on the border.

    Returns:
        A ``ClickResult``.
    """
    kps = np.asarray(kps, dtype=np.float32)
    if not 0 <= part < len(kps):
        raise ValueError(f"part {part} does not exist; choose 0..{len(kps) - 1}.")
    name = _names(part_names)
    if mode == "place":
        where = _put_down(x, y, frame_size)
        if isinstance(where, str):
            return ClickResult(kps, part, False, where)
        out = set_point(kps, part, *where)
        nxt = next_unlabeled(out, part)
        return ClickResult(out, part if nxt is None else nxt, True, f"placed {name(part)}")
    if mode == "delete":
        hit = nearest_part(kps, x, y, radius)
        if hit is None:
            return ClickResult(kps, part, False, "no point near the click; click on a point to delete it")
        out = clear_point(kps, hit)
        return ClickResult(out, hit, True, f"deleted {name(hit)}")
    raise ValueError(f"click mode {mode!r} is unknown; choose place or delete.")


def move_point(
    kps: np.ndarray,
    part: int,
    x: float,
    y: float,
    frame_size: Sequence[float] | None = None,
    *,
    selected: int | None = None,
    part_names: Sequence[str] | None = None,
) -> ClickResult:
    """Move the placed point of ``part`` to frame pixel (x, y): a point dragged and dropped.

    Only a visible point can be moved: a part that is hidden or not placed has nothing to drag (the
    labeler saw a point that another session or an undo has removed since), and the drop is refused.
    A drop outside the frame is refused, one within the importers' tolerance lands on the border, as
    for a click.

    Args:
        kps: the frame's keypoints, (N, 3).
        part: the part whose point moves.
        x: the drop in frame pixels.
        y: the drop in frame pixels.
        frame_size: the frame's (width, height), or None to take (x, y) as they are.
        selected: the part selected for the next click, kept as it is: a correction on the way does not
            change which part the labeler places next (default: the moved part).
        part_names: names for the message (default: part numbers).

    Returns:
        A ``ClickResult`` whose ``part`` is ``selected``.
    """
    kps = np.asarray(kps, dtype=np.float32)
    if not 0 <= part < len(kps):
        raise ValueError(f"part {part} does not exist; choose 0..{len(kps) - 1}.")
    name, keep = _names(part_names), part if selected is None else selected
    if kps[part, 2] != VISIBLE:
        return ClickResult(kps, keep, False, f"{name(part)} has no point on this frame to move")
    where = _put_down(x, y, frame_size)
    if isinstance(where, str):
        return ClickResult(kps, keep, False, where)
    return ClickResult(set_point(kps, part, *where), keep, True, f"moved {name(part)}")


def is_outside_frame(x: float, y: float, width: float, height: float) -> bool:
    """Whether frame pixel (x, y) lies outside a ``width`` x ``height`` frame by the importers' rule."""
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


def accept_suggestions(
    kps: np.ndarray | None, suggested: np.ndarray, parts: Iterable[int] | None = None
) -> np.ndarray:
    """A frame's keypoints with the confident suggestions accepted as labels.

    Only parts the user has not labeled yet are filled, so a correction made before accepting stays;
    only confident suggestions (v = 2, see ``ssn3d.labels.pose.landmarks_to_parts``) are taken: an unsure one
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


def new_keypoints() -> np.ndarray:
    """An unlabeled frame, (N, 3)."""
    return empty_keypoints(NUM_PARTS)


@dataclass(frozen=True)
class Edit:
    """One saved change of a frame.

    Attributes:
        frame: the frame's label-store key.
        before: its keypoints before the change (None: it had no label).
        after: its keypoints after the change (None: the label was removed).
        repair: a sentence when this save first cut a torn journal tail (say it once), else None.
    """

    frame: str
    before: np.ndarray | None
    after: np.ndarray | None
    repair: str | None = None

    @property
    def done_changed(self) -> bool:
        """Whether the frame moved between to do, started and labeled (progress counts change)."""
        a, b = self.before, self.after
        return (is_labeled(a), is_started(a)) != (is_labeled(b), is_started(b))


def apply_edit(
    store: AnnotationStore,
    frame: str,
    change: Callable[[np.ndarray], np.ndarray | None],
    undo: UndoStack | None,
    *,
    current: Mapping[str, np.ndarray] | None = None,
    source: str = "manual",
) -> Edit:
    """Change one frame's label and save it at once: the one path every edit of the page takes.

    Args:
        store: the dataset's label store.
        frame: the frame's label-store key.
        change: the frame's keypoints (a fresh unlabeled frame when it has none) -> its new keypoints,
            or None to remove its label.
        undo: where the previous keypoints are pushed first; None for a change that is itself an undo.
        current: the store's {frame: keypoints} as the caller holds it (saves a read of the store).
        source: the label's source in the store ("manual", "pose-accepted", ...).

    Returns:
        The saved ``Edit``.

    Raises:
        AnnotationError: the store cannot be read or written; nothing was saved.
    """
    before = current.get(frame) if current is not None else store.get(frame)
    after = change(new_keypoints() if before is None else np.array(before, dtype=np.float32, copy=True))
    if undo is not None:
        undo.push(frame, before)
    cut = store.repaired_bytes
    store.update({frame: after}, source=source)
    repair = store.last_repair if store.repaired_bytes > cut else None
    return Edit(frame, before, after, repair)


def undo_last(
    store: AnnotationStore, undo: UndoStack, *, current: Mapping[str, np.ndarray] | None = None
) -> Edit | None:
    """Revert the last change on ``undo`` in the store; None when there is nothing to undo."""
    entry = undo.pop()
    if entry is None:
        return None
    frame, before = entry
    return apply_edit(store, frame, lambda _: before, None, current=current)
