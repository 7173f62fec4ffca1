"""Attention: does part i stay on the same body part in every frame? (the paper's point)

Paper, "Self-Separated Network", eq. (1)-(2): SSN makes N attention maps per frame, and "the
spatial features across the frames belonging to the same label express homogeneous information,
which, in fact, is the alignment operation". Pick a checkpoint and a tracklet: a grid of T frames x
N parts with each part's map over its frame, all parts at once (per-pixel argmax colours), each
part's peak as a track across frames, a stability score per part and, where keypoints are known,
the distance from each peak to its keypoint. Pictures and numbers: ``ssn3d.attention``.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.common import (
    checkpoint_choices,
    frame_keys,
    label_store,
    labels_of,
    load_extractor,
    read_frame,
    require_dataset,
    shown_errors,
    tracklet_label,
    workspace,
)
from ssn3d import attention as at
from ssn3d.keypoints import PARTS, empty_keypoints, resize_keypoints

S = st.session_state
ws = workspace()
st.title("Part alignment")
spec, dataset = require_dataset()
choices = checkpoint_choices(ws)
if not choices:
    st.warning(
        "No checkpoint is available: the demo model (assets/demo_model.pt) is not installed and no run has "
        "saved one yet. Train a run on the Train page (a tiny one takes a minute on a CPU), then pick its "
        "checkpoint here."
    )
    st.stop()


@st.cache_data(show_spinner="Computing attention maps...", max_entries=64)
def attention_maps(ckpt: str, stamp: float, paths: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(frames (T, H, W, 3) uint8 at the model's input size, maps (T, N, h, w)) of the chosen frames."""
    from pathlib import Path

    extractor = load_extractor(Path(ckpt))
    images = [read_frame(p) for p in paths]
    maps = np.asarray(extractor.attention(images), dtype=np.float32)
    return at.frames_to_array(images, extractor.image_size), maps


c = st.columns([2, 1, 2])
label = c[0].selectbox("Checkpoint", list(choices), key="att_ckpt")
ckpt = choices[label]
splits = [s for s, ts in dataset.splits().items() if ts]
split = c[1].selectbox("Split", splits, key="att_split")
tracklets = dataset.splits()[split]
idx = c[2].selectbox(
    "Tracklet",
    range(len(tracklets)),
    key="att_tracklet",
    format_func=lambda i: tracklet_label(tracklets[i], i),
)
t = tracklets[idx]
c = st.columns(3)
count = c[0].slider("Frames (T)", 1, min(16, len(t.paths)), min(8, len(t.paths)), key="att_frames")
opacity = c[1].slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="att_opacity")
view = c[2].segmented_control(
    "View", ["grid", "all parts", "tracks"], key="att_view", default="grid", required=True
)
picks = sorted({int(round(i)) for i in np.linspace(0, len(t.paths) - 1, count)})
paths = tuple(t.paths[i] for i in picks)
with shown_errors(stop=True):
    frames, maps = attention_maps(str(ckpt), ckpt.stat().st_mtime, paths)
n = maps.shape[1]
names = list(PARTS) if n == len(PARTS) else [f"part {i}" for i in range(n)]
h, w = frames.shape[1:3]

ROW_PX = 128  # shown height of one frame row: small crops are enlarged, large ones fit the page
if view == "grid":
    legend = ", ".join(f"{i + 1} {name}" for i, name in enumerate(names))
    st.caption(
        f"Rows: {len(picks)} frames; columns: {legend}. Jet colours: blue low, red at each map's peak."
    )
    grid = np.concatenate([at.part_header(n, w), at.overlay_grid(frames, maps, opacity)], axis=0)
    st.image(grid, width=round(grid.shape[1] * ROW_PX / h))
elif view == "all parts":
    st.caption("Each pixel in the colour of the part that claims it most (maps scaled to their own peak).")
    st.image(list(at.argmax_view(frames, maps, opacity)), width=round(w * 2 * ROW_PX / h))
else:
    st.caption("Each part's peak, frame by frame: a part that stays on its body part draws a flat line.")
    st.image(at.draw_tracks(frames, maps, scale=max(1.0, 2 * ROW_PX / h)))

# numbers: stability, and the peak-keypoint distance where keypoints exist (labels, else ground truth)
keys = [frame_keys(spec)[split][idx][i] for i in picks]
known = {}
with shown_errors():
    known = labels_of(label_store(ws, dataset))
    if dataset.ground_truth_path is not None:
        from ssn3d.annotations import AnnotationStore

        known = {**AnnotationStore(dataset.ground_truth_path).frames(), **known}
kps = (
    np.stack(
        [
            resize_keypoints(known[k], read_frame(p).size, (w, h)) if k in known else empty_keypoints(n)
            for k, p in zip(keys, paths)
        ]
    )
    if n == len(PARTS)
    else None
)
score = at.stability(maps)
rows = [{"part": names[i], "stability": round(float(score[i]), 3)} for i in range(n)]
if kps is not None and (kps[..., 2] >= 2).any():
    dist = at.peak_keypoint_distance(at.peak_points(maps, (w, h)), kps)
    for i, r in enumerate(rows):
        col = dist[:, i]
        r["peak to keypoint (px)"] = None if np.isnan(col).all() else round(float(np.nanmean(col)), 1)
        r["frames with keypoint"] = int((~np.isnan(col)).sum())
st.dataframe(
    rows,
    hide_index=True,
    key="att_scores",
    column_config={"stability": st.column_config.ProgressColumn("stability", min_value=0, max_value=1)},
)
st.caption(
    "Stability = 1 / (1 + mean distance, in feature cells, of the part's peak from its median peak across these "
    f"frames). Distances are in pixels of the {w} x {h} model input."
)
