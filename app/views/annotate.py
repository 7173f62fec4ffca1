"""Annotate: click the 9 anchor keypoints of a few frames per tracklet (semi-supervised SSN).

Paper, "Different Learning Strategy": the semi-supervised strategy uses two labeled frames per
tracklet. Every change is saved at once to the dataset's label store (``ssn3d.annotations``:
locked, atomic), so two sessions can label one dataset and nothing is lost if the server dies.
The click logic is ``ssn3d.annotate``; this page only wires widgets to it.

Two helpers sit beside the clicks: "Suggest" asks the offline pose detector (``ssn3d.pose``) for the
frame's or the tracklet's keypoints, which stay in this session as hollow rings until accepted (only
accepted points are labels, and undo covers an accept); "Label the most useful frame next" ranks the
frames by how unsure a model is about its parts (``ssn3d.label_next``) and jumps to the best one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import streamlit as st
from streamlit_image_coordinates import streamlit_image_coordinates

from app.common import (
    DatasetSpec,
    checkpoint_choices,
    frame_keys,
    label_store,
    labels_of,
    load_dataset,
    load_extractor,
    read_frame,
    repair_notice,
    require_dataset,
    shown_errors,
    thumbnail,
    tracklet_label,
    workspace,
)
from ssn3d import annotate as an
from ssn3d.keypoints import PART_COLORS, PARTS
from ssn3d.pose import INSTALL_HINT, pose_available

S = st.session_state
S.setdefault("ann_part", 0)
S.setdefault("ann_mode", "place")
S.setdefault("ann_grabbed", None)
S.setdefault("ann_undo", an.UndoStack())
S.setdefault("ann_msg", "")
S.setdefault("ann_zoom", 1)
S.setdefault("ann_sugg", {})  # {frame key: {"keypoints": (9, 3) list, "confidence": (9,) list}}: not labels
S.pop("ann_rerun_app", None)  # this is the whole page's run that the fragment below may ask for

spec, dataset = require_dataset()
ws = workspace()
store = label_store(ws, dataset)
if S.get("ann_sugg_dataset") != dataset.dataset_id:  # suggestions belong to the frames they were made for
    S["ann_sugg"], S["ann_sugg_dataset"] = {}, dataset.dataset_id
with shown_errors(stop=True):
    repaired = repair_notice(store)  # before the labels are read, which would cut a torn tail unseen
    keys = frame_keys(spec)
    labels = labels_of(store)
if repaired or S.get("ann_repair"):
    st.warning(repaired or S.pop("ann_repair"))
NAMES = [p.replace("_", " ") for p in PARTS]
DISPLAY_HEIGHT = 384  # frame pixels on screen: the whole frame fits a 900-pixel-tall window
ZOOMS = (1, 2, 3)  # times the fitted size, for small parts (feet, elbows) on low-resolution crops

# ----------------------------------------------------------------------------- actions (widget callbacks)


def _ctx() -> dict:
    return S.get("ann_ctx", {})


def _current(frame: str) -> np.ndarray | None:
    """The frame's saved keypoints, from the store's cached index (re-read whenever the file changed)."""
    return labels_of(store).get(frame)


def _follow(before: np.ndarray | None, after: np.ndarray | None) -> None:
    """Ask for a whole-page rerun when a frame's done state changed (progress, ticks)."""
    if (an.is_labeled(before), an.is_started(before)) != (an.is_labeled(after), an.is_started(after)):
        S["ann_rerun_app"] = True


