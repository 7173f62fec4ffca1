"""Data: set up the demo, or open a dataset folder (MARS, iLIDS-VID, DukeMTMC-VideoReID, PRID2011, folder)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.common import (
    DATASET_NAMES,
    DatasetSpec,
    choose_dataset,
    current_spec,
    label_store,
    labels_of,
    load_dataset,
    shown_errors,
    thumbnail,
    workspace,
)
from app.demo import demo_ready, demo_with_progress_bar
from ssn3d.annotate import dataset_progress

st.title("SSN3D Studio")
st.caption(
    "Part-aligned video person re-identification: label a few anchor keypoints, train SSN3D, check that "
    "each part stays on its body part across frames, and browse retrieval results."
)
ws = workspace()


def parse_options(text: str) -> dict[str, str]:
    """``split=0, gallery=query+rest`` -> {"split": "0", "gallery": "query+rest"} (the loader coerces)."""
    out = {}
    for item in text.replace(",", " ").split():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"loader option {item!r} must look like key=value, e.g. split=0.")
        out[key.strip()] = value.strip()
    return out


left, right = st.columns([1, 1], gap="large")
with left:
    st.subheader("Demo")
    if demo_ready(ws):
        st.write("Synthetic walkers (16 people, 2 cameras) with example labels are ready.")
        if st.button("Use the demo dataset", key="use_demo", icon=":material/play_arrow:"):
            if demo_with_progress_bar():
                st.rerun()
    else:
        st.write(
            "Nothing configured yet? Draw a small synthetic-walkers dataset (about a thousand frames, a few "
            "seconds), with the true keypoints of two frames per tracklet pre-loaded as example labels."
        )
        if st.button("Set up the demo", key="setup_demo", type="primary", icon=":material/play_arrow:"):
            if demo_with_progress_bar():
                st.rerun()

with right:
    st.subheader("Open a dataset")
    with st.form("open_dataset"):
        name = st.selectbox(
            "Layout", DATASET_NAMES, key="ds_name", help="folder: ROOT/train/<pid>/c<cam>_<name>/"
        )
        root = st.text_input("Root folder", key="ds_root", placeholder=str(ws.data / "mars"))
        options = st.text_input("Loader options", key="ds_options", placeholder="e.g. split=0")
        opened = st.form_submit_button("Open", icon=":material/folder_open:")
    roots = ", ".join(f"`{r}`" for r in ws.allowed_roots)
    st.caption(f"Datasets are read from {roots} (the operator adds folders with SSN3D_DATA_ROOTS).")
    if opened:
        with shown_errors():
            spec = DatasetSpec(name, root.strip(), parse_options(options), Path(root.strip()).name)
            load_dataset(spec)  # raises the loader's message for a bad path or layout
            choose_dataset(spec)
            st.success(f"Opened {spec.label} ({name}).")

KINDS = {
    "walkers": "Walkers: a video re-id dataset (folder layout) with true keypoints",
    "pedestrians": "Pedestrian-128 style: single crops, a few labeled (for the Pedestrian 128 study)",
    "amber": "Amber-Abstract style: paintings with planted motifs (for the Amber study)",
}

with st.expander("Generate a synthetic set (walkers, Pedestrian-128 style, Amber-Abstract style)"):
    with st.form("synth_form"):
        c = st.columns([2, 2, 1, 1, 1])
        kind = c[0].selectbox("Kind", list(KINDS), format_func=KINDS.get, key="syn_kind")
        folder = c[1].text_input("Folder name under data/", "walkers-small", key="syn_name")
        count = c[2].number_input("Identities / crops / paintings", 2, 2000, 16, key="syn_count")
        frames = c[3].number_input("Frames per tracklet", 1, 200, 16, key="syn_frames")
        seed = c[4].number_input("Seed", 0, 10**6, 0, key="syn_seed")
        make = st.form_submit_button("Generate", icon=":material/auto_awesome:")
    if make:
        from ssn3d.data.synth.amber import generate_amber
        from ssn3d.data.synth.walkers import generate_pedestrian128, generate_walkers
        from ssn3d.serving.paths import resolve_inside

        bar = st.progress(0.0, text="Generating...")

        def step(done: int, total: int) -> None:
            bar.progress(min(1.0, done / max(1, total)), text=f"Generating: {done}/{total}")

        with shown_errors():
            out = resolve_inside(folder.strip(), (ws.data,), what="output folder")
            n, s = int(count), int(seed)
            if kind == "walkers":
                generate_walkers(
                    out, ids=n, frames=int(frames), tracklets_per_camera=2, seed=s, callback=step
                )
                choose_dataset(DatasetSpec("folder", str(out), {}, out.name))
                st.success(f"Generated {out.name} and opened it.")
            elif kind == "pedestrians":
                generate_pedestrian128(out, count=n, labeled=max(1, min(16, n - 1)), seed=s, callback=step)
                st.success(
                    f"Generated {out.name}: `python -m ssn3d study pedestrians --data data/{out.name}`."
                )
            else:
                generate_amber(out, count=n, seed=s, callback=step)
                st.success(f"Generated {out.name}: `python -m ssn3d study amber --data data/{out.name}`.")
        bar.empty()

st.divider()
spec = current_spec()
if spec is None:
    st.info("No dataset chosen yet: set up the demo or open a dataset folder above.")
    st.stop()
with shown_errors(stop=True):
    dataset = load_dataset(spec)
st.subheader(f"Current dataset: {spec.label or dataset.dataset_id}")
st.code(dataset.summary(), language=None)
store = label_store(ws, dataset)
with shown_errors():
    labels = labels_of(store)
    keys = [[dataset.relpath(p) for p in t.paths] for t in dataset.train]
    prog = dataset_progress(keys, labels)
    st.progress(
        prog.fraction,
        text=f"Anchor labels: {prog.labeled}/{prog.goal} frames ({prog.tracklets_done}/{prog.tracklets} training "
        f"tracklets at the goal of 2), stored in `{store.path.name}`",
    )
if dataset.train:
    st.caption("First training tracklets")
    cols = st.columns(8)
    for col, t in zip(cols, dataset.train[:8]):
        with col, shown_errors():
            st.image(thumbnail(t.paths[len(t.paths) // 2]), caption=f"person {t.pid}, cam {t.camid + 1}")
