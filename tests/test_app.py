"""The Streamlit app through ``streamlit.testing.v1.AppTest``: every page on an empty install, on the
demo and with a bad dataset path, and the flows AppTest can drive (forms, buttons, selections, uploads).

Each test gets its own workspace (conftest's ``workspace``, an ``SSN3D_HOME`` in ``tmp_path``); the
demo dataset is the session's tiny generated walkers copied in, so no test waits for the full demo.
A checkpoint, where a page needs one, is conftest's ``tiny_run``, trained for two steps by the engine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from ssn3d.labels.store import AnnotationStore
from ssn3d.serving.workspace import Workspace

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")
PAGES = ("data", "annotate", "train", "attention", "retrieval", "studies")
TIMEOUT = 60


def _app() -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.run()
    return at


def _page(at: AppTest, name: str) -> AppTest:
    at.switch_page(f"views/{name}.py").run()
    assert not at.exception, f"{name}: {at.exception}"
    return at


def _texts(at: AppTest) -> str:
    parts = [
        e.value
        for kind in ("error", "warning", "info", "success", "markdown", "caption")
        for e in getattr(at, kind)
    ]
    return "\n".join(str(p) for p in parts)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """The app sets one torch thread in its process (app.common.use_app_threads); restore it for the others."""
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture
def demo_home(workspace: Workspace, tiny_walkers: Path) -> Path:
    """A workspace whose demo dataset is already generated (the tiny walkers)."""
    shutil.copytree(tiny_walkers, workspace.demo_dataset)
    return workspace.home


def _demo_store(home: Path) -> AnnotationStore:
    return AnnotationStore(home / "annotations" / "folder-demo-walkers.json")


# ----------------------------------------------------------------------------- every page, three installs


def test_every_page_renders_on_an_empty_install(workspace: Workspace):
    at = _app()
    assert not at.exception
    assert at.button(key="setup_demo").label == "Set up the demo"
    for name in PAGES[1:]:
        _page(at, name)
        text = _texts(at)
        if name in ("annotate", "attention", "retrieval"):
            assert "No dataset yet" in text
    assert not (workspace.home / "data").exists()  # nothing is generated without asking


def test_demo_button_generates_the_demo_with_example_labels(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
):
    from ssn3d.data.synth import walkers

    tiny = dict(ids=4, cameras=2, tracklets_per_camera=1, frames=4, size=(64, 32))
    monkeypatch.setattr(walkers, "DEMO", tiny)
    at = _app()
    at.button(key="setup_demo").click().run()
    assert not at.exception and not at.error
    assert (workspace.home / "data" / "demo-walkers" / "dataset.json").is_file()
    labels = _demo_store(workspace.home).frames()
    train_tracklets = {Path(k).parent for k in labels}
    assert len(train_tracklets) == 4 and len(labels) == 8  # 2 ids x 2 cameras, 2 example frames each
    assert all(k.startswith("train/") for k in labels)
    assert "folder-demo-walkers" in at.code[0].value
    # the examples are loaded once: a second press keeps the user's labels as they are
    _demo_store(workspace.home).delete(sorted(labels)[0])
    at.button(key="use_demo").click().run()
    assert len(_demo_store(workspace.home).frames()) == 7


def test_demo_mode_prepares_the_demo_without_a_click(workspace: Workspace, monkeypatch: pytest.MonkeyPatch):
    from ssn3d.data.synth import walkers

    monkeypatch.setattr(
        walkers, "DEMO", dict(ids=4, cameras=2, tracklets_per_camera=1, frames=2, size=(32, 16))
    )
    monkeypatch.setenv("SSN3D_DEMO", "1")
    at = _app()
    assert not at.exception
    assert (workspace.home / "data" / "demo-walkers" / "train").is_dir()
    assert "demo walkers" in "\n".join(c.value for c in at.sidebar.caption)


def test_every_page_renders_on_the_demo(demo_home: Path):
    at = _app()
    assert "folder-demo-walkers" in at.code[0].value
    for name in PAGES[1:]:
        _page(at, name)
    _page(at, "attention")  # the shipped demo model makes the grid at once
    assert at.selectbox(key="att_ckpt").value == "demo model (assets/demo_model.pt)"
    assert len(at.get("plotly_chart")) == 1 and len(at.dataframe[0].value) == 9  # the grid and its scores


def test_attention_and_retrieval_say_when_no_checkpoint_exists(
    demo_home: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.syspath_prepend(str(Path(MAIN).parents[1]))
    import app.common

    monkeypatch.setattr(app.common, "DEMO_CHECKPOINT", demo_home / "no-demo-model.pt")
    at = _app()
    for name in ("attention", "retrieval"):
        _page(at, name)
        assert "No checkpoint is available" in _texts(at)


@pytest.mark.parametrize(
    ("root", "message"),
    [
        ("/", "outside the allowed folders"),
        ("data/../..", "contains '..'"),
        ("data/missing", "does not exist"),
        ("data/empty", "train"),
    ],
)
def test_a_bad_dataset_path_shows_the_loaders_message_and_the_app_keeps_working(
    demo_home: Path, root: str, message: str
):
    (demo_home / "data" / "empty").mkdir()
    at = _app()
    at.text_input(key="ds_root").set_value(root.replace("data/", str(demo_home / "data") + "/", 1))
    at.button[[b.label for b in at.button].index("Open")].click().run()
    assert not at.exception
    assert len(at.error) == 1 and message in at.error[0].value
    assert "Traceback" not in at.error[0].value
    # the session keeps working on the demo
    _page(at, "annotate")
    assert not at.error


def test_generate_synthetic_sets_from_the_data_page(workspace: Workspace):
    at = _app()

    def generate(kind: str, name: str, count: int) -> None:
        at.selectbox(key="syn_kind").set_value(kind)
        at.text_input(key="syn_name").set_value(name)
        at.number_input(key="syn_count").set_value(count)
        at.number_input(key="syn_frames").set_value(2)
        [b for b in at.button if b.label == "Generate"][0].click().run()
        assert not at.exception

    assert at.text_input(key="syn_name").value == ""  # the example name is a hint, not a value
    generate("walkers", "w2", 2)
    assert (workspace.home / "data" / "w2" / "train").is_dir() and not at.error
    assert "folder-w2" in at.code[0].value  # generated walkers are opened at once
    assert "Generated w2 and opened it" in at.success[0].value  # the message outlives the page's rerun
    assert "Dataset: **w2**" in "\n".join(c.value for c in at.sidebar.caption)  # the sidebar follows
    at.run()
    assert "Generated w2" in at.success[0].value
    generate("pedestrians", "p3", 3)
    assert len(list((workspace.home / "data" / "p3" / "images").iterdir())) == 3
    generate("amber", "a2", 2)
    assert (workspace.home / "data" / "a2" / "motifs.json").is_file()
    generate("walkers", "../escape", 2)
    assert "contains '..'" in at.error[0].value and not (workspace.home / "escape").exists()
    generate("walkers", " ", 2)
    assert "Name the folder" in at.error[0].value


def test_pages_explain_a_dataset_that_disappeared(demo_home: Path):
    at = _app()
    at.session_state["ssn3d_dataset"] = {
        "name": "folder",
        "root": str(demo_home / "data" / "gone"),
        "options": {},
        "label": "gone",
    }
    for name in PAGES:
        _page(at, name)
    _page(at, "annotate")
    assert "does not exist" in at.error[0].value


def test_every_page_is_behind_the_password_when_one_is_set(demo_home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SSN3D_PASSWORD", "correct horse battery")
    at = _app()
    for name in PAGES:
        at.switch_page(f"views/{name}.py").run()
        assert not at.exception
        assert at.text_input(key="ssn3d_password") is not None
        assert [b.label for b in at.button] == ["Enter"] and not at.title[1:] and not at.code  # the gate only
    at.text_input(key="ssn3d_password").set_value("correct horse battery")
    at.button[0].click().run()
    at.switch_page("views/data.py").run()
    assert not at.exception
    assert "Use the demo dataset" in [b.label for b in at.button]  # in: the pages work


# ----------------------------------------------------------------------------- annotate


def _place(at: AppTest, x: float, y: float) -> None:
    at.number_input(key="ann_x").set_value(x)
    at.number_input(key="ann_y").set_value(y)
    at.button[[b.label for b in at.button].index("Place point")].click().run()
    assert not at.exception


def test_annotation_flow_saves_every_change_at_once(demo_home: Path):
    at = _page(_app(), "annotate")
    at.selectbox(key="ann_tracklet").set_value(1).run()
    at.slider(key="ann_frame").set_value(3).run()
    frame = at.session_state["ann_ctx"]["frame"]
    assert frame.startswith("train/") and frame.endswith("000003.jpg")
    _place(at, 10.0, 6.0)
    kps = _demo_store(demo_home).get(frame)
    assert kps is not None and tuple(kps[0]) == (10.0, 6.0, 2.0)
    assert at.session_state["ann_part"] == 1  # the next unlabeled part is selected
    _place(at, 12.0, 20.0)
    at.button(key="ann_hidden").click().run()  # crotch: not visible
    kps = _demo_store(demo_home).get(frame)
    assert kps[1, 2] == 2 and kps[2, 2] == 1 and at.session_state["ann_part"] == 3
    # delete the body (a drag moves a point: the canvas, test_canvas_events_...), then undo brings it back
    at.segmented_control(key="ann_mode").set_value("delete").run()
    _place(at, 12.0, 19.0)
    assert _demo_store(demo_home).get(frame)[1, 2] == 0
    at.button(key="ann_undo_btn").click().run()
    assert _demo_store(demo_home).get(frame)[1, 2] == 2
    # a part button selects the part (keys 1-9 press the same buttons)
    at.button(key="ann_part_7").click().run()
    assert at.session_state["ann_part"] == 7
    # the progress of the tracklet counts the frame
    assert any("This tracklet: " in p.proto.text for p in at.get("progress"))


def _canvas_page(store: str, frame: str) -> None:
    """The Annotate page's canvas callback alone: AppTest cannot mount the canvas (it runs in a browser),
    so the events it would send are put in the session as ``value`` (and ``undo`` presses Undo)."""
    import streamlit as st

    from app import annotate_actions as act
    from ssn3d.labels import editing

    S = st.session_state
    S.setdefault("ann_undo", editing.UndoStack())
    S.setdefault("ann_part", 0)
    S.setdefault("ann_mode", "place")
    S["ann_store"], S["ann_ctx"] = store, {"frame": frame, "size": (32, 64), "scale": 4.0}
    if S.get("value") is not None:
        act.canvas_events(S.pop("value"))
    if S.pop("undo", False):
        act.undo()


def _event(seq: int, kind: str, frame: str, x: float, y: float, part: int | None = None) -> dict:
    ev = {"seq": seq, "kind": kind, "frame": frame, "x": x, "y": y}
    return ev if part is None else {**ev, "part": part}


def test_canvas_events_are_applied_once_through_the_edit_path_and_a_drag_keeps_the_selection(tmp_path: Path):
    store, frame = AnnotationStore(tmp_path / "labels.json"), "train/0001/c1_t00/000003.jpg"
    at = AppTest.from_function(_canvas_page, args=(str(store.path), frame), default_timeout=TIMEOUT)
    clicks = [_event(1, "click", frame, 10.0, 6.0), _event(2, "click", frame, 12.0, 20.0)]
    drag = _event(3, "move", frame, 14.0, 8.0, part=0)
    at.session_state["value"] = {"token": "tab1", "events": [*clicks, drag]}
    at.run()
    assert not at.exception
    kps = store.get(frame)
    assert tuple(kps[0]) == (14.0, 8.0, 2.0) and tuple(kps[1]) == (12.0, 20.0, 2.0)
    assert at.session_state["ann_part"] == 2  # the drag did not change the part to place next
    assert at.session_state["ann_canvas_ack"] == {"token": "tab1", "seq": 3}
    assert at.session_state["ann_msg"] == "moved head"
    # the browser sends its unanswered events again with a new one: the old ones are not applied twice;
    # an event made on another frame is dropped; a drag of a part that has no point is refused
    other = _event(4, "click", "train/0001/c1_t00/000004.jpg", 3.0, 3.0)
    gone = _event(5, "move", frame, 5.0, 5.0, part=6)
    at.session_state["value"] = {"token": "tab1", "events": [*clicks, drag, other, gone]}
    at.run()
    assert not at.exception and set(store.frames()) == {frame}
    np.testing.assert_array_equal(store.get(frame), kps)
    assert at.session_state["ann_canvas_ack"]["seq"] == 5 and "no point" in at.session_state["ann_msg"]
    # a drag is an edit like any other: Undo puts the head back where it was clicked
    at.session_state["undo"] = True
    at.run()
    assert tuple(store.get(frame)[0]) == (10.0, 6.0, 2.0) and tuple(store.get(frame)[1]) == (12.0, 20.0, 2.0)


def test_take_events_skips_what_was_handled_and_what_is_malformed():
    from app.frame_canvas import take_events

    f = "train/a.jpg"
    good = [_event(1, "click", f, 1.0, 2.0), _event(2, "move", f, 3, 4, part=8)]
    bad = [
        _event(3, "move", f, 1.0, 1.0, part=9),  # no such part
        _event(4, "click", f, float("nan"), 1.0),
        _event(5, "paint", f, 1.0, 1.0),
        {"seq": True, "kind": "click", "frame": f, "x": 1.0, "y": 1.0},
        "not an event",
    ]
    events, ack = take_events({"token": "a", "events": good + bad}, None)
    assert [e["kind"] for e in events] == ["click", "move"] and events[1]["part"] == 8
    assert ack == {"token": "a", "seq": 5}  # the malformed ones count as handled: never offered again
    assert take_events({"token": "a", "events": good}, ack) == ([], ack)
    again, fresh = take_events({"token": "b", "events": good[:1]}, ack)  # the canvas mounted anew
    assert len(again) == 1 and fresh == {"token": "b", "seq": 1}
    assert take_events(None, ack) == ([], ack) and take_events({"events": good}, None) == ([], None)


def _widget_faces(at: AppTest) -> dict:
    """What the browser keys a widget's value on: option labels, button labels, slider bounds."""
    faces = {f"select {w.key}": list(w.options) for w in at.selectbox}
    faces.update({f"button {w.key}": w.label for w in at.button})
    faces.update({f"slider {w.key}": (w.min, w.max) for w in at.slider})
    return faces