def _save(frame: str, before: np.ndarray | None, after: np.ndarray | None, source: str = "manual") -> None:
    S["ann_undo"].push(frame, before)
    cut = store.repaired_bytes
    store.update({frame: after}, source=source)
    if store.repaired_bytes > cut:  # this save cut a torn tail first: say it once
        S["ann_repair"], S["ann_rerun_app"] = store.last_repair, True
    _follow(before, after)


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
        frame_size=ctx["size"],  # a typed point outside the frame is refused, as imports hide one
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
        now = _current(frame)
        store.update({frame: before})
        _follow(now, before)
        part = an.changed_part(now, before)
        if frame == _ctx()["frame"] and part is not None:  # the undone part is the one to place again
            S["ann_part"], S["ann_grabbed"] = part, None
        S["ann_msg"] = f"undid the last change of {frame}"

    _act(run)


def suggest(whole: bool) -> None:
    """Ask the pose detector for the current frame (or every frame of the tracklet); keep them as suggestions."""

    def run() -> None:
        from ssn3d.pose import suggest_keypoints

        ctx = _ctx()
        picks = list(range(ctx["count"])) if whole else [ctx["index"]]
        results = suggest_keypoints([ctx["paths"][j] for j in picks], roots=ws.allowed_roots)
        found = 0
        for j, res in zip(picks, results):
            S["ann_sugg"].pop(ctx["frames"][j], None)
            if res.keypoints is not None:
                S["ann_sugg"][ctx["frames"][j]] = {
                    "keypoints": res.keypoints.tolist(),
                    "confidence": res.confidence.tolist(),
                }
                found += 1
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
        frame = _ctx()["frame"]
        sug = S["ann_sugg"].get(frame)
        if sug is None:
            S["ann_msg"] = "no suggestion for this frame: press Suggest first"
            return
        before = _current(frame)
        after = an.accept_suggestions(before, np.asarray(sug["keypoints"], dtype=np.float32))
        added = int((after[:, 2] > 0).sum() - (0 if before is None else (before[:, 2] > 0).sum()))
        if added == 0:
            S["ann_msg"] = "nothing to accept: the confident suggestions' parts are labeled already"
            return
        _save(frame, before, after, source="pose-accepted")
        left = an.next_unlabeled(after, -1)
        S["ann_part"], S["ann_grabbed"] = (S["ann_part"] if left is None else left), None
        S["ann_msg"] = f"accepted {added} suggested point(s)" + (
            "" if left is None else f"; place or hide the rest, starting with {NAMES[left]}"
        )

    _act(run)


def jump_to(key: str) -> None:
    """Open the frame with label-store key ``key`` (the ranking's choice)."""
    for t, frames_of in enumerate(_ctx()["tracklets"]):
        if key in frames_of:
            S["ann_tracklet"] = t
            goto_frame(frames_of.index(key))
            return
    S["ann_msg"] = f"{key} is not a frame of this split"


def select_part(i: int) -> None:
    S["ann_part"], S["ann_grabbed"] = i, None


def step_frame(delta: int) -> None:
    n = _ctx().get("count", 1)
    S["ann_frame"] = int(min(max(0, S.get("ann_frame", 0) + delta), n - 1))
    S["ann_grabbed"], S["ann_rerun_app"] = None, True


def goto_frame(i: int) -> None:
    S["ann_frame"], S["ann_grabbed"], S["ann_rerun_app"] = i, None, True


def next_frame() -> None:
    ctx = _ctx()
    j = an.next_unlabeled_frame(ctx["frames"], ctx["index"], labels_of(store))
    if j is None:
        S["ann_msg"] = "every frame of this tracklet is labeled"
    else:
        goto_frame(j)


def next_tracklet() -> None:
    ctx = _ctx()
    tracks, labels_now = ctx["tracklets"], labels_of(store)
    j = an.next_unlabeled_tracklet(tracks, S.get("ann_tracklet", 0), labels_now)
    if j is None:
        S["ann_msg"] = "every tracklet of this split has its labeled frames"
        return
    S["ann_tracklet"] = j
    goto_frame(an.next_unlabeled_frame(tracks[j], -1, labels_now) or 0)


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


# ----------------------------------------------------------------------------- page chrome (fixed text only)

