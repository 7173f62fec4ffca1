"""The built-in demo: synthetic walkers, a few example labels, and the shipped demo model.

On a fresh machine there is no dataset and no checkpoint. ``prepare_demo`` generates the demo
walkers into ``data/demo-walkers`` (a few seconds, with a progress bar), copies the ground-truth
keypoints of two frames per training tracklet (the paper's semi-supervised budget) into the demo's
label store as examples, and selects the demo dataset for this session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import streamlit as st

from app.common import choose_dataset, demo_spec, label_store, load_dataset, shown_errors, workspace
from ssn3d.serving.workspace import Workspace

log = logging.getLogger(__name__)

EXAMPLES_PER_TRACKLET = 2  # paper: two labeled frames per tracklet


def demo_ready(ws: Workspace) -> bool:
    return (ws.demo_dataset / "dataset.json").is_file() and (ws.demo_dataset / "train").is_dir()


def preload_examples(ws: Workspace, dataset) -> int:
    """Copy ground-truth keypoints of 2 frames per training tracklet into the label store, once.

    Frames the user already labeled are never replaced. Returns the number of frames written.
    """
    from ssn3d.data.synth.labels import pick_labeled_frames
    from ssn3d.labels.store import AnnotationStore

    gt_path = dataset.ground_truth_path
    if gt_path is None:
        return 0
    store = label_store(ws, dataset)
    have = store.frames()
    if have:
        return 0  # the store already has labels: the examples were loaded before, or the user labeled
    gt = AnnotationStore(gt_path).frames()
    picked = pick_labeled_frames(gt, dataset.train, per_tracklet=EXAMPLES_PER_TRACKLET, root=dataset.root)
    store.update(picked, source="demo-example")
    log.info("Pre-loaded %d example labels into %s", len(picked), store.path)
    return len(picked)


def prepare_demo(progress: Callable[[int, int], None] | None = None) -> bool:
    """Generate the demo dataset when missing, pre-load the example labels, select it. True on success."""
    from ssn3d.data.synth.walkers import generate_demo

    ws = workspace()
    with shown_errors():
        if not demo_ready(ws):
            generate_demo(ws.demo_dataset, callback=progress)
        spec = demo_spec(ws)
        dataset = load_dataset(spec)
        preload_examples(ws, dataset)
        choose_dataset(spec)
        return True
    return False


def demo_with_progress_bar() -> bool:
    """``prepare_demo`` with a Streamlit progress bar."""
    bar = st.progress(0.0, text="Drawing the demo walkers...")

    def update(done: int, total: int) -> None:
        bar.progress(done / max(1, total), text=f"Drawing the demo walkers: {done}/{total} frames")

    ok = prepare_demo(update)
    bar.empty()
    return ok
