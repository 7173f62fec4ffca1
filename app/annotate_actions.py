"""The Annotate page's actions: widget callbacks that turn a click or a button into one library call.

Every change of a frame goes through ``ssn3d.labels.editing.apply_edit`` (saved at once, with its
undo entry); this module only reads the widgets' values from the session, and writes back the
selected part, the message and whether the whole page must be redrawn. The per-user state lives in
``st.session_state`` (keys ``ann_*``), never in this module, since sessions share it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import streamlit as st

from app.common import labels_of, workspace
from app.frame_canvas import PICK_PX, take_events
from ssn3d.keypoints import PARTS
from ssn3d.labels import editing, progress, suggestions
from ssn3d.labels.store import AnnotationStore

S = st.session_state
NAMES = [p.replace("_", " ") for p in PARTS]


def ctx() -> dict:
    """The place the page last drew: frame, its size and scale, its tracklet and split (``ann_ctx``)."""
    return S.get("ann_ctx", {})


def _store() -> AnnotationStore:
    return AnnotationStore(Path(S["ann_store"]))


def _current(frame: str) -> np.ndarray | None:
    """The frame's saved keypoints, from the store's cached index (re-read whenever the file changed)."""
    return labels_of(_store()).get(frame)


def _saved(edit: editing.Edit) -> None:
    """Ask for a whole-page rerun when the edit changed a frame's done state or cut a torn save."""
    if edit.repair is not None:  # this save cut a torn tail first: say it once
        S["ann_repair"], S["ann_rerun_app"] = edit.repair, True
    if edit.done_changed:
        S["ann_rerun_app"] = True


def _edit(
    frame: str, change: Callable[[np.ndarray], np.ndarray | None], source: str = "manual"
) -> editing.Edit:
    store = _store()
    edit = editing.apply_edit(store, frame, change, S["ann_undo"], current=labels_of(store), source=source)
    _saved(edit)
    return edit


def _act(fn: Callable[[], None]) -> None:
    """Run an action on the current frame; a store error becomes the page's message, not a traceback."""
    try:
        fn()
    except (ValueError, OSError) as e:
        S["ann_msg"] = f"error: {e}"


def apply_point(x: float, y: float) -> None:
    """A click (or a typed point) at frame pixel (x, y) on the current frame."""
    c = ctx()
    before = _current(c["frame"])
    res = editing.handle_click(
        editing.new_keypoints() if before is None else before,
        S["ann_part"],
        x,
        y,
        mode=S["ann_mode"] or "place",
        radius=PICK_PX / c["scale"],
        part_names=NAMES,
        frame_size=c["size"],  # a typed point outside the frame is refused, as imports hide one
    )
    if res.changed:
        _edit(c["frame"], lambda _: res.keypoints)
    S["ann_part"], S["ann_msg"] = res.part, res.message


def move_point(part: int, x: float, y: float) -> None:
    """A point of the current frame dragged to frame pixel (x, y); the selected part stays selected."""
    c = ctx()
    before = _current(c["frame"])
    res = editing.move_point(
        editing.new_keypoints() if before is None else before,
        part,
        x,
        y,
        c["size"],
        selected=S["ann_part"],
        part_names=NAMES,
    )
    if res.changed:
        _edit(c["frame"], lambda _: res.keypoints)
    S["ann_part"], S["ann_msg"] = res.part, res.message


def canvas_events(value: object) -> None:
    """The frame canvas's events not handled yet (``take_events``), each once and in order.

    One made on another frame than the page shows now is dropped: the labeler has moved on since.
    """
    events, S["ann_canvas_ack"] = take_events(value, S.get("ann_canvas_ack"), len(NAMES))
    for ev in events:
        if ev["frame"] != ctx().get("frame"):
            continue
        if ev["kind"] == "move":
            _act(lambda ev=ev: move_point(ev["part"], ev["x"], ev["y"]))
        else:
            _act(lambda ev=ev: apply_point(ev["x"], ev["y"]))


def on_canvas() -> None:
    canvas_events((S.get("ann_canvas") or {}).get("event"))


def on_typed_point() -> None:
    _act(lambda: apply_point(float(S["ann_x"]), float(S["ann_y"])))


def not_visible() -> None:
    part = S["ann_part"]

    def run() -> None:
        edit = _edit(ctx()["frame"], lambda k: editing.mark_not_visible(k, part))
        nxt = editing.next_unlabeled(edit.after, part)
        S["ann_part"] = part if nxt is None else nxt
        S["ann_msg"] = f"marked {NAMES[part]} not visible"

    _act(run)


def clear_part() -> None:
    part = S["ann_part"]
    _act(lambda: _edit(ctx()["frame"], lambda k: editing.clear_point(k, part)))
    S["ann_msg"] = f"cleared {NAMES[part]}"


def clear_frame() -> None:
    def run() -> None:
        frame = ctx()["frame"]
        if _current(frame) is not None:
            _edit(frame, lambda _: None)
        S["ann_part"], S["ann_msg"] = 0, "cleared the frame"

    _act(run)