# The click component is an iframe: after a click the keyboard focus stays inside it and the page's
# shortcuts (Z, 1-9, arrows) no longer reach Streamlit. When the page loses focus to that iframe, hand
# it back. The script is a constant (no user data) and installs itself once per browser tab.
FOCUS_BACK = """<script>
(() => {
  if (window.__ssn3dFocusBack) return;
  window.__ssn3dFocusBack = true;
  window.addEventListener("blur", () => setTimeout(() => {
    const el = document.activeElement;
    if (el && el.tagName === "IFRAME" && (el.title || "").includes("streamlit_image_coordinates")) {
      el.blur();
      window.focus();
    }
  }, 0));
})();
</script>"""


def part_css(selected: int) -> str:
    """Each part button edged in its part's colour, the selected one filled with it (not the theme's red,
    which is also the head's colour); less top padding so the frame fits a 900-pixel-tall window."""
    rules = ['[data-testid="stMainBlockContainer"] {padding-top: 2rem;}']
    for i, (r, g, b) in enumerate(PART_COLORS):
        rules.append(f".st-key-ann_part_{i} button {{border-left: 0.6rem solid rgb({r},{g},{b});}}")
    r, g, b = PART_COLORS[selected]
    ink = "#000" if r + g + b > 380 else "#fff"
    rules.append(
        f".st-key-ann_part_{selected} button {{background: rgb({r},{g},{b}); color: {ink}; font-weight: 600;}}"
    )
    return "<style>" + "\n".join(rules) + "</style>"


def part_cursor(color: tuple[int, int, int]) -> str:
    """A CSS cursor: a ring with a centre dot in the part's colour, hot spot at the centre."""
    r, g, b = color
    svg = (
        "<svg xmlns='http://www.w3.org/2000/svg' width='24' height='24'>"
        f"<circle cx='12' cy='12' r='8' fill='none' stroke='rgb({r},{g},{b})' stroke-width='3'/>"
        "<circle cx='12' cy='12' r='8' fill='none' stroke='black' stroke-width='1'/>"
        f"<circle cx='12' cy='12' r='1.5' fill='rgb({r},{g},{b})'/></svg>"
    )
    return f'url("data:image/svg+xml;utf8,{svg}") 12 12, crosshair'


# ----------------------------------------------------------------------------- choose tracklet and frame

st.title("Annotate anchor keypoints")
splits = [s for s, ts in keys.items() if ts]
if not splits:
    st.info("This dataset has no tracklets to label.")
    st.stop()
restore_place(splits)
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
    on_click=next_frame,
    shortcut="N",
    width="stretch",
    help="the next frame of this tracklet whose parts are not all done (key N)",
)
head[2].button(
    "Next unlabeled tracklet",
    key="ann_next_tracklet",
    on_click=next_tracklet,
    shortcut="Shift+N",
    width="stretch",
    help=f"the next tracklet with fewer than {an.GOAL_PER_TRACKLET} labeled frames (Shift+N)",
)

cur = S["ann_frame"]

# ----------------------------------------------------------------------------- the frame and the tools

with shown_errors(stop=True):
    image = read_frame(paths[cur])
scale = an.display_scale(image.size, target_height=DISPLAY_HEIGHT)
frame = frames[cur]
kps = labels.get(frame)
if S.get("ann_part_frame") != frame:  # a frame opens on its first part still to place, however it was reached
    first_open = an.next_unlabeled(an.new_keypoints() if kps is None else kps, -1)
    S["ann_part"], S["ann_part_frame"], S["ann_grabbed"] = first_open or 0, frame, None
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
remember_place(split, idx, cur)
st.html(FOCUS_BACK, unsafe_allow_javascript=True)


