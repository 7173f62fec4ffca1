"""Annotate: click the 9 anchor keypoints of a few frames per tracklet (semi-supervised SSN).

Paper, "Different Learning Strategy": the semi-supervised strategy uses two labeled frames per
tracklet. Every change is saved at once to the dataset's label store (``ssn3d.annotations``:
locked, atomic), so two sessions can label one dataset and nothing is lost if the server dies.
The click logic is ``ssn3d.annotate``; this page only wires widgets to it.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import streamlit as st
from streamlit_image_coordinates import streamlit_image_coordinates

from app.common import (
    frame_keys,
    label_store,
    labels_of,
    read_frame,
    require_dataset,
    shown_errors,
    thumbnail,
    tracklet_label,
    workspace,
)
from ssn3d import annotate as an
from ssn3d.keypoints import NOT_LABELED, PART_COLORS, PARTS

S = st.session_state
S.setdefault("ann_part", 0)
S.setdefault("ann_mode", "place")
S.setdefault("ann_grabbed", None)
S.setdefault("ann_undo", an.UndoStack())
S.setdefault("ann_msg", "")

spec, dataset = require_dataset()
ws = workspace()
store = label_store(ws, dataset)
with shown_errors(stop=True):
    keys = frame_keys(spec)
    labels = labels_of(store)
NAMES = [p.replace("_", " ") for p in PARTS]

# ----------------------------------------------------------------------------- actions (widget callbacks)


def _ctx() -> dict:
    return S.get("ann_ctx", {})


def _current(frame: str) -> np.ndarray | None:
    """The frame's saved keypoints, from the store's cached index (re-read whenever the file changed)."""
    return labels_of(store).get(frame)


def _save(frame: str, before: np.ndarray | None, after: np.ndarray | None) -> None:
    S["ann_undo"].push(frame, before)
    store.update({frame: after})


def _act(fn) -> None:
    """Run an action on the current frame; a store error becomes the page's message, not a traceback."""
    try:
        fn()
    except (ValueError, OSError) as e:
        S["ann_msg"] = f"error: {e}"


def apply_point(x: float, y: float) -> None:
    """A click (or a typed point) at frame pixel (x, y) on the current frame."""
    ctx = _ctx()
    frame = ctx["frame"]
    before = _current(frame)
    kps = an.new_keypoints() if before is None else before
    res = an.handle_click(
        kps,
        S["ann_part"],
        x,
        y,
        mode=S["ann_mode"] or "place",
        grabbed=S["ann_grabbed"],
        radius=12.0 / ctx["scale"],
        part_names=NAMES,
    )
    if res.changed:
        _save(frame, before, res.keypoints)
    S["ann_part"], S["ann_grabbed"], S["ann_msg"] = res.part, res.grabbed, res.message


def on_image_click() -> None:
    value = S.get("ann_click")
    if not an.is_new_click(value, S.get("ann_last_click")):
        return
    S["ann_last_click"] = value.get("unix_time")
    size = _ctx()["size"]
    x, y = an.scale_click(value["x"], value["y"], (value.get("width") or 1, value.get("height") or 1), size)
    _act(lambda: apply_point(x, y))


def on_typed_point() -> None:
    _act(lambda: apply_point(float(S["ann_x"]), float(S["ann_y"])))


def _edit(change) -> None:
    def run() -> None:
        frame = _ctx()["frame"]
        before = _current(frame)
        after = change(an.new_keypoints() if before is None else before)
        _save(frame, before, after)

    _act(run)


def not_visible() -> None:
    part = S["ann_part"]

    def run() -> None:
        frame = _ctx()["frame"]
        before = _current(frame)
        after = an.mark_not_visible(an.new_keypoints() if before is None else before, part)
        _save(frame, before, after)
        nxt = an.next_unlabeled(after, part)
        S["ann_part"] = part if nxt is None else nxt
        S["ann_msg"] = f"marked {NAMES[part]} not visible"

    _act(run)


def clear_part() -> None:
    part = S["ann_part"]
    _edit(lambda k: an.clear_point(k, part))
    S["ann_msg"] = f"cleared {NAMES[part]}"


def clear_frame() -> None:
    def run() -> None:
        frame = _ctx()["frame"]
        before = _current(frame)
        if before is not None:
            _save(frame, before, None)
        S["ann_part"], S["ann_msg"] = 0, "cleared the frame"

    _act(run)


