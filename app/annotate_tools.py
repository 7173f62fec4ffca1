"""The Annotate page's widget groups: its fixed chrome, the suggestion tools, the ranking and import panels.

Each group gathers its inputs, calls one ``ssn3d.labels`` function and renders the result; the page
(``app/views/annotate.py``) places them. Their callbacks are ``app.annotate_actions``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from app import annotate_actions as act
from app.common import (
    DatasetSpec,
    checkpoint_choices,
    label_store,
    load_dataset,
    load_extractor,
    shown_errors,
    workspace,
)
from ssn3d.keypoints import PART_COLORS
from ssn3d.labels import suggestions
from ssn3d.labels.pose import INSTALL_HINT, pose_available
from ssn3d.labels.store import AnnotationStore

S = st.session_state


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


def suggestion_tools(frame: str, kps: np.ndarray | None) -> None:
    """Suggest (this frame or the whole tracklet) and accept; disabled with the fix when no detector is here."""
    ready = pose_available()
    st.caption("Pose detector suggestions (hollow rings with their confidence)")
    row = st.columns(3)
    row[0].button(
        "Suggest",
        key="ann_suggest",
        on_click=act.suggest,
        args=(False,),
        shortcut="S",
        width="stretch",
        disabled=not ready,
        help="the detector's points for this frame (key S); they are not labels until accepted",
    )
    row[1].button(
        "Whole tracklet",
        key="ann_suggest_all",
        on_click=act.suggest,
        args=(True,),
        width="stretch",
        disabled=not ready,
        help="suggestions for every frame of this tracklet (about 0.1 s a frame)",
    )
    sug = S["ann_sugg"].get(frame)
    row[2].button(
        "Accept suggestions",
        key="ann_accept",
        on_click=act.accept,
        shortcut="A",
        width="stretch",
        type="primary" if sug is not None else "secondary",
        disabled=sug is None,
        help="the confident points become labels (key A); parts you placed stay; undo takes it back",
    )
    if not ready:
        st.caption(f"Suggestions need the offline pose detector: {INSTALL_HINT}, then reload the page.")
    elif sug is not None:
        st.caption("Suggested: " + suggestions.describe(kps, sug, act.NAMES))


@st.cache_data(show_spinner="Ranking the frames by how unsure the model is about its parts...", max_entries=8)
def _ranking(version: tuple, spec_key: str, split: str) -> Any:
    """``suggest_labels`` for a model and the dataset, computed again when the model or the labels change."""
    from ssn3d.labels.next import suggest_labels

    chosen = load_dataset(DatasetSpec(**json.loads(spec_key)))
    ckpt = Path(version[0])  # ranking_version: (checkpoint path, its mtime, the store's version)
    return suggest_labels(
        load_extractor(ckpt), chosen, label_store(workspace(), chosen).frames(), split=split
    )


def next_useful_panel(spec: DatasetSpec, split: str, store: AnnotationStore) -> None:
    """ "Label the most useful frame next": rank the split's frames with a chosen model, offer the best."""
    from ssn3d.labels.next import ranking_version

    with st.expander("Label the most useful frame next", expanded=bool(S.get("ann_next_model"))):
        models = checkpoint_choices(workspace())
        if split != "train":
            st.caption("Only training labels anchor the parts: choose the train split to rank its frames.")
            return
        if not models:
            st.caption("Ranking needs a model: the demo model (assets/demo_model.pt) or a run's checkpoint.")
            return
        choice = st.selectbox(
            "Model",
            list(models),
            index=None,
            placeholder="choose a model to rank the frames",
            key="ann_next_model",
            help="frames whose part maps are spread out, or whose part peaks jump between frames, come first",
        )
        if choice is None:
            return
        result = None
        with shown_errors():
            result = _ranking(ranking_version(models[choice], store), spec.key(), split)
        if result is not None and result.next_frame is None:
            st.success("Every scored frame is labeled.")
        elif result is not None:
            best = next(f for f in result.frames if f.key == result.next_frame)
            st.button(
                f"Open the most useful frame: tracklet #{best.tracklet}",
                key="ann_next_useful",
                on_click=act.jump_to,
                args=(best.key,),
                type="primary",
                icon=":material/my_location:",
            )
            st.caption(f"`{best.key}`: score {best.score:.2f}, {best.reason}.")
            st.dataframe(
                [{"frame": k, "score": round(v, 3), "why": r} for k, v, r in result.ranking()[:10]],
                hide_index=True,
            )


def import_export_panel(
    keys: dict[str, list[list[str]]], dataset: Any, store: AnnotationStore, *, has_labels: bool
) -> None:
    """Download the labels as COCO keypoints (when ``has_labels``); import COCO or OpenPose files into the store."""
    from ssn3d.labels.coco import export_coco
    from ssn3d.labels.formats import IMPORT_FORMATS, import_files
    from ssn3d.labels.frames import FrameIndex
    from ssn3d.serving.uploads import check_upload_size

    with st.expander("Import and export (COCO keypoints, OpenPose)"):
        index = FrameIndex([k for ks in keys.values() for t in ks for k in t], dataset.root)
        st.download_button(
            "Download COCO keypoints JSON",
            data=lambda: json.dumps(export_coco(store, index, name=dataset.dataset_id)),
            file_name=f"{dataset.dataset_id}-keypoints-coco.json",
            mime="application/json",
            key="ann_export",
            disabled=not has_labels,
            icon=":material/download:",
        )
        kind = st.radio("Import format", IMPORT_FORMATS, key="ann_import_kind", horizontal=True)
        files = st.file_uploader(
            "JSON files", type=["json"], accept_multiple_files=True, key="ann_import_files"
        )
        overwrite = st.checkbox("Replace frames already labeled", key="ann_import_overwrite")
        if not st.button("Import", key="ann_import", disabled=not files):
            return
        with shown_errors():
            blobs = {f.name: f.getvalue() for f in files if check_upload_size(f, name=f.name)}
            for name, rep in import_files(kind, blobs, index, store, overwrite=overwrite):
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