def suggestion_tools(kps: np.ndarray | None) -> None:
    """Suggest (this frame or the whole tracklet) and accept; disabled with the fix when no detector is here."""
    ready = pose_available()
    st.caption("Pose detector suggestions (hollow rings with their confidence)")
    row = st.columns(3)
    row[0].button(
        "Suggest",
        key="ann_suggest",
        on_click=suggest,
        args=(False,),
        shortcut="S",
        width="stretch",
        disabled=not ready,
        help="the detector's points for this frame (key S); they are not labels until accepted",
    )
    row[1].button(
        "Whole tracklet",
        key="ann_suggest_all",
        on_click=suggest,
        args=(True,),
        width="stretch",
        disabled=not ready,
        help="suggestions for every frame of this tracklet (about 0.1 s a frame)",
    )
    sug = S["ann_sugg"].get(frame)
    row[2].button(
        "Accept suggestions",
        key="ann_accept",
        on_click=accept,
        shortcut="A",
        width="stretch",
        type="primary" if sug is not None else "secondary",
        disabled=sug is None,
        help="the confident points become labels (key A); parts you placed stay; undo takes it back",
    )
    if not ready:
        st.caption(f"Suggestions need the offline pose detector: {INSTALL_HINT}, then reload the page.")
    elif sug is not None:
        open_ = [i for i in range(len(NAMES)) if kps is None or kps[i, 2] == 0]
        st.caption(
            "Suggested: "
            + ", ".join(
                f"{NAMES[i]} {sug['confidence'][i]:.2f}{'' if sug['keypoints'][i][2] >= 2 else ' (unsure)'}"
                for i in open_
            )
        )


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
        radius = max(3.0, 1.5 * shown)
        drawn = an.draw_keypoints(image, kps, scale=shown, radius=radius, selected=part)
        sug = S["ann_sugg"].get(frame)
        if sug is not None:
            an.draw_suggestions(
                drawn,
                kps,
                np.asarray(sug["keypoints"]),
                np.asarray(sug["confidence"]),
                scale=shown,
                radius=radius,
            )
        hidden = [n for i, n in enumerate(NAMES) if kps is not None and an.part_state(kps, i) == "hidden"]
        tag = [f"{S['ann_mode'] or 'place'}: {NAMES[part]}"] + (
            [f"hidden: {', '.join(hidden)}"] if hidden else []
        )
        an.draw_tag(drawn, tag, PART_COLORS[part])
        streamlit_image_coordinates(
            drawn,
            key="ann_click",
            on_click=on_image_click,
            cursor=part_cursor(PART_COLORS[part]),
            png_compression_level=1,  # a tenth of the bytes of level 0 for 1 ms more
        )
        st.caption(
            f"`{frame}`: {image.width} x {image.height} pixels, shown at {shown:g}x. Click to place the "
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
            grid[i % 3].button(  # a fixed label: the part's state is in the legend below
                name,
                key=f"ann_part_{i}",
                on_click=select_part,
                args=(i,),
                shortcut=str(i + 1),
                type="secondary",  # the selected part is filled with its colour (part_css)
                width="stretch",
            )
        states = ["" if kps is None else an.part_state(kps, i) for i in range(len(NAMES))]
        legend = " ".join(
            f'<span style="color:rgb{c};font-size:1.3em">&#9679;</span>&nbsp;{n}{f" ({s})" if s else ""}'
            for c, n, s in zip(PART_COLORS, NAMES, states)
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
        row[1].button(
            "Copy previous frame", key="ann_copy", on_click=copy_prev, shortcut="P", width="stretch"
        )
        st.button(
            "Clear frame", key="ann_clear_frame", on_click=clear_frame, width="stretch", disabled=kps is None
        )
        suggestion_tools(kps)
        with st.form("ann_type_point", clear_on_submit=False, border=True):
            st.caption("Or type the point in frame pixels (Enter places it)")
            c = st.columns(2)
            c[0].number_input("x", 0.0, float(image.width), float(image.width) / 2, key="ann_x", step=1.0)
            c[1].number_input("y", 0.0, float(image.height), float(image.height) / 2, key="ann_y", step=1.0)
            st.form_submit_button("Place point", on_click=on_typed_point)


frame_and_tools()

# thumbnails around the current frame (below it, so the frame itself fits the window)
lo = max(0, min(cur - 6, len(frames) - 12))
strip = st.columns(12)
for col, j in zip(strip, range(lo, min(len(frames), lo + 12))):
    with col, shown_errors():
        j_kps = labels.get(frames[j])
        mark = " ✓" if an.is_labeled(j_kps) else " ◐" if an.is_started(j_kps) else ""  # done / started
        st.image(thumbnail(paths[j], 72), caption=f"{'▶ ' if j == cur else ''}{j}{mark}")
        st.button(
            "open", key=f"ann_go_{j}", on_click=goto_frame, args=(j,), type="tertiary", disabled=j == cur
        )

# ----------------------------------------------------------------------------- what to label next


@st.cache_data(show_spinner="Ranking the frames by how unsure the model is about its parts...", max_entries=8)
def ranking(ckpt: str, stamp: float, spec_key: str, split: str, version: tuple) -> object:
    """``suggest_labels`` for a model and the dataset, computed again when the model or the labels change."""
    from ssn3d.label_next import suggest_labels

    del stamp, version  # cache keys only: the checkpoint's mtime and the label store's version
    chosen = load_dataset(DatasetSpec(**json.loads(spec_key)))
    return suggest_labels(
        load_extractor(Path(ckpt)), chosen, label_store(workspace(), chosen).frames(), split=split
    )


with st.expander("Label the most useful frame next", expanded=bool(S.get("ann_next_model"))):
    models = checkpoint_choices(ws)
    if split != "train":
        st.caption("Only training labels anchor the parts: choose the train split to rank its frames.")
    elif not models:
        st.caption("Ranking needs a model: the demo model (assets/demo_model.pt) or a run's checkpoint.")
    else:
        choice = st.selectbox(
            "Model",
            list(models),
            index=None,
            placeholder="choose a model to rank the frames",
            key="ann_next_model",
            help="frames whose part maps are spread out, or whose part peaks jump between frames, come first",
        )
        if choice is not None:
            ckpt = models[choice]
            result = None
            with shown_errors():
                result = ranking(str(ckpt), ckpt.stat().st_mtime, spec.key(), split, store.version())
            if result is not None and result.next_frame is None:
                st.success("Every scored frame is labeled.")
            elif result is not None:
                best = next(f for f in result.frames if f.key == result.next_frame)
                st.button(
                    f"Open the most useful frame: tracklet #{best.tracklet}",
                    key="ann_next_useful",
                    on_click=jump_to,
                    args=(best.key,),
                    type="primary",
                    icon=":material/my_location:",
                )
                st.caption(f"`{best.key}`: score {best.score:.2f}, {best.reason}.")
                st.dataframe(
                    [{"frame": k, "score": round(v, 3), "why": r} for k, v, r in result.ranking()[:10]],
                    hide_index=True,
                )

# ----------------------------------------------------------------------------- import and export

with st.expander("Import and export (COCO keypoints, OpenPose)"):
    from ssn3d.interchange import FrameIndex, export_coco, import_coco_files, import_openpose
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
            if kind == "COCO keypoints":  # one refused file is named and the files after it still import
                reports = import_coco_files(blobs, index, store, overwrite=overwrite)
            else:
                reports = [("", import_openpose(blobs, index, store, overwrite=overwrite))]
            for name, rep in reports:
                if isinstance(rep, str):
                    st.error(f"{name}: {rep}")
                    continue
                (st.success if rep.imported else st.warning)(
                    f"{name}: {rep.summary()}" if name else rep.summary()
                )
                if rep.skipped:
                    st.dataframe(
                        [{"item": i, "skipped because": r} for i, r in rep.skipped[:500]], hide_index=True
                    )