def copy_prev() -> None:
    def run() -> None:
        ctx = _ctx()
        src = an.copy_previous(ctx["frames"], ctx["index"], labels_of(store))
        if src is None:
            S["ann_msg"] = "no labeled frame in this tracklet to copy from"
            return
        _save(ctx["frame"], _current(ctx["frame"]), src)
        S["ann_msg"] = "copied the nearest labeled frame's points: adjust them with the move mode"

    _act(run)


def undo() -> None:
    def run() -> None:
        entry = S["ann_undo"].pop()
        if entry is None:
            S["ann_msg"] = "nothing to undo"
            return
        frame, before = entry
        store.update({frame: before})
        S["ann_msg"] = f"undid the last change of {frame}"

    _act(run)


def select_part(i: int) -> None:
    S["ann_part"], S["ann_grabbed"] = i, None


def step_frame(delta: int) -> None:
    n = _ctx().get("count", 1)
    S["ann_frame"] = int(min(max(0, S.get("ann_frame", 0) + delta), n - 1))
    S["ann_grabbed"] = None


def goto_frame(i: int) -> None:
    S["ann_frame"], S["ann_grabbed"] = i, None


# ----------------------------------------------------------------------------- choose tracklet and frame

st.title("Annotate anchor keypoints")
splits = [s for s, ts in keys.items() if ts]
if not splits:
    st.info("This dataset has no tracklets to label.")
    st.stop()
top = st.columns([1, 3, 2])
split = top[0].selectbox("Split", splits, key="ann_split", help="the paper labels training tracklets")
tracklets = dataset.splits()[split]
split_keys = keys[split]
owner = {k: i for i, ks in enumerate(split_keys) for k in ks}
per = Counter(owner[k] for k, v in labels.items() if k in owner and an.is_labeled(v))
goal = an.GOAL_PER_TRACKLET
idx = top[1].selectbox(
    "Tracklet",
    range(len(tracklets)),
    key="ann_tracklet",
    format_func=lambda i: tracklet_label(
        tracklets[i],
        i,
        f"- {per.get(i, 0)}/{min(goal, len(split_keys[i]))} labeled"
        + (" (done)" if per.get(i, 0) >= min(goal, len(split_keys[i])) else ""),
    ),
    on_change=lambda: goto_frame(0),
)
total = an.dataset_progress(split_keys, labels)
top[2].progress(
    total.fraction,
    text=f"{split}: {total.labeled}/{total.goal} frames, {total.tracklets_done}/{total.tracklets} "
    "tracklets done",
)
frames = split_keys[idx]
paths = tracklets[idx].paths
S["ann_frame"] = min(S.get("ann_frame", 0), len(frames) - 1)
prog = an.tracklet_progress(frames, labels)
st.progress(
    prog.fraction, text=f"This tracklet: {prog.labeled}/{prog.goal} labeled frames ({prog.complete} complete)"
)

# thumbnails around the current frame, labeled ones marked
cur = S["ann_frame"]
lo = max(0, min(cur - 6, len(frames) - 12))
strip = st.columns(12)
for col, j in zip(strip, range(lo, min(len(frames), lo + 12))):
    with col, shown_errors():
        mark = " ✓" if an.is_labeled(labels.get(frames[j])) else ""  # labeled frames carry a tick
        st.image(thumbnail(paths[j], 72), caption=f"{'▶ ' if j == cur else ''}{j}{mark}")
        st.button(
            "open", key=f"ann_go_{j}", on_click=goto_frame, args=(j,), type="tertiary", disabled=j == cur
        )

# ----------------------------------------------------------------------------- the frame and the tools

with shown_errors(stop=True):
    image = read_frame(paths[cur])
scale = an.display_scale(image.size)
frame = frames[cur]
kps = labels.get(frame)
S["ann_ctx"] = {
    "frame": frame,
    "size": image.size,
    "scale": scale,
    "frames": frames,
    "index": cur,
    "count": len(frames),
}
view, tools = st.columns([2, 3], gap="large")
with view:
    nav = st.columns([2, 5, 2])
    nav[0].button(
        "◀",
        key="ann_prev",
        help="previous frame",
        on_click=step_frame,
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
        on_click=step_frame,
        args=(1,),
        shortcut="Right",
        disabled=cur >= len(frames) - 1,
    )
    drawn = an.draw_keypoints(image, kps, scale=scale, radius=max(3.0, 1.5 * scale), selected=S["ann_part"])
    streamlit_image_coordinates(drawn, key="ann_click", on_click=on_image_click, cursor="crosshair")
    st.caption(
        f"`{frame}`: {image.width} x {image.height} pixels, shown at {scale:g}x. Click to place the "
        "selected part; the next unlabeled part is selected after each click."
    )

