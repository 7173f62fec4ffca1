"""Attention: does part i stay on the same body part in every frame? (the paper's point)

Paper, "Self-Separated Network", eq. (1)-(2): SSN makes N attention maps per frame, and "the
spatial features across the frames belonging to the same label express homogeneous information,
which, in fact, is the alignment operation". Pick a checkpoint and a tracklet: a grid of T frames x
N parts with each part's map over its frame, all parts at once (per-pixel argmax colours), each
part's peak as a track across frames, a stability score per part and, where keypoints are known
(ground truth of generated data, else the label store), the distance from each peak to its keypoint
and part PCK beside its two baselines. Pictures: ``ssn3d.attention``; numbers: ``ssn3d.part_pck``.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
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
from ssn3d.keypoints import PART_COLORS, PARTS
from ssn3d.part_pck import alignment_summary

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
def attention_maps(
    ckpt: str, stamp: float, paths: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]], str, list[tuple[int, int, float]] | None]:
    """Frames (T, H, W, 3) uint8 at the model's input size, maps (T, N, h, w), the frames' own
    (width, height), the model's strategy and its facing head's answers (None without one), for the
    chosen frames."""
    from pathlib import Path

    extractor = load_extractor(Path(ckpt))
    images = [read_frame(p) for p in paths]
    maps, facing = extractor.attention_and_facing(images)
    sizes = [im.size for im in images]
    frames = at.frames_to_array(images, extractor.image_size)
    return frames, np.asarray(maps, dtype=np.float32), sizes, extractor.cfg.model.strategy, facing


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
    frames, maps, sizes, strategy, facing = attention_maps(str(ckpt), ckpt.stat().st_mtime, paths)
n = maps.shape[1]
names = list(PARTS) if n == len(PARTS) else [f"part {i}" for i in range(n)]
h, w = frames.shape[1:3]

if facing:  # the facing head (NOT in the paper) decided which limbs are called left and right
    said = [
        f"frames {picks[s]}-{picks[e - 1]}: " * (len(facing) > 1)
        + f"{'faces the camera' if p >= 0.5 else 'faces away'} ({max(p, 1 - p):.0%} sure)"
        for s, e, p in facing
    ]
    st.caption(
        "Left and right are named by this model's facing head: " + "; ".join(said) + ". If the person "
        "faces the other way, every left/right pair below is swapped, not misplaced."
    )

ROW_PX = 128  # shown height of one frame row: small crops are enlarged, large ones fit the page
GAP = 2  # white pixels between the grid's tiles (``overlay_grid``'s default)


def legend(names: list[str]) -> None:
    """Each part's colour and name, as the "all parts" and "tracks" pictures use them."""
    swatch = (
        '<span style="display:inline-block;width:0.9em;height:0.9em;margin:0 0.25em 0 0.75em;'
        'vertical-align:middle;border:1px solid #444;background:rgb{}"></span>{}'
    )
    st.markdown(
        "".join(swatch.format(tuple(PART_COLORS[i % len(PART_COLORS)]), n) for i, n in enumerate(names)),
        unsafe_allow_html=True,
    )


def grid_figure(grid: np.ndarray, names: list[str], frames: list[int], head: int) -> go.Figure:
    """The T x N grid as a picture with part names over its columns and frame numbers beside its rows;
    plotly scales it to the page's width, so a narrow window shrinks it instead of cutting it off."""
    fig = go.Figure(go.Image(z=grid, hoverinfo="skip"))
    fig.update_xaxes(
        side="top",
        tickvals=[j * (w + GAP) + w / 2 for j in range(len(names))],
        ticktext=names,
        showgrid=False,
    )
    fig.update_yaxes(
        tickvals=[head + i * (h + GAP) + h / 2 for i in range(len(frames))],
        ticktext=[f"frame {f}" for f in frames],
        showgrid=False,
    )
    scale = ROW_PX / h
    fig.update_layout(height=round(grid.shape[0] * scale) + 60, margin=dict(l=70, r=10, t=50, b=10))
    return fig


if view == "grid":
    st.caption(
        f"Rows: {len(picks)} frames of the tracklet; columns: the {n} parts, each over its own map. "
        "Jet colours: blue low, red at each map's peak; the strip on top is the part's colour elsewhere."
    )
    header = at.part_header(n, w)
    grid = np.concatenate([header, at.overlay_grid(frames, maps, opacity)], axis=0)
    st.plotly_chart(
        grid_figure(grid, names, picks, header.shape[0]), key="att_grid", config={"displayModeBar": False}
    )
elif view == "all parts":
    st.caption("Each pixel in the colour of the part that claims it most (maps scaled to their own peak).")
    legend(names)
    st.image(list(at.argmax_view(frames, maps, opacity)), width=round(w * 2 * ROW_PX / h))
else:
    st.caption("Each part's peak, frame by frame: a part that stays on its body part draws a flat line.")
    legend(names)
    st.image(at.draw_tracks(frames, maps, scale=max(1.0, 2 * ROW_PX / h)))

# numbers: stability, and where keypoints exist (ground truth, else labels) distance and part PCK
keys = [frame_keys(spec)[split][idx][i] for i in picks]
truth, labels = {}, {}
with shown_errors():
    labels = labels_of(label_store(ws, dataset))
    if dataset.ground_truth_path is not None:
        from ssn3d.labels.store import AnnotationStore

        truth = AnnotationStore(dataset.ground_truth_path).frames()
summary = alignment_summary(
    maps, keys, sizes, (w, h), ground_truth=truth, labels=labels, match=strategy == "unsupervised"
)
pck = summary["pck"]
table, overall = st.columns([3, 1])
table.dataframe(
    summary["rows"],
    hide_index=True,
    key="att_scores",
    column_config={"stability": st.column_config.ProgressColumn("stability", min_value=0, max_value=1)},
)
with overall:  # one score for the tracklet beside the per-part bars
    if pck is not None:
        st.metric(
            "Part PCK@0.1",
            f"{100 * pck['methods']['argmax']['pck@0.1']['overall']:.0f}%",
            help="share of visible keypoints whose part's peak lies within 0.1 x the crop height",
        )
    st.metric(
        "Stability", f"{summary['stability']:.2f}", help="mean over parts; 1: every peak stays on one cell"
    )
if pck is not None:
    m = pck["methods"]
    line = ", ".join(
        f"{label} {100 * m[key]['pck@0.1']['overall']:.0f}% / {100 * m[key]['pck@0.2']['overall']:.0f}%"
        for key, label in (
            ("argmax", "peak"),
            ("soft_argmax", "soft-argmax"),
            ("argmax_best_side", "peak with each frame's left and right read the better way"),
            ("mean_position", "mean position"),
            ("random", "random peak"),
        )
        if key in m
    )
    st.markdown(
        f"**Part PCK** over these {pck['frames']} frames, at 0.1 / 0.2 x crop height: {line}; "
        f"mean stability {summary['stability']:.2f}."
        + (" Parts are matched to keypoints (unsupervised)." if pck["matched"] else "")
    )
st.caption(
    "Stability = 1 / (1 + mean distance, in feature cells, of the part's peak from its median peak across these "
    f"frames). Distances are in pixels of the {w} x {h} model input. PCK: share of frames whose peak lies within "
    "0.1 (0.2) x the crop height of the visible keypoint; the mean position of these frames' keypoints and a "
    "peak in a random cell are the baselines."
)