def test_annotate_widgets_do_not_change_their_labels_while_a_frame_is_labeled(demo_home: Path):
    """The browser sends back a selectbox's option label; one that carries a live count stops matching once
    a frame is labeled, and the tracklet resets to #0 (labels then land on its frame 0)."""
    at = _page(_app(), "annotate")
    at.selectbox(key="ann_tracklet").set_value(2).run()
    at.slider(key="ann_frame").set_value(3).run()
    faces = _widget_faces(at)
    frame = at.session_state["ann_ctx"]["frame"]
    for x, y in ((10.0, 6.0), (12.0, 20.0)):
        _place(at, x, y)
    at.button(key="ann_hidden").click().run()
    assert _widget_faces(at) == faces
    assert at.session_state["ann_ctx"]["frame"] == frame and at.session_state["ann_tracklet"] == 2
    assert "body (placed)" in _texts(at) and "crotch (hidden)" in _texts(at)  # the live state, beside


def _label_whole_frame(store: AnnotationStore, frame: str) -> None:
    kps = np.zeros((9, 3), dtype=np.float32)
    kps[:, :2], kps[:, 2] = 4.0, 2.0
    store.set(frame, kps)


def test_next_unlabeled_frame_and_tracklet_buttons(demo_home: Path):
    store = _demo_store(demo_home)
    at = _page(_app(), "annotate")
    frames = at.session_state["ann_ctx"]["tracklets"]
    for f in frames[0][:2] + frames[1][:1]:  # tracklet #0 reaches its goal, #1 has one frame of two
        _label_whole_frame(store, f)
    _place(at, 5.0, 5.0)  # frame 0 of #0 is done already: the head moves, the frame stays done
    at.button(key="ann_next_open").click().run()
    assert at.session_state["ann_ctx"]["index"] == 2  # frames 0 and 1 are done
    assert "This tracklet: 2/2 labeled frames" in at.get("progress")[-1].proto.text
    at.button(key="ann_next_tracklet").click().run()
    assert at.session_state["ann_tracklet"] == 1 and at.session_state["ann_ctx"]["index"] == 1
    # a frame with a few points is started, not labeled: the tracklet's count stays at 1
    _place(at, 6.0, 6.0)
    assert "1/2 labeled frames" in at.get("progress")[-1].proto.text and "1 started" in _texts(at) + "".join(
        p.proto.text for p in at.get("progress")
    )