with tools:
    if S["ann_msg"]:
        (st.error if S["ann_msg"].startswith("error:") else st.info)(S["ann_msg"])
    st.segmented_control(
        "Click mode",
        ["place", "move", "delete"],
        key="ann_mode",
        required=True,
        help="move: click a point, then where it belongs; delete: click a point",
    )
    st.caption("Part (keys 1-9)")
    grid = st.columns(3)
    for i, name in enumerate(NAMES):
        state = "" if kps is None or kps[i, 2] == NOT_LABELED else (" ok" if kps[i, 2] == 2 else " hidden")
        grid[i % 3].button(
            f"{name}{state}",
            key=f"ann_part_{i}",
            on_click=select_part,
            args=(i,),
            shortcut=str(i + 1),
            type="primary" if i == S["ann_part"] else "secondary",
            width="stretch",
        )
    legend = " ".join(
        f'<span style="color:rgb{c};font-size:1.3em">&#9679;</span>&nbsp;{n}'
        for c, n in zip(PART_COLORS, NAMES)
    )
    st.markdown(legend, unsafe_allow_html=True)  # fixed part names and colours only, no user text
    row = st.columns(2)
    row[0].button(
        "Not visible",
        key="ann_hidden",
        on_click=not_visible,
        shortcut="V",
        width="stretch",
        help="the part is hidden or outside the frame: labeled, but no anchor",
    )
    row[1].button("Clear part", key="ann_clear_part", on_click=clear_part, shortcut="X", width="stretch")
    row = st.columns(2)
    row[0].button(
        "Undo",
        key="ann_undo_btn",
        on_click=undo,
        shortcut="Z",
        width="stretch",
        disabled=len(S["ann_undo"]) == 0,
    )
    row[1].button("Copy previous frame", key="ann_copy", on_click=copy_prev, shortcut="P", width="stretch")
    st.button(
        "Clear frame", key="ann_clear_frame", on_click=clear_frame, width="stretch", disabled=kps is None
    )
    with st.form("ann_type_point", clear_on_submit=False, border=True):
        st.caption("Or type the point in frame pixels (Enter places it)")
        c = st.columns(2)
        c[0].number_input("x", 0.0, float(image.width), float(image.width) / 2, key="ann_x", step=1.0)
        c[1].number_input("y", 0.0, float(image.height), float(image.height) / 2, key="ann_y", step=1.0)
        st.form_submit_button("Place point", on_click=on_typed_point)

# ----------------------------------------------------------------------------- import and export

with st.expander("Import and export (COCO keypoints, OpenPose)"):
    from ssn3d.interchange import FrameIndex, export_coco, import_coco, import_openpose
    from ssn3d.serving.uploads import check_upload_size

    index = FrameIndex([k for ks in keys.values() for t in ks for k in t], dataset.root)
    st.download_button(
        "Download COCO keypoints JSON",
        data=lambda: json.dumps(export_coco(store, index, name=dataset.dataset_id)),
        file_name=f"{dataset.dataset_id}-keypoints-coco.json",
        mime="application/json",
        key="ann_export",
        disabled=not labels,
        icon=":material/download:",
    )
    kind = st.radio("Import format", ["COCO keypoints", "OpenPose"], key="ann_import_kind", horizontal=True)
    files = st.file_uploader("JSON files", type=["json"], accept_multiple_files=True, key="ann_import_files")
    overwrite = st.checkbox("Replace frames already labeled", key="ann_import_overwrite")
    if st.button("Import", key="ann_import", disabled=not files):
        with shown_errors():
            blobs = {f.name: f.getvalue() for f in files if check_upload_size(f, name=f.name)}
            if kind == "COCO keypoints":
                reports = [import_coco(b, index, store, overwrite=overwrite) for b in blobs.values()]
            else:
                reports = [import_openpose(blobs, index, store, overwrite=overwrite)]
            for rep in reports:
                (st.success if rep.imported else st.warning)(rep.summary())
                if rep.skipped:
                    st.dataframe(
                        [{"item": i, "skipped because": r} for i, r in rep.skipped[:500]], hide_index=True
                    )