def copy_prev() -> None:
    def run() -> None:
        c = ctx()
        src = editing.copy_previous(c["frames"], c["index"], labels_of(_store()))
        if src is None:
            S["ann_msg"] = "no labeled frame in this tracklet to copy from"
            return
        _edit(c["frame"], lambda _: src)
        S["ann_msg"] = "copied the nearest labeled frame's points: drag them where they belong"

    _act(run)


def undo() -> None:
    def run() -> None:
        store = _store()
        edit = editing.undo_last(store, S["ann_undo"], current=labels_of(store))
        if edit is None:
            S["ann_msg"] = "nothing to undo"
            return
        _saved(edit)
        part = editing.changed_part(edit.before, edit.after)
        if edit.frame == ctx()["frame"] and part is not None:  # the undone part is the one to place again
            S["ann_part"] = part
        S["ann_msg"] = f"undid the last change of {edit.frame}"

    _act(run)


def suggest(whole: bool) -> None:
    """Ask the pose detector for the current frame (or every frame of the tracklet); keep them as suggestions."""

    def run() -> None:
        from ssn3d.labels.pose import suggest_keypoints

        c = ctx()
        picks = list(range(c["count"])) if whole else [c["index"]]
        results = suggest_keypoints([c["paths"][j] for j in picks], roots=workspace().allowed_roots)
        found = suggestions.keep_suggestions(S["ann_sugg"], [c["frames"][j] for j in picks], results)
        where = "this frame" if not whole else f"{found} of {len(picks)} frames"
        S["ann_msg"] = (
            f"suggested points for {where}: accept them, or click to place a part where it belongs"
            if found
            else "the detector found no person here; place the points by hand"
        )

    _act(run)


def accept() -> None:
    """Turn the current frame's confident suggestions into labels (parts already labeled are kept)."""

    def run() -> None:
        frame = ctx()["frame"]
        sug = S["ann_sugg"].get(frame)
        if sug is None:
            S["ann_msg"] = "no suggestion for this frame: press Suggest first"
            return
        got = suggestions.accept(_current(frame), sug)
        if got.added == 0:
            S["ann_msg"] = "nothing to accept: the confident suggestions' parts are labeled already"
            return
        _edit(frame, lambda _: got.keypoints, source="pose-accepted")
        left = got.next_part
        S["ann_part"] = S["ann_part"] if left is None else left
        S["ann_msg"] = f"accepted {got.added} suggested point(s)" + (
            "" if left is None else f"; place or hide the rest, starting with {NAMES[left]}"
        )

    _act(run)


def jump_to(key: str) -> None:
    """Open the frame with label-store key ``key`` (the ranking's choice)."""
    for t, frames_of in enumerate(ctx()["tracklets"]):
        if key in frames_of:
            S["ann_tracklet"] = t
            goto_frame(frames_of.index(key))
            return
    S["ann_msg"] = f"{key} is not a frame of this split"


def select_part(i: int) -> None:
    S["ann_part"] = i


def step_frame(delta: int) -> None:
    n = ctx().get("count", 1)
    S["ann_frame"] = int(min(max(0, S.get("ann_frame", 0) + delta), n - 1))
    S["ann_rerun_app"] = True


def goto_frame(i: int) -> None:
    S["ann_frame"], S["ann_rerun_app"] = i, True


def next_frame() -> None:
    c = ctx()
    j = progress.next_unlabeled_frame(c["frames"], c["index"], labels_of(_store()))
    if j is None:
        S["ann_msg"] = "every frame of this tracklet is labeled"
    else:
        goto_frame(j)


def next_tracklet() -> None:
    tracks, labels_now = ctx()["tracklets"], labels_of(_store())
    j = progress.next_unlabeled_tracklet(tracks, S.get("ann_tracklet", 0), labels_now)
    if j is None:
        S["ann_msg"] = "every tracklet of this split has its labeled frames"
        return
    S["ann_tracklet"] = j
    goto_frame(progress.next_unlabeled_frame(tracks[j], -1, labels_now) or 0)


def _url_int(name: str) -> int | None:
    raw = st.query_params.get(name)
    return int(raw) if raw is not None and raw.isdigit() else None


def restore_place(splits: list[str]) -> None:
    """Take split, tracklet and frame from the URL when it changed since this page last wrote it.

    That happens on a reload (a new session) and on the browser's Back button; otherwise the widgets
    own the place and the URL follows them (``remember_place``).
    """
    place = (st.query_params.get("split"), _url_int("tracklet"), _url_int("frame"))
    if place == S.get("ann_url_place") or place == (None, None, None):
        # Streamlit drops a widget's state while another page runs: coming back, take the place again
        if "ann_tracklet" in S or "ann_place" not in S:
            return
        place = S["ann_place"]
    split, tracklet, frame = place
    if split in splits:
        S["ann_split"] = split
    if tracklet is not None:
        S["ann_tracklet"] = tracklet  # checked against the split's tracklets when the page reads it
    if frame is not None:
        S["ann_frame"] = frame
    S["ann_url_place"] = place


def remember_place(split: str, tracklet: int, frame: int) -> None:
    st.query_params.update({"split": split, "tracklet": str(tracklet), "frame": str(frame)})
    S["ann_url_place"] = S["ann_place"] = (split, tracklet, frame)