def test_the_place_is_in_the_url_and_a_reload_opens_it(demo_home: Path, tmp_path: Path):
    from ssn3d.data.synth.walkers import generate_walkers

    other = generate_walkers(
        demo_home / "data" / "other", ids=4, cameras=2, frames=4, size=(64, 32), seed=3, progress=False
    )
    at = _app()
    at.text_input(key="ds_root").set_value(str(other))
    at.button[[b.label for b in at.button].index("Open")].click().run()
    at = _page(at, "annotate")
    at.selectbox(key="ann_tracklet").set_value(2).run()
    at.slider(key="ann_frame").set_value(3).run()
    url = dict(at.query_params)
    assert url["tracklet"] == "2" and url["frame"] == "3" and url["dataset"] == str(other)
    # a reload: a new session with only the URL
    fresh = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    for k, v in url.items():
        fresh.query_params[k] = v
    fresh.run()
    fresh = _page(fresh, "annotate")
    assert fresh.session_state["ann_tracklet"] == 2 and fresh.session_state["ann_ctx"]["index"] == 3
    assert fresh.session_state["ann_ctx"]["frame"].endswith("000003.jpg")
    assert "other" in "\n".join(c.value for c in fresh.sidebar.caption)  # not the demo
    # another page and back: Streamlit drops the widgets' state meanwhile, the place is kept anyway
    _page(_page(fresh, "data"), "annotate")
    assert fresh.session_state["ann_tracklet"] == 2 and fresh.session_state["ann_ctx"]["index"] == 3


def test_zoom_enlarges_the_frame_and_clicks_still_land_in_frame_pixels(demo_home: Path):
    at = _page(_app(), "annotate")
    base = at.session_state["ann_ctx"]["scale"]
    at.segmented_control(key="ann_zoom").set_value(2).run()
    assert at.session_state["ann_ctx"]["scale"] == 2 * base
    assert f"shown at {2 * base:g}x" in _texts(at)
    frame = at.session_state["ann_ctx"]["frame"]
    _place(at, 10.0, 6.0)
    assert tuple(_demo_store(demo_home).get(frame)[0]) == (10.0, 6.0, 2.0)


def test_copy_previous_frame_and_clear_frame(demo_home: Path):
    store = _demo_store(demo_home)
    at = _page(_app(), "annotate")
    at.slider(key="ann_frame").set_value(1).run()
    first = at.session_state["ann_ctx"]["frames"][0]
    kps = np.zeros((9, 3), dtype=np.float32)
    kps[0] = (5, 5, 2)
    store.set(first, kps)
    at.button(key="ann_copy").click().run()
    frame = at.session_state["ann_ctx"]["frame"]
    assert tuple(store.get(frame)[0]) == (5.0, 5.0, 2.0)
    at.button(key="ann_clear_frame").click().run()
    assert store.get(frame) is None and store.get(first) is not None


def test_a_damaged_label_file_is_reported_and_not_overwritten(demo_home: Path):
    path = demo_home / "annotations" / "folder-demo-walkers.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    at = _page(_app(), "annotate")
    assert "cannot be read as JSON" in at.error[0].value
    assert path.read_text() == "{not json"


