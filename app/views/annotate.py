"""Annotate: click the 9 anchor keypoints of a few frames per tracklet (semi-supervised SSN).

Paper, "Different Learning Strategy": the semi-supervised strategy uses two labeled frames per
tracklet. Every change is saved at once to the dataset's label store (``ssn3d.labels.store``:
locked, atomic), so two sessions can label one dataset and nothing is lost if the server dies.
The click logic is ``ssn3d.labels.editing``; the callbacks are ``app.annotate_actions`` and the
widget groups ``app.annotate_tools``; this page only places them.

Two helpers sit beside the clicks: "Suggest" asks the offline pose detector (``ssn3d.labels.pose``) for
the frame's or the tracklet's keypoints, which stay in this session as hollow rings until accepted (only
accepted points are labels, and undo covers an accept); "Label the most useful frame next" ranks the
frames by how unsure a model is about its parts (``ssn3d.labels.next``) and jumps to the best one.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import annotate_actions as act
from app.annotate_tools import import_export_panel, next_useful_panel, part_css, suggestion_tools
from app.common import (
    frame_keys,
    label_store,
    labels_of,
    read_frame,
    repair_notice,
    require_dataset,
    shown_errors,
    thumbnail,
    tracklet_label,
    workspace,
)
from app.frame_canvas import canvas_data, frame_canvas, frame_url
from ssn3d.keypoints import PART_COLORS
from ssn3d.labels import drawing, editing, progress

S = st.session_state
S.setdefault("ann_part", 0)
S.setdefault("ann_mode", "place")
S.setdefault("ann_undo", editing.UndoStack())
S.setdefault("ann_msg", "")
S.setdefault("ann_zoom", 1)
S.setdefault("ann_sugg", {})  # {frame key: {"keypoints": (9, 3) list, "confidence": (9,) list}}: not labels
S.pop("ann_rerun_app", None)  # this is the whole page's run that the fragment below may ask for

spec, dataset = require_dataset()
store = label_store(workspace(), dataset)
S["ann_store"] = str(store.path)  # the actions open the store the page shows
if S.get("ann_sugg_dataset") != dataset.dataset_id:  # suggestions belong to the frames they were made for
    S["ann_sugg"], S["ann_sugg_dataset"] = {}, dataset.dataset_id
with shown_errors(stop=True):
    repaired = repair_notice(store)  # before the labels are read, which would cut a torn tail unseen
    keys = frame_keys(spec)
    labels = labels_of(store)
if repaired or S.get("ann_repair"):
    st.warning(repaired or S.pop("ann_repair"))
NAMES = act.NAMES
DISPLAY_HEIGHT = 384  # frame pixels on screen: the whole frame fits a 900-pixel-tall window
ZOOMS = (1, 2, 3)  # times the fitted size, for small parts (feet, elbows) on low-resolution crops

# ----------------------------------------------------------------------------- choose tracklet and frame

st.title("Annotate anchor keypoints")
splits = [s for s, ts in keys.items() if ts]
if not splits:
    st.info("This dataset has no tracklets to label.")
    st.stop()
act.restore_place(splits)
top = st.columns([1, 3, 2])
split = top[0].selectbox("Split", splits, key="ann_split", help="the paper labels training tracklets")
tracklets = dataset.splits()[split]
split_keys = keys[split]
if not 0 <= S.get("ann_tracklet", 0) < len(tracklets):  # a URL or another split named one not here
    S["ann_tracklet"] = 0
# A widget's identity and option labels never carry live data: the browser sends back the label of the
# chosen option, so a label that changes when a frame gets labeled no longer matches, the selection resets
# to tracklet #0 and later clicks land there. The live counts are captions beside the widgets.
idx = top[1].selectbox(
    "Tracklet",
    range(len(tracklets)),
    key="ann_tracklet",
    format_func=lambda i: tracklet_label(tracklets[i], i),
    on_change=lambda: act.goto_frame(0),
)
total = progress.dataset_progress(split_keys, labels)
top[2].progress(
    total.fraction,
    text=f"{split}: {total.labeled}/{total.goal} frames, {total.tracklets_done}/{total.tracklets} "
    "tracklets done",
)
frames = split_keys[idx]
paths = tracklets[idx].paths
S["ann_frame"] = min(S.get("ann_frame", 0), len(frames) - 1)
prog = progress.tracklet_progress(frames, labels)
done = " (done)" if prog.tracklets_done else ""
started = f", {prog.started} started" if prog.started else ""
head = st.columns([2, 1, 1])
head[0].progress(
    prog.fraction,
    text=f"This tracklet: {prog.labeled}/{prog.goal} labeled frames (every part placed or hidden)"
    f"{started}{done}",
)
head[1].button(
    "Next unlabeled frame",
    key="ann_next_open",
    on_click=act.next_frame,
    shortcut="N",
    width="stretch",
    help="the next frame of this tracklet whose parts are not all done (key N)",
)
head[2].button(
    "Next unlabeled tracklet",
    key="ann_next_tracklet",
    on_click=act.next_tracklet,
    shortcut="Shift+N",
    width="stretch",
    help=f"the next tracklet with fewer than {progress.GOAL_PER_TRACKLET} labeled frames (Shift+N)",
)

cur = S["ann_frame"]

# ----------------------------------------------------------------------------- the frame and the tools

with shown_errors(stop=True):
    image = read_frame(paths[cur])
scale = drawing.display_scale(image.size, target_height=DISPLAY_HEIGHT)
frame = frames[cur]
kps = labels.get(frame)
if S.get("ann_part_frame") != frame:  # a frame opens on its first part still to place, however it was reached
    first_open = editing.next_unlabeled(editing.new_keypoints() if kps is None else kps, -1)
    S["ann_part"], S["ann_part_frame"] = first_open or 0, frame
S["ann_ctx"] = {
    "frame": frame,
    "size": image.size,
    "scale": scale,
    "frames": frames,
    "index": cur,
    "count": len(frames),
    "paths": [str(p) for p in paths],
    "tracklets": split_keys,
}
act.remember_place(split, idx, cur)


# Long on purpose: a flat sequence of widgets in page order; Streamlit lays them out as called.
def frame_view(kps: np.ndarray | None) -> None:
    """Frame navigation, zoom, and the frame with its points, the suggestions and the click target."""
    nav = st.columns([2, 5, 2])
    nav[0].button(
        "◀",
        key="ann_prev",
        help="previous frame",
        on_click=act.step_frame,
        args=(-1,),
        shortcut="Left",
        disabled=cur == 0,
    )
    nav[1].slider(
        "Frame",
        0,
        max(1, len(frames) - 1),
        key="ann_frame",
        disabled=len(frames) == 1,
        label_visibility="collapsed",
    )
    nav[2].button(
        "▶",
        help="next frame",
        key="ann_next",
        on_click=act.step_frame,
        args=(1,),
        shortcut="Right",
        disabled=cur >= len(frames) - 1,
    )
    part = S["ann_part"]
    zoom = st.segmented_control(
        "Zoom",
        ZOOMS,
        format_func=lambda z: "fit" if z == 1 else f"{z}x",
        key="ann_zoom",
        required=True,
        help="larger than the window: scroll the page to pan",
    )
    shown = scale * (zoom or 1)
    S["ann_ctx"]["scale"] = shown  # the click radius follows the zoom
    hidden = [n for i, n in enumerate(NAMES) if kps is not None and editing.part_state(kps, i) == "hidden"]
    with shown_errors(stop=True):
        image_url = frame_url(paths[cur])
    data = canvas_data(
        frame=frame,
        image=image_url,
        size=image.size,
        scale=shown,
        keypoints=kps,
        selected=part,
        names=NAMES,
        mode=S["ann_mode"] or "place",
        fit=(zoom or 1) == 1,
        suggestion=S["ann_sugg"].get(frame),
        hidden=hidden,
        ack=S.get("ann_canvas_ack"),
    )
    frame_canvas(data, key="ann_canvas", on_event=act.on_canvas)
    st.caption(
        f"`{frame}`: {image.width} x {image.height} pixels, shown at {shown:g}x. Click to place the "
        "selected part (the next unlabeled part is selected after each click); drag a point to move it."
    )


# Long on purpose: a flat sequence of widgets in page order; Streamlit lays them out as called.
def frame_tools(kps: np.ndarray | None) -> None:
    """The message, click mode, suggestions, part buttons and legend, the edit buttons, a typed point."""
    if S["ann_msg"]:
        (st.error if S["ann_msg"].startswith("error:") else st.info)(S["ann_msg"])
    st.segmented_control(
        "Click mode",
        ["place", "delete"],
        key="ann_mode",
        required=True,
        help="delete: click a point; in either mode, drag a point to move it",
    )
    suggestion_tools(frame, kps)  # high in the column: in view without scrolling in a 900-pixel window
    st.caption("Part (keys 1-9)")
    grid = st.columns(3)
    for i, name in enumerate(NAMES):
        grid[i % 3].button(  # a fixed label: the part's state is in the legend below
            name,
            key=f"ann_part_{i}",
            on_click=act.select_part,
            args=(i,),
            shortcut=str(i + 1),
            type="secondary",  # the selected part is filled with its colour (part_css)
            width="stretch",
        )
    states = ["" if kps is None else editing.part_state(kps, i) for i in range(len(NAMES))]
    legend = " ".join(
        f'<span style="color:rgb{c};font-size:1.3em">&#9679;</span>&nbsp;{n}{f" ({s})" if s else ""}'
        for c, n, s in zip(PART_COLORS, NAMES, states)
    )
    st.markdown(legend, unsafe_allow_html=True)  # fixed part names and colours only, no user text
    row = st.columns(2)
    row[0].button(
        "Not visible",
        key="ann_hidden",
        on_click=act.not_visible,
        shortcut="V",
        width="stretch",
        help="the part is hidden or outside the frame: labeled, but no anchor",
    )
    row[1].button("Clear part", key="ann_clear_part", on_click=act.clear_part, shortcut="X", width="stretch")
    row = st.columns(2)
    row[0].button(
        "Undo",
        key="ann_undo_btn",
        on_click=act.undo,
        shortcut="Z",
        width="stretch",
        disabled=len(S["ann_undo"]) == 0,
    )
    row[1].button(
        "Copy previous frame", key="ann_copy", on_click=act.copy_prev, shortcut="P", width="stretch"
    )
    st.button(
        "Clear frame",
        key="ann_clear_frame",
        on_click=act.clear_frame,
        width="stretch",
        disabled=kps is None,
    )
    with st.form("ann_type_point", clear_on_submit=False, border=True):
        st.caption("Or type the point in frame pixels (Enter places it)")
        c = st.columns(2)
        c[0].number_input("x", 0.0, float(image.width), float(image.width) / 2, key="ann_x", step=1.0)
        c[1].number_input("y", 0.0, float(image.height), float(image.height) / 2, key="ann_y", step=1.0)
        st.form_submit_button("Place point", on_click=act.on_typed_point)


@st.fragment
def frame_and_tools() -> None:
    """The frame and its tools. A click reruns only this part of the page, which keeps the redraw fast;
    the rest follows (``st.rerun``) when a frame's done state changes or the labeler moves to another frame.
    """
    if S.pop("ann_rerun_app", False):
        st.rerun(scope="app")
    kps = labels_of(store).get(frame)
    st.html(part_css(S["ann_part"]))
    view, tools = st.columns([1, 1], gap="medium")  # wide enough for the whole frame at 800 pixels
    with view:
        frame_view(kps)
    with tools:
        frame_tools(kps)


frame_and_tools()

# thumbnails around the current frame (below it, so the frame itself fits the window)
lo = max(0, min(cur - 6, len(frames) - 12))
strip = st.columns(12)
for col, j in zip(strip, range(lo, min(len(frames), lo + 12))):
    with col, shown_errors():
        j_kps = labels.get(frames[j])
        mark = (
            " ✓" if progress.is_labeled(j_kps) else " ◐" if progress.is_started(j_kps) else ""
        )  # done / started
        st.image(thumbnail(paths[j], 72), caption=f"{'▶ ' if j == cur else ''}{j}{mark}")
        st.button(
            "open", key=f"ann_go_{j}", on_click=act.goto_frame, args=(j,), type="tertiary", disabled=j == cur
        )


next_useful_panel(spec, split, store)
import_export_panel(keys, dataset, store, has_labels=bool(labels))
