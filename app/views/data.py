"""Data: set up the demo, open a dataset folder (MARS, iLIDS-VID, DukeMTMC-VideoReID, PRID2011, folder), or
make one from a camera video (people detected, tracked and cropped by ``ssn3d.data.video_import``)."""

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
    repair_notice,
    shown_errors,
    thumbnail,
    workspace,
)
from app.demo import demo_ready, demo_with_progress_bar
from ssn3d.labels.progress import dataset_progress

st.title("SSN3D Studio")
st.caption(
    "Part-aligned video person re-identification: label a few anchor keypoints, train SSN3D, check that "
    "each part stays on its body part across frames, and browse retrieval results."
)
ws = workspace()
S = st.session_state


def announce(text: str) -> None:
    """Keep ``text`` for the page's next run and rerun now, so the sidebar names the dataset just chosen
    (it is drawn before this page runs) and the message is not lost with the rerun."""
    S["data_msg"] = text
    st.rerun()


if S.get("data_msg"):
    st.success(S["data_msg"])


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
                announce("Using the demo walkers.")
    else:
        st.write(
            "Nothing configured yet? Draw a small synthetic-walkers dataset (about a thousand frames, a few "
            "seconds), with the true keypoints of two frames per tracklet pre-loaded as example labels."
        )
        if st.button("Set up the demo", key="setup_demo", type="primary", icon=":material/play_arrow:"):
            if demo_with_progress_bar():
                announce("Using the demo walkers.")

with right:
    st.subheader("Open a dataset")
    with st.form("open_dataset"):
        name = st.selectbox(
            "Layout", DATASET_NAMES, key="ds_name", help="folder: ROOT/train/<pid>/c<cam>_<name>/"
        )
        root = st.text_input("Root folder", key="ds_root", placeholder="e.g. mars (a folder in data/)")
        options = st.text_input("Loader options", key="ds_options", placeholder="e.g. split=0")
        opened = st.form_submit_button("Open", icon=":material/folder_open:")
    roots = ", ".join(f"`{r}`" for r in ws.allowed_roots)
    st.caption(f"Datasets are read from {roots} (the operator adds folders with SSN3D_DATA_ROOTS).")
    if opened:
        chosen = None
        with shown_errors():
            spec = DatasetSpec(name, root.strip(), parse_options(options), Path(root.strip()).name)
            load_dataset(spec)  # raises the loader's message for a bad path or layout
            choose_dataset(spec)
            chosen = spec
        if chosen is not None:
            announce(f"Opened {chosen.label} ({name}).")

KINDS = {
    "walkers": "Walkers: a video re-id dataset (folder layout) with true keypoints",
    "pedestrians": "Pedestrian-128 style: single crops, a few labeled (for the Pedestrian 128 study)",
    "amber": "Amber-Abstract style: paintings with planted motifs (for the Amber study)",
}

with st.expander("Generate a synthetic set (walkers, Pedestrian-128 style, Amber-Abstract style)"):
    with st.form("synth_form"):
        c = st.columns([2, 2, 1, 1, 1])
        kind = c[0].selectbox("Kind", list(KINDS), format_func=KINDS.get, key="syn_kind")
        folder = c[1].text_input("Folder name under data/", key="syn_name", placeholder="e.g. walkers-small")
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

        done = ""
        with shown_errors():
            if not folder.strip():
                raise ValueError("Name the folder to generate into under data/, e.g. walkers-small.")
            out = resolve_inside(folder.strip(), (ws.data,), what="output folder")
            n, s = int(count), int(seed)
            if kind == "walkers":
                generate_walkers(
                    out, ids=n, frames=int(frames), tracklets_per_camera=2, seed=s, callback=step
                )
                choose_dataset(DatasetSpec("folder", str(out), {}, out.name))
                done = f"Generated {out.name} and opened it: the other pages now work on it."
            elif kind == "pedestrians":
                generate_pedestrian128(out, count=n, labeled=max(1, min(16, n - 1)), seed=s, callback=step)
                done = f"Generated {out.name}: `python -m ssn3d study pedestrians --data data/{out.name}`."
            else:
                generate_amber(out, count=n, seed=s, callback=step)
                done = f"Generated {out.name}: `python -m ssn3d study amber --data data/{out.name}`."
        bar.empty()
        if done:
            announce(done)


def new_folder(stem: str) -> Path:
    """A folder under data/ named after the video that does not exist yet (``vtest``, ``vtest-2``, ...)."""
    base = "".join(c if c.isalnum() or c in "-_" else "-" for c in stem).strip("-") or "video"
    out, n = ws.data / base, 1
    while out.exists():
        n += 1
        out = ws.data / f"{base}-{n}"
    return out


with st.expander("Import a video: people tracked into tracklets, then labeled here"):
    from ssn3d.data.video_import import VIDEO_EXTS
    from ssn3d.serving.uploads import MAX_UPLOAD_MB

    with st.form("video_form"):
        video_path = st.text_input(
            "Video file inside the workspace or a data root",
            key="vid_path",
            placeholder="e.g. street.mp4 (a file in data/)",
        )
        upload = st.file_uploader(
            f"or upload one (up to {MAX_UPLOAD_MB} MB)", type=[e[1:] for e in VIDEO_EXTS], key="vid_upload"
        )
        c = st.columns(3)
        every = c[0].number_input("Every N-th frame", 1, 100, 1, key="vid_every")
        min_length = c[1].number_input("Shortest tracklet (crops)", 1, 1000, 8, key="vid_min")
        max_frames = c[2].number_input("Frames to read (0 = all)", 0, 10**7, 0, key="vid_max")
        go = st.form_submit_button("Import video", icon=":material/movie:")
    st.caption(
        "People are found by OpenCV's HOG detector and linked by ByteTrack; identities are track ids, "
        "not checked. The new dataset opens for labeling."
    )
    if go:
        from ssn3d.data.video_import import import_video
        from ssn3d.serving.uploads import check_upload_size

        bar = st.progress(0.0, text="Reading the video...")

        def frames_done(done: int, total: int) -> None:
            text = f"Detecting and tracking people: frame {done}" + (f" of {total}" if total else "")
            bar.progress(min(1.0, done / total) if total else 0.0, text=text)

        done = ""
        with shown_errors():
            if upload is not None:
                check_upload_size(upload, name=upload.name)
                video = ws.data / "uploads" / Path(upload.name).name
                video.parent.mkdir(parents=True, exist_ok=True)
                video.write_bytes(upload.getvalue())
            elif video_path.strip():
                video = Path(video_path.strip()).expanduser()
            else:
                raise ValueError("Give the path of a video file, or upload one.")
            result = import_video(
                video,
                new_folder(video.stem),
                every=int(every),
                min_length=int(min_length),
                max_frames=int(max_frames) or None,
                progress=frames_done,
                roots=ws.allowed_roots,
            )
            choose_dataset(DatasetSpec("folder", str(result.root), {}, result.root.name))
            crops = sum(result.tracklets.values())
            done = (
                f"Imported {len(result.tracklets)} tracklets ({crops} crops) from {video.name} into "
                f"data/{result.root.name} and opened it: label it on the Annotate page."
            )
        bar.empty()
        if done:
            announce(done)

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
    repaired = repair_notice(store)  # said once: the next read finds the journal clean
    if repaired:
        st.warning(repaired)
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