def test_import_coco_reports_what_was_imported_and_skipped(demo_home: Path):
    at = _page(_app(), "annotate")
    frames = at.session_state["ann_ctx"]["frames"]
    flat = []
    for i in range(17):
        flat += [3.0 + i, 4.0 + i, 2]
    doc = {
        "images": [{"id": 1, "file_name": frames[0]}, {"id": 2, "file_name": "nowhere/zzz.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "keypoints": flat},
            {"id": 2, "image_id": 2, "category_id": 1, "keypoints": flat},
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    at.file_uploader(key="ann_import_files").set_value(
        ("coco.json", json.dumps(doc).encode(), "application/json")
    )
    at.run()
    at.button(key="ann_import").click().run()
    assert not at.exception
    assert "imported 1 frame" in at.success[0].value and "skipped 1" in at.success[0].value
    assert _demo_store(demo_home).get(frames[0]) is not None
    # a malformed file is refused with one sentence, and nothing saved is touched
    before = (demo_home / "annotations" / "folder-demo-walkers.json").read_bytes()
    at.file_uploader(key="ann_import_files").set_value(("bad.json", b"[1, 2", "application/json"))
    at.run()
    at.button(key="ann_import").click().run()
    assert not at.exception and len(at.error) == 1
    assert (demo_home / "annotations" / "folder-demo-walkers.json").read_bytes() == before


def test_import_openpose_reports_frames_it_cannot_match(demo_home: Path):
    at = _page(_app(), "annotate")
    flat = []
    for i in range(25):
        flat += [5.0 + i, 6.0 + i, 0.9]
    doc = json.dumps({"people": [{"pose_keypoints_2d": flat}]}).encode()
    at.radio(key="ann_import_kind").set_value("OpenPose").run()
    # the walkers' frame names repeat in every tracklet folder: a bare file name cannot say which one
    at.file_uploader(key="ann_import_files").set_value(("000001_keypoints.json", doc, "application/json"))
    at.run()
    at.button(key="ann_import").click().run()
    assert not at.exception
    assert "imported 0 frame" in at.warning[0].value and "ambiguous" in at.warning[0].value
    assert at.dataframe[-1].value["item"].tolist() == ["000001_keypoints.json"]


def test_suggest_is_disabled_with_how_to_enable_it_when_the_detector_is_missing(
    demo_home: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("SSN3D_POSE_PYTHON", str(demo_home / "no-such-python"))
    at = _page(_app(), "annotate")
    assert at.button(key="ann_suggest").disabled and at.button(key="ann_suggest_all").disabled
    assert at.button(key="ann_accept").disabled
    assert "bash scripts/install-pose.sh" in _texts(at)


def test_a_torn_label_journal_is_cut_and_said_once(demo_home: Path):
    store = _demo_store(demo_home)
    at = _page(_app(), "annotate")
    frames = at.session_state["ann_ctx"]["frames"]
    for f in frames[:4]:
        _label_whole_frame(store, f)
    journal = store.journal
    journal.write_bytes(journal.read_bytes()[:-40])  # a save cut short (disk full, a kill)
    at.run()
    assert len(at.warning) == 1 and "bytes of an interrupted save" in at.warning[0].value
    saved = AnnotationStore(store.path).frames()
    assert all(f in saved for f in frames[:3]) and frames[3] not in saved  # every complete record kept
    _place(at, 5.0, 5.0)  # a save after the repair writes a clean record (frame 0's head)
    at.button(key="ann_next").click().run()
    saved = AnnotationStore(store.path).frames()
    assert not at.warning and len(saved) == 3 and tuple(saved[frames[0]][0]) == (5.0, 5.0, 2.0)


def test_a_typed_point_on_the_frame_border_lands_inside_the_frame(demo_home: Path):
    """The fields stop at the frame's size; the library's rule (``handle_click(frame_size=...)``) puts a
    point on the border a hair inside, so it anchors a window of this frame (far outside is refused there)."""
    at = _page(_app(), "annotate")
    frame = at.session_state["ann_ctx"]["frame"]
    width, height = at.session_state["ann_ctx"]["size"]
    _place(at, float(width), float(height))
    x, y, v = _demo_store(demo_home).get(frame)[0]
    assert v == 2 and width - 0.02 < x < width and height - 0.02 < y < height


def test_label_the_most_useful_frame_next_jumps_to_the_ranked_frame(demo_home: Path):
    from app.common import DEMO_CHECKPOINT

    if not DEMO_CHECKPOINT.is_file():
        pytest.skip("the demo model assets/demo_model.pt is not installed")
    at = _page(_app(), "annotate")
    at.selectbox(key="ann_next_model").set_value("demo model (assets/demo_model.pt)").run()
    assert not at.exception, at.exception
    ranked = at.dataframe[0].value
    assert len(ranked) > 0 and (ranked["score"].diff().dropna() <= 0).all()  # best first
    at.button(key="ann_next_useful").click().run()
    assert not at.exception
    frame = at.session_state["ann_ctx"]["frame"]
    caption = next(c.value for c in at.caption if "score" in c.value and "entropy" in c.value)
    assert f"`{frame}`" in caption  # the frame opened is the one the reason is about
    assert at.session_state["ann_ctx"]["frames"].index(frame) == at.session_state["ann_ctx"]["index"]


# ----------------------------------------------------------------------------- real footage (vtest.avi)

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")  # Debian's opencv-doc (scripts/test.sh)


@pytest.fixture(scope="session")
def vtest_tracklets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tracklets of people walking past one real camera: the first 60 frames of vtest.avi."""
    if not VTEST.is_file():
        pytest.skip(f"{VTEST} is missing: apt-get install opencv-doc")
    pytest.importorskip("trackers", reason="the video extra is not installed (pip install -e .[video])")
    import cv2

    from ssn3d.data.video_import import import_video

    cv2.setNumThreads(1)
    out = tmp_path_factory.mktemp("vtest") / "vtest"
    return import_video(VTEST, out, every=2, max_frames=60, min_length=5).root


@pytest.fixture
def vtest_home(demo_home: Path, vtest_tracklets: Path) -> AppTest:
    """The app with the imported vtest tracklets opened on the Data page (as a user would)."""
    root = demo_home / "data" / "vtest"
    shutil.copytree(vtest_tracklets, root)
    at = _app()
    at.text_input(key="ds_root").set_value(str(root))
    at.button[[b.label for b in at.button].index("Open")].click().run()
    assert not at.exception and at.session_state["ssn3d_dataset"]["root"] == str(root)
    return at


def test_suggestions_on_real_frames_become_labels_only_when_accepted(vtest_home: AppTest, demo_home: Path):
    from ssn3d.labels.pose import pose_available

    if not pose_available():
        pytest.skip("the pose detector is not installed: bash scripts/install-pose.sh")
    at = _page(vtest_home, "annotate")
    store = AnnotationStore(demo_home / "annotations" / "folder-vtest.json")
    at.button(key="ann_suggest_all").click().run()  # the whole tracklet in one detector start
    assert not at.exception, at.exception
    suggested = at.session_state["ann_sugg"]
    assert len(suggested) >= 1 and store.frames() == {}  # suggestions are not labels
    frames = at.session_state["ann_ctx"]["frames"]
    j = next(i for i, f in enumerate(frames) if f in suggested)
    at.slider(key="ann_frame").set_value(j).run()
    frame = frames[j]
    sug = np.asarray(suggested[frame]["keypoints"])
    assert "Suggested: head" in _texts(at)  # each open part with its confidence
    # correct the head first with a usual click, then accept the rest
    _place(at, 10.0, 12.0)
    at.button(key="ann_accept").click().run()
    kps = store.get(frame)
    assert tuple(kps[0]) == (10.0, 12.0, 2.0)  # the correction stays
    confident = [i for i in range(1, 9) if sug[i, 2] == 2]
    np.testing.assert_allclose(kps[confident], sug[confident], atol=0.006)  # the store keeps 2 decimals
    assert (kps[[i for i in range(1, 9) if i not in confident], 2] == 0).all()  # unsure ones are left open
    assert store.read()["frames"][frame]["source"] == "pose-accepted"
    # undo takes the accept back, not the correction
    at.button(key="ann_undo_btn").click().run()
    kps = store.get(frame)
    assert tuple(kps[0]) == (10.0, 12.0, 2.0) and (kps[1:, 2] == 0).all()


def test_the_attention_page_draws_the_demo_models_maps_over_real_frames(vtest_home: AppTest):
    from app.common import DEMO_CHECKPOINT

    if not DEMO_CHECKPOINT.is_file():
        pytest.skip("the demo model assets/demo_model.pt is not installed")
    at = _page(vtest_home, "attention")
    at.selectbox(key="att_ckpt").set_value("demo model (assets/demo_model.pt)").run()
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 1  # the T x N grid over the real crops, drawn as one picture
    grid = json.loads(charts[0].proto.spec)
    assert grid["data"] and grid["data"][0]["type"] == "image"  # the overlay itself was sent
    assert "vtest" in "\n".join(c.value for c in at.sidebar.caption)


# ----------------------------------------------------------------------------- train


def _fake_run(home: Path, name: str, state: str, error: str | None = None) -> Path:
    from ssn3d.runs.metrics import append_metrics
    from ssn3d.runs.status import write_status

    run = home / "runs" / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("model: {strategy: semi}\n")
    write_status(
        run,
        {
            "state": state,
            "pid": None,
            "started": 1.0,
            "heartbeat": 1.0,
            "progress": 0.5,
            "step": 4,
            "total_steps": 8,
            "eta_s": None,
            "error": error,
            "best_map": 0.25,
        },
    )
    for step in (1, 2, 3, 4):
        append_metrics(
            run,
            {
                "kind": "train",
                "step": step,
                "epoch": 0,
                "loss": 2.0 / step,
                "triplet": 1.0 / step,
                "ssn": 1.0 / step,
            },
        )
    append_metrics(run, {"kind": "eval", "step": 4, "epoch": 1, "mAP": 0.25, "top1": 0.5})
    (run / "train.log").write_text("line one\nthe last line of the log\n")
    return run


def test_train_form_launches_one_run_per_form_and_double_clicks_do_not_start_two(demo_home: Path):
    from ssn3d.runs.folder import RunBusyError

    launched: list[tuple[Path, object]] = []

    def fake_launch(run_dir, *, config, workspace, **_):
        if any(d == Path(run_dir) for d, _ in launched):
            raise RunBusyError(f"run {Path(run_dir).name} is already running")
        launched.append((Path(run_dir), config))
        return {"state": "starting"}

    at = _page(_app(), "train")
    at.selectbox(key="tr_strategy").set_value("unsupervised")
    at.number_input(key="tr_lambda").set_value(0.05)
    at.number_input(key="tr_epochs").set_value(3)
    at.number_input(key="tr_max_steps").set_value(5)
    with mock.patch("ssn3d.runs.launch.launch_run", side_effect=fake_launch):
        launch = [b for b in at.button if b.label == "Launch"][0]
        launch.click().run()
        assert not at.exception and "Launched" in at.success[0].value
        [b for b in at.button if b.label == "Launch"][0].click().run()  # the double click
        assert not at.exception and "already running" in at.info[0].value
        assert len(launched) == 1
        run_dir, cfg = launched[0]
        assert run_dir.parent == demo_home / "runs"
        assert cfg.model.strategy == "unsupervised" and cfg.loss.ssn_lambda == pytest.approx(0.05)
        assert cfg.train.epochs == 3 and cfg.train.max_steps == 5
        assert Path(cfg.data.root) == (demo_home / "data" / "demo-walkers").resolve()
        assert cfg.data.annotations.endswith("folder-demo-walkers.json")
        # a new form gives a new run
        at.button(key="tr_new_token").click().run()
        [b for b in at.button if b.label == "Launch"][0].click().run()
        assert len(launched) == 2 and launched[1][0] != launched[0][0]


def test_train_form_refuses_before_launch_in_the_forms_words(demo_home: Path):
    launched = []

    def fake_launch(run_dir, *, config, workspace, **_):
        launched.append(config)
        return {"state": "starting"}

    at = _page(_app(), "train")
    with mock.patch("ssn3d.runs.launch.launch_run", side_effect=fake_launch):
        # more identities per batch than the training split holds: the sampler's rule, before any process
        at.number_input(key="tr_p").set_value(64)
        [b for b in at.button if b.label == "Launch"][0].click().run()
        assert not at.exception and not launched
        assert (
            at.error[0].value.startswith("Not launched:") and "'P identities per batch'" in at.error[0].value
        )
        # supervised without labels (this workspace has none): the loader's rule
        at.number_input(key="tr_p").set_value(2)
        at.selectbox(key="tr_strategy").set_value("supervised")
        [b for b in at.button if b.label == "Launch"][0].click().run()
        assert not at.exception and not launched
        assert "'Strategy'=supervised needs keypoints" in at.error[0].value
        # N parts follows the strategy: 6 parts under unsupervised, then semi in the same submit -> 9
        at.selectbox(key="tr_strategy").set_value("unsupervised").run()
        assert not at.number_input(key="tr_parts").disabled  # unlocked at once, before any Launch
        at.number_input(key="tr_parts").set_value(6)
        at.selectbox(key="tr_strategy").set_value("semi").run()
        assert at.number_input(key="tr_parts").disabled and at.number_input(key="tr_parts").value == 9
        [b for b in at.button if b.label == "Launch"][0].click().run()
    assert not at.exception and not at.error and len(launched) == 1
    assert launched[0].model.strategy == "semi" and launched[0].model.num_parts == 9


def test_train_forms_part_finding_aids_switch_the_four_levers_for_semi_runs_only(demo_home: Path):
    """One tick turns on PositionCE, the position prior and the facing head (NOT in the paper); without
    labeled training frames the prior is refused before launch, in the form's words; unsupervised runs
    cannot have them."""
    launched = []

    def fake_launch(run_dir, *, config, workspace, **_):
        launched.append(config)
        return {"state": "starting"}

    at = _page(_app(), "train")
    assert not at.checkbox(key="tr_aids").value  # the base config is the paper's
    with mock.patch("ssn3d.runs.launch.launch_run", side_effect=fake_launch):
        at.checkbox(key="tr_aids").check()
        [b for b in at.button if b.label == "Launch"][0].click().run()
        assert not at.exception and not launched
        assert "'Part-finding aids'=1 counts where parts lie" in at.error[0].value
        truth = AnnotationStore(demo_home / "data" / "demo-walkers" / "keypoints.json").frames()
        _demo_store(demo_home).update({k: v for k, v in truth.items() if k.startswith("train/")})
        [b for b in at.button if b.label == "Launch"][0].click().run()
        assert not at.exception and len(launched) == 1
        cfg = launched[0]
        assert cfg.loss.position_ce == 1.0 and cfg.model.position_prior == 1.0
        assert cfg.model.facing and cfg.loss.facing == 1.0
        at.selectbox(key="tr_strategy").set_value("unsupervised").run()
        assert at.checkbox(key="tr_aids").disabled and not at.checkbox(key="tr_aids").value
        at.button(key="tr_new_token").click().run()
        [b for b in at.button if b.label == "Launch"][0].click().run()
    assert not at.exception and len(launched) == 2
    assert launched[1].loss.position_ce == 0.0 and not launched[1].model.facing


def test_launch_after_the_forms_run_ended_starts_a_new_run(demo_home: Path):
    from ssn3d.runs.status import write_status

    launched: list[Path] = []

    def fake_launch(run_dir, *, config, workspace, **_):
        Path(run_dir).mkdir(parents=True)
        write_status(run_dir, {"state": "starting", "pid": None, "started": 2.0, "progress": 0.0})
        launched.append(Path(run_dir))
        return {"state": "starting"}

    at = _page(_app(), "train")
    with mock.patch("ssn3d.runs.launch.launch_run", side_effect=fake_launch):
        [b for b in at.button if b.label == "Launch"][0].click().run()
        assert len(launched) == 1 and "Launched" in at.success[0].value
        write_status(launched[0], {"state": "done", "pid": None, "started": 2.0, "progress": 1.0})
        [b for b in at.button if b.label == "Launch"][0].click().run()
    assert not at.exception and len(launched) == 2 and launched[1] != launched[0]
    assert "already running" not in _texts(at) and launched[1].name in at.success[0].value
    # "New run" is offered beside the launch notice and clears it
    at.button(key="tr_new_token").click().run()
    assert not at.exception and not at.success


def test_train_form_takes_weights_only_from_inside_the_workspace(demo_home: Path, tmp_path: Path):
    launched = []

    def fake_launch(run_dir, *, config, workspace, **_):
        launched.append(config)
        return {"state": "starting"}

    outside = tmp_path.parent / "outside-weights.pth"
    outside.write_bytes(b"not tensors")
    inside = demo_home / "runs" / "old" / "checkpoints" / "best.pt"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(b"a checkpoint")
    at = _page(_app(), "train")
    with mock.patch("ssn3d.runs.launch.launch_run", side_effect=fake_launch):
        at.text_input(key="tr_weights").set_value(str(outside))
        [b for b in at.button if b.label == "Launch"][0].click().run()
        assert not at.exception and not launched
        assert "backbone weights file" in at.error[0].value and "inside" in at.error[0].value
        at.text_input(key="tr_weights").set_value("runs/old/checkpoints/best.pt")  # relative: the workspace
        [b for b in at.button if b.label == "Launch"][0].click().run()
    assert not at.exception and len(launched) == 1
    assert Path(launched[0].model.weights) == inside.resolve()


def test_train_form_offers_each_gpu_and_one_process_per_gpu(demo_home: Path):
    launched = []

    def fake_launch(run_dir, *, config, workspace, nproc=1, **_):
        launched.append((config.train.device, nproc))
        return {"state": "starting"}

    with (
        mock.patch("torch.cuda.is_available", return_value=True),
        mock.patch("torch.cuda.device_count", return_value=2),
        mock.patch("ssn3d.runs.launch.launch_run", side_effect=fake_launch),
    ):
        at = _page(_app(), "train")
        assert at.selectbox(key="tr_device").options == ["auto", "cpu", "cuda", "cuda:0", "cuda:1"]
        at.selectbox(key="tr_device").set_value("cuda")
        at.number_input(key="tr_nproc").set_value(2)
        [b for b in at.button if b.label == "Launch"][0].click().run()
    assert not at.exception and launched == [("cuda", 2)]


def test_train_page_shows_runs_curves_log_and_errors_in_plain_words(demo_home: Path):
    _fake_run(demo_home, "a-done", "done")
    _fake_run(
        demo_home, "b-failed", "failed", error="the training process ran out of memory; lower data.num_ids."
    )
    at = _page(_app(), "train")
    table = at.dataframe[0].value
    assert set(table["run"]) == {"a-done", "b-failed"} and set(table["state"]) == {"done", "failed"}
    assert 25.0 in list(table["best mAP"])
    at.selectbox(key="train_pick").set_value("b-failed").run()
    assert not at.exception
    assert "ran out of memory" in at.error[0].value
    assert "the last line of the log" in at.code[-1].value
    charts = at.get("plotly_chart")
    assert len(charts) >= 2
    # no checkpoint: resume is not offered; a finished run cannot be cancelled
    assert at.button(key="resume_b-failed").disabled and at.button(key="cancel_b-failed").disabled
    # compare two runs on one plot
    assert len(at.multiselect(key="cmp_runs").value) == 2


def test_a_cancelled_run_is_not_an_error_and_metrics_are_percent_everywhere(demo_home: Path):
    from ssn3d.runs.folder import RunPaths

    run = _fake_run(demo_home, "c-cancelled", "cancelled", error="cancelled by SIGTERM at step 4")
    RunPaths(run).checkpoints.mkdir()
    RunPaths(run).last.write_bytes(b"x")
    at = _page(_app(), "train")
    assert not at.exception and not at.error
    assert any("was cancelled at step 4" in i.value and "Resume" in i.value for i in at.info)
    assert at.dataframe[0].value["best mAP"].tolist() == [25.0]  # the table: percent
    curves = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    eval_map = [t for c in curves for t in c["data"] if t.get("name") == "mAP"]
    assert eval_map and eval_map[0]["y"] == [25.0]  # the chart: percent too
    assert any(c["layout"].get("yaxis", {}).get("title", {}).get("text") == "percent" for c in curves)


def test_train_page_shows_part_pck_and_the_collapse_warning(trained_home: Path):
    from ssn3d.runs.metrics import append_metrics
    from ssn3d.runs.status import read_status, write_status

    run = _fake_run(trained_home, "c-flat", "done")
    warning = (
        "SSN has not separated the parts: at step 4, L_SSN 2.2 is not below its chance level 2.197 (log N)"
    )
    write_status(
        run, {**read_status(run), "warnings": [warning], "last_eval": {"mAP": 0.2, "pck@0.1": 0.123}}
    )
    append_metrics(run, {"kind": "eval", "step": 8, "epoch": 2, "mAP": 0.3, "top1": 0.5, "pck@0.1": 0.123})
    at = _page(_app(), "train")
    table = at.dataframe[0].value.set_index("run")
    tiny = json.loads((trained_home / "runs" / "tiny" / "status.json").read_text())["last_eval"]
    assert table.loc["tiny", "PCK@0.2"] == round(100 * tiny["pck@0.2"], 1)  # the real run's last evaluation
    assert (
        table.loc["c-flat", "PCK@0.1"] == 12.3
        and table.loc["c-flat", "warning"] == "SSN has not separated the parts"
    )
    assert table.loc["tiny", "warning"] == ""
    at.selectbox(key="train_pick").set_value("c-flat").run()
    assert not at.exception and any(warning in w.value for w in at.warning)
    curves = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any(t.get("name") == "pck@0.1" and t.get("visible") is True for c in curves for t in c["data"])
    at.selectbox(key="train_pick").set_value("tiny").run()
    assert not at.exception and not any("not separated" in w.value for w in at.warning)


def test_users_control_only_the_runs_their_session_launched(demo_home: Path, monkeypatch: pytest.MonkeyPatch):
    from ssn3d.runs.folder import RunPaths
    from ssn3d.runs.status import write_status

    theirs = _fake_run(demo_home, "theirs", "cancelled")
    (theirs / ".owner").write_text("0" * 32)
    RunPaths(theirs).checkpoints.mkdir()
    RunPaths(theirs).last.write_bytes(b"x")

    def fake_launch(run_dir, *, config, workspace, **_):
        Path(run_dir).mkdir(parents=True)
        write_status(run_dir, {"state": "cancelled", "pid": None, "started": 2.0, "progress": 0.5})
        RunPaths(Path(run_dir)).checkpoints.mkdir()
        RunPaths(Path(run_dir)).last.write_bytes(b"x")
        return {"state": "starting"}

    monkeypatch.setenv("SSN3D_PASSWORD", "team password")
    at = _app()
    at.text_input(key="ssn3d_password").set_value("team password")
    at.button[0].click().run()
    _page(at, "train")
    with mock.patch("ssn3d.runs.launch.launch_run", side_effect=fake_launch):
        [b for b in at.button if b.label == "Launch"][0].click().run()
    mine = at.session_state["train_run"]
    assert (demo_home / "runs" / mine / ".owner").is_file()
    assert not at.button(key=f"resume_{mine}").disabled  # launched by this session
    at.selectbox(key="train_pick").set_value("theirs").run()
    assert at.button(key="resume_theirs").disabled  # another session's run
    # the operator may control every run
    monkeypatch.setenv("SSN3D_OPERATOR_PASSWORD", "operator password")
    op = _app()
    op.text_input(key="ssn3d_password").set_value("operator password")
    op.button[0].click().run()
    _page(op, "train")
    op.selectbox(key="train_pick").set_value("theirs").run()
    assert not op.button(key="resume_theirs").disabled


# ----------------------------------------------------------------------------- studies


def test_studies_page_shows_loss_curves_pck_and_figures(demo_home: Path):
    out = demo_home / "studies" / "random"
    out.mkdir(parents=True)
    runs = [
        {"dist": d, "parts": n, "loss": [2.2, 1.0, 0.5], "final_loss": 0.5}
        for d in ("gaussian", "uniform", "ones")
        for n in (4, 9)
    ]
    (out / "random.json").write_text(json.dumps({"runs": runs}))
    from PIL import Image

    Image.new("RGB", (20, 10), (255, 0, 0)).save(out / "random.png")  # the same loss curves, as a PNG
    Image.new("RGB", (20, 10), (0, 255, 0)).save(out / "maps_attention.png")
    (out / "random-broken.json").write_text("{")
    ped = demo_home / "outputs" / "ped"
    ped.mkdir(parents=True)
    per = {"head": 0.9, "body": 0.8}
    (ped / "pedestrians.json").write_text(
        json.dumps(
            {
                "results": {
                    "semi": {"overall": 0.85, "per_part": per},
                    "unsupervised": {"overall": 0.4, "per_part": per},
                },
                "baselines": {"chance": 0.05, "mean_position": {"overall": 0.3, "per_part": per}},
                "loss": [2.0, 1.0],
            }
        )
    )
    (demo_home / "studies" / "random" / "paintings").mkdir()
    (demo_home / "studies" / "random" / "paintings" / "motifs.json").write_text("{}")  # not a study record
    at = _page(_app(), "studies")
    assert [str(o) for o in at.selectbox(key="study_folder").options] == ["outputs/ped", "studies/random"]
    at.selectbox(key="study_folder").set_value(demo_home / "studies" / "random").run()
    assert len(at.get("plotly_chart")) == 1
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    colors = [t["line"]["color"] for t in spec["data"]]
    assert len(colors) == 6 and len(set(colors)) == 6  # one colour per distribution and part count
    guides = spec["layout"]["shapes"]
    assert len(guides) == 2 and all(g["layer"] == "below" for g in guides)  # log 4, log 9 under the curves
    assert len(at.image) == 1  # maps_attention.png; random.png would show the chart above again
    assert any("random-broken.json is not valid JSON" in w.value for w in at.warning)
    at.selectbox(key="study_folder").set_value(demo_home / "outputs" / "ped").run()
    table = at.dataframe[0].value
    assert list(table["strategy"]) == ["semi", "unsupervised", "mean position"]
    assert list(table["overall"]) == [0.85, 0.4, 0.3]


def test_a_quick_study_runs_in_the_background_from_the_page_and_is_then_shown(workspace: Workspace):
    from ssn3d.runs.folder import RunBusyError
    from ssn3d.studies.jobs import job_folder, job_state, launch_study

    at = _page(_app(), "studies")
    assert "run one above" in _texts(at)
    [b for b in at.button if b.label.startswith("Run Random data")][0].click().run()
    assert not at.exception
    folder = job_folder(workspace, "random")
    assert job_state(folder)["state"] == "running"  # a real process, detached from the app
    assert all(b.disabled for b in at.button if b.label.startswith("Run "))  # one study at a time
    with pytest.raises(RunBusyError, match="random study is still running"):
        launch_study(workspace, "amber")
    deadline = time.monotonic() + 180
    while job_state(folder)["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job_state(folder)["state"] == "done", (folder / "study.log").read_text()
    at.run()  # what the fragment's tick does when the job has ended: the page shows its folder
    at.run()
    assert not at.exception
    assert at.selectbox(key="study_folder").value == folder
    assert (
        len(at.get("plotly_chart")) == 1 and len(at.image) == 0
    )  # the 9 loss curves; their PNG is the same figure
    assert len(json.loads((folder / "random.json").read_text())["runs"]) == 9
    assert not any(b.disabled for b in at.button if b.label.startswith("Run "))


def test_a_study_job_that_died_shows_the_end_of_its_log(workspace: Workspace):
    from ssn3d.runs.status import fresh_status, write_status
    from ssn3d.studies.jobs import job_folder

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    folder = job_folder(workspace, "amber")
    folder.mkdir(parents=True)
    write_status(folder, fresh_status("starting", gone.pid, kind="amber", started=time.time() - 5))
    (folder / "study.log").write_text("painting...\nMemoryError: out of memory\n")
    at = _page(_app(), "studies")
    assert "amber study stopped without writing its results" in at.error[0].value
    assert "MemoryError: out of memory" in at.code[0].value


# ----------------------------------------------------------------------------- attention and retrieval


@pytest.fixture
def trained_home(demo_home: Path, tiny_run: Path) -> Path:
    shutil.copytree(tiny_run, demo_home / "runs" / "tiny")
    return demo_home


def test_attention_page_shows_the_grid_argmax_tracks_and_scores(trained_home: Path):
    at = _page(_app(), "attention")
    at.selectbox(key="att_ckpt").set_value("tiny (best)").run()
    at.slider(key="att_frames").set_value(4).run()
    assert not at.exception and not at.image
    (grid,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]  # the T x N grid
    assert (
        grid["layout"]["xaxis"]["ticktext"][:2] == ["head", "body"]
        and len(grid["layout"]["xaxis"]["ticktext"]) == 9
    )
    frames = grid["layout"]["yaxis"]["ticktext"]
    assert frames == ["frame 0", "frame 2", "frame 5", "frame 7"]  # 4 of the tracklet's 8 frames, by number
    rows = at.dataframe[0].value
    assert list(rows["part"])[:2] == ["head", "body"] and len(rows) == 9
    assert ((rows["stability"] > 0) & (rows["stability"] <= 1)).all()
    # the demo has ground-truth keypoints: every part has a peak-to-keypoint distance and a PCK
    assert "peak to keypoint (px)" in rows.columns and rows["frames with keypoint"].max() > 0
    assert rows["PCK@0.1"].between(0, 1).all() and (rows["PCK@0.2"] >= rows["PCK@0.1"]).all()
    assert set(rows["keypoint"]) == set(rows["part"])  # unsupervised: parts matched one to one
    summary = next(m.value for m in at.markdown if "Part PCK" in m.value)
    assert "over these 4 frames" in summary and "random peak" in summary and "mean position" in summary
    # one overall score beside the per-part bars: part PCK (ground truth exists) and stability
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {"Part PCK@0.1", "Stability"}
    assert metrics["Stability"] == f"{rows['stability'].mean():.2f}"
    at.segmented_control(key="att_view").set_value("all parts").run()
    assert not at.exception and len(at.image) == 1 and len(at.image[0].value) == 4  # one picture per frame
    legend = next(m.value for m in at.markdown if "background:rgb" in m.value)
    from ssn3d.keypoints import PART_COLORS, PARTS

    assert all(name in legend for name in PARTS) and f"rgb{tuple(PART_COLORS[0])}" in legend
    at.segmented_control(key="att_view").set_value("tracks").run()
    assert not at.exception and len(at.image) == 1
    assert any("background:rgb" in m.value for m in at.markdown)  # the tracks' legend
    at.slider(key="att_opacity").set_value(0.9).run()
    assert not at.exception


def test_attention_page_says_which_way_the_facing_head_read_the_person(demo_home: Path):
    """A model with a facing head (NOT in the paper) names left and right by it; the page says its answer."""
    import torch
    from tiny import TRAINING, tiny_overrides

    from ssn3d.config import load_config
    from ssn3d.engine.checkpoint import save_model
    from ssn3d.models import build_model

    cfg = load_config(
        None,
        [*tiny_overrides(TRAINING), "model.strategy=semi", "model.facing=true", "loss.facing=1",
         f"data.root={demo_home / 'data' / 'demo-walkers'}"],
    )  # fmt: skip
    model = build_model(cfg.model, load_weights=False).eval()
    with torch.no_grad():
        model.facing.fc.weight.zero_()
        model.facing.fc.bias.fill_(-1.0)  # "faces away", sigmoid(1) = 73 % sure
    save_model(demo_home / "runs" / "facing" / "checkpoints" / "best.pt", model, cfg, step=1)
    from ssn3d.runs.status import write_status

    write_status(
        demo_home / "runs" / "facing", {"state": "done", "pid": None, "started": 1.0, "progress": 1.0}
    )
    at = _page(_app(), "attention")
    at.selectbox(key="att_ckpt").set_value("facing (best)").run()
    at.slider(key="att_frames").set_value(4).run()
    assert not at.exception
    said = next(c.value for c in at.caption if "facing head" in c.value)
    assert "faces away (73% sure)" in said and "swapped" in said


def test_retrieval_page_shows_the_evaluation_training_wrote_then_evaluates_again(trained_home: Path):
    from ssn3d.engine.evaluations import read_report

    run = trained_home / "runs" / "tiny"
    trained = read_report(run / "eval.json")
    at = _page(_app(), "retrieval")
    at.selectbox(key="ret_model").set_value("tiny (best)").run()
    # training's final evaluation applies at once: no evaluation is asked for
    assert not at.exception and at.button(key="ret_eval").label == "Evaluate again"
    assert "the run's own evaluation" in _texts(at)
    assert [m.label for m in at.metric] == ["mAP", "Rank-1", "Rank-5", "Rank-10", "mINP"]
    assert at.metric[0].value == f"{100 * trained.metrics['mAP']:.1f}%"
    assert len(at.get("plotly_chart")) == 1
    assert not (run / "eval-best-folder-demo-walkers.json").exists()
    at.button(key="ret_eval").click().run()
    assert not at.exception, at.exception
    saved = run / "eval-best-folder-demo-walkers.json"
    assert saved.is_file() and "this page's evaluation" in _texts(at)
    report = read_report(saved)
    assert at.metric[0].value == f"{100 * report.metrics['mAP']:.1f}%"
    q = report.queries[at.session_state["ret_query"]]
    assert at.slider(key="ret_k").max == len(q.ranked) == report.topk  # k up to all the report kept
    at.slider(key="ret_k").set_value(3).run()
    extra = 1 if q.first_hit > 3 else 0  # the first true match follows the top 3 when it ranks lower
    assert len(at.image) == 1 + 3 + extra  # the query strip, then the top 3 with their borders
    assert len(at.image[0].value) == len(report.query[q.index].frames)
    failing = [q.index for q in report.queries if q.ap is not None and q.first_hit != 1]
    at.toggle(key="ret_fail").set_value(True).run()
    assert not at.exception
    if failing:
        assert len(at.selectbox(key="ret_query").options) == len(failing)
    else:
        assert "No query to show" in _texts(at)
    # a reload reads the saved evaluation without evaluating again
    at2 = _page(_app(), "retrieval")
    at2.selectbox(key="ret_model").set_value("tiny (best)").run()
    assert at2.button(key="ret_eval").label == "Evaluate again" and len(at2.metric) == 5


def test_retrieval_shows_the_first_true_match_past_k(trained_home: Path):
    from ssn3d.engine.evaluations import read_report

    report = read_report(trained_home / "runs" / "tiny" / "eval.json")
    late = [q for q in report.queries if q.ap is not None and q.first_hit > 1]
    assert late, "a two-step model misses some rank-1 matches"
    at = _page(_app(), "retrieval")
    at.selectbox(key="ret_model").set_value("tiny (best)").run()
    at.selectbox(key="ret_query").set_value(late[0].index).run()
    at.slider(key="ret_k").set_value(1).run()
    assert not at.exception
    assert len(at.image) == 1 + 1 + 1  # the query, the top 1 (a wrong person), then the first true match
    captions = [c for img in at.image[1:] for c in img.proto.imgs[0].caption.split("\n")]
    assert captions[-1].startswith(f"{late[0].first_hit}. ") and "first true match" in captions[-1]
    assert any(f"ranks {late[0].first_hit}, past the top 1" in c.value for c in at.caption)
