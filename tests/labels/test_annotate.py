"""The annotation page's click handling, as pure functions (ssn3d.labels.editing)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ssn3d.keypoints import NOT_LABELED, NOT_VISIBLE, NUM_PARTS, PART_COLORS, PARTS, VISIBLE
from ssn3d.labels import drawing, editing, progress
from ssn3d.labels.store import AnnotationStore


@given(
    st.integers(1, 2000),
    st.integers(1, 2000),
    st.integers(1, 400),
    st.integers(1, 400),
    st.floats(0, 1, exclude_max=True),
    st.floats(0, 1, exclude_max=True),
)
@settings(max_examples=200, deadline=None)
def test_scale_click_lands_inside_the_frame_and_keeps_relative_position(sw, sh, fw, fh, u, v):
    x, y = int(u * sw), int(v * sh)  # a click on a displayed pixel
    fx, fy = editing.scale_click(x, y, (sw, sh), (fw, fh))
    assert 0 <= fx < fw and 0 <= fy < fh
    # the frame pixel holding the click covers the clicked display pixel's centre
    assert abs(fx / fw - (x + 0.5) / sw) <= 1e-6 + 1.0 / fw


def test_scale_click_maps_display_pixel_centres_to_frame_pixel_centres():
    # shown at 4x: display pixel 9 lies in frame pixel 2 (display pixels 8..11), centre-relative
    fx, fy = editing.scale_click(9, 17, (128, 256), (32, 64))
    assert int(fx) == 2 and int(fy) == 4
    assert editing.scale_click(127, 255, (128, 256), (32, 64))[0] < 32
    with pytest.raises(ValueError, match="positive"):
        editing.scale_click(1, 1, (0, 10), (32, 64))


def test_place_selects_the_next_unlabeled_part_and_wraps():
    kps = editing.new_keypoints()
    kps = editing.mark_not_visible(kps, 2)
    res = editing.handle_click(kps, 1, 10.0, 20.0, mode="place", part_names=PARTS)
    assert res.changed and tuple(res.keypoints[1]) == (10.0, 20.0, VISIBLE)
    assert res.part == 3  # part 2 is already labeled (not visible), so it is skipped
    assert "body" in res.message
    assert kps[1, 2] == NOT_LABELED  # the input is never changed
    # the last unlabeled part wraps around to the first
    full = kps.copy()
    full[:, 2] = VISIBLE
    full[0, 2] = NOT_LABELED
    assert editing.handle_click(full, 8, 1.0, 1.0).part == 0
    # when every part is labeled, the selection stays
    full[0, 2] = VISIBLE
    assert editing.handle_click(full, 4, 1.0, 1.0).part == 4


def test_move_picks_up_the_nearest_point_then_puts_it_down():
    kps = editing.set_point(editing.set_point(editing.new_keypoints(), 0, 10, 10), 1, 20, 20)
    miss = editing.handle_click(kps, 5, 50, 50, mode="move", radius=5)
    assert not miss.changed and miss.grabbed is None
    pick = editing.handle_click(kps, 5, 18, 19, mode="move", radius=5)
    assert pick.grabbed == 1 and pick.part == 1 and not pick.changed
    drop = editing.handle_click(pick.keypoints, pick.part, 30, 31, mode="move", grabbed=pick.grabbed)
    assert drop.changed and drop.grabbed is None
    assert tuple(drop.keypoints[1]) == (30, 31, VISIBLE)
    assert tuple(drop.keypoints[0]) == (10, 10, VISIBLE)


def test_delete_removes_only_the_nearest_visible_point():
    kps = editing.set_point(editing.set_point(editing.new_keypoints(), 0, 10, 10), 1, 14, 10)
    res = editing.handle_click(kps, 0, 13, 10, mode="delete", radius=6)
    assert res.changed and res.keypoints[1, 2] == NOT_LABELED and res.keypoints[0, 2] == VISIBLE
    assert not editing.handle_click(kps, 0, 100, 100, mode="delete").changed
    with pytest.raises(ValueError, match="mode"):
        editing.handle_click(kps, 0, 1, 1, mode="paint")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="part 9"):
        editing.handle_click(kps, 9, 1, 1)


def test_hidden_points_are_not_picked_by_clicks():
    kps = editing.mark_not_visible(editing.new_keypoints(), 0)  # stored at (0, 0) but not visible
    assert editing.nearest_part(kps, 0.5, 0.5, radius=10) is None


def test_is_new_click_ignores_the_widget_repeating_its_last_value():
    v = {"x": 3, "y": 4, "width": 10, "height": 20, "unix_time": 123}
    assert editing.is_new_click(v, None)
    assert not editing.is_new_click(v, 123)
    assert editing.is_new_click({**v, "unix_time": 124}, 123)
    assert not editing.is_new_click(None, None)


def test_undo_restores_saved_labels_in_reverse_order(tmp_path):
    store = AnnotationStore(tmp_path / "labels.json")
    stack = editing.UndoStack(limit=3)
    kps = editing.new_keypoints()
    for i, (x, y) in enumerate([(1, 2), (3, 4), (5, 6)]):
        stack.push("a/f1.png", store.get("a/f1.png"))
        kps = editing.set_point(kps, i, x, y)
        store.set("a/f1.png", kps)
    # the stack is plain values (it lives in session state)
    json.dumps(stack.entries)
    for expected_labeled in (2, 1, 0):
        frame, before = stack.pop()
        store.update({frame: before})
        got = store.get(frame)
        labeled = 0 if got is None else int((got[:, 2] > 0).sum())
        assert labeled == expected_labeled
    assert stack.pop() is None
    for _ in range(5):
        stack.push("b", None)
    assert len(stack) == 3  # bounded


def test_copy_previous_prefers_the_nearest_earlier_labeled_frame():
    frames = ["f0", "f1", "f2", "f3"]
    a = editing.set_point(editing.new_keypoints(), 0, 1, 1)
    b = editing.set_point(editing.new_keypoints(), 0, 2, 2)
    labels = {"f0": a, "f1": b, "f3": editing.set_point(editing.new_keypoints(), 0, 9, 9)}
    got = editing.copy_previous(frames, 2, labels)
    assert got is not None and got[0, 0] == 2
    got[0, 0] = 100  # a copy: the stored labels are not touched
    assert labels["f1"][0, 0] == 2
    first = editing.copy_previous(frames, 0, labels)  # nothing before: the nearest after
    assert first is not None and first[0, 0] == 2
    assert editing.copy_previous(["x", "y"], 1, {}) is None


def test_progress_counts_a_frame_when_its_parts_are_done():
    full = np.tile(np.array([[1.0, 1.0, VISIBLE]], dtype=np.float32), (NUM_PARTS, 1))
    hidden_feet = editing.mark_not_visible(editing.mark_not_visible(full, 7), 8)  # done: placed or hidden
    partial = editing.set_point(editing.new_keypoints(), 0, 1, 1)
    labels = {
        "t1/a": full,
        "t1/b": partial,
        "t2/a": partial,
        "t3/a": editing.new_keypoints(),
        "t5/a": hidden_feet,
    }
    assert (
        progress.is_labeled(hidden_feet) and not progress.is_labeled(partial) and progress.is_started(partial)
    )
    p1 = progress.tracklet_progress(["t1/a", "t1/b", "t1/c"], labels)
    assert (p1.labeled, p1.started, p1.goal, p1.tracklets_done) == (1, 1, 2, 0)
    p2 = progress.tracklet_progress(["t2/a", "t2/b"], labels)
    assert (p2.labeled, p2.started, p2.tracklets_done) == (0, 1, 0)
    many = progress.tracklet_progress([f"t6/{i}" for i in range(7)], {f"t6/{i}": partial for i in range(7)})
    assert (many.labeled, many.tracklets_done) == (0, 0)  # seven started frames are not "7/2 labeled"
    short = progress.tracklet_progress(["t4/a"], {"t4/a": full})
    assert short.goal == 1 and short.tracklets_done == 1  # a one-frame tracklet cannot give two
    tracks = [["t1/a", "t1/b", "t1/c"], ["t2/a", "t2/b"], ["t3/a", "t3/b"], ["t5/a", "t1/a"]]
    total = progress.dataset_progress(tracks, labels)
    assert (total.labeled, total.goal, total.tracklets_done, total.tracklets) == (3, 8, 1, 4)
    assert total.fraction == pytest.approx(3 / 8)


def test_next_unlabeled_frame_finishes_started_frames_first_and_wraps():
    full = np.tile(np.array([[1.0, 1.0, VISIBLE]], dtype=np.float32), (NUM_PARTS, 1))
    partial = editing.set_point(editing.new_keypoints(), 0, 1, 1)
    frames = ["a", "b", "c", "d"]
    assert progress.next_unlabeled_frame(frames, 0, {"b": full}) == 2
    assert progress.next_unlabeled_frame(frames, 0, {"b": full, "d": partial}) == 3  # the half-done one first
    assert (
        progress.next_unlabeled_frame(frames, 2, {"a": full, "b": full, "d": full}) == 2
    )  # only itself left
    assert progress.next_unlabeled_frame(frames, 3, {"b": full}) == 0  # wraps around
    assert progress.next_unlabeled_frame(frames, 1, {f: full for f in frames}) is None
    tracks = [["a", "b"], ["c", "d"], ["e"]]
    labels = {"a": full, "b": full, "e": full}
    assert progress.next_unlabeled_tracklet(tracks, 0, labels) == 1
    assert progress.next_unlabeled_tracklet(tracks, 1, labels) == 1  # the current one is the only one short
    assert progress.next_unlabeled_tracklet(tracks, 2, {**labels, "c": full, "d": full}) is None


def test_changed_part_is_the_first_part_that_differs():
    a = editing.set_point(editing.new_keypoints(), 2, 3, 4)
    b = editing.set_point(a, 5, 1, 1)
    assert (
        editing.changed_part(a, b) == 5
        and editing.changed_part(None, a) == 2
        and editing.changed_part(a, a) is None
    )
    assert editing.changed_part(a, None) == 2


def test_part_state_names_placed_hidden_and_open_parts():
    kps = editing.mark_not_visible(editing.set_point(editing.new_keypoints(), 0, 3, 4), 1)
    assert [editing.part_state(kps, i) for i in range(3)] == ["placed", "hidden", ""]


def test_draw_keypoints_uses_the_fixed_part_colours_and_skips_hidden_points():
    img = Image.new("RGB", (32, 64), (0, 0, 0))
    kps = editing.new_keypoints()
    kps = editing.set_point(kps, 0, 16.5, 8.5)
    kps = editing.set_point(kps, 1, 16.5, 30.5)
    kps = editing.mark_not_visible(kps, 2)
    out = np.asarray(drawing.draw_keypoints(img, kps, scale=4, radius=5))
    assert out.shape == (256, 128, 3)
    assert tuple(out[34, 66]) == PART_COLORS[0]  # head centre, at 4x
    assert tuple(out[122, 66]) == PART_COLORS[1]
    # the skeleton (head-body) is drawn in white between them
    assert tuple(out[78, 66]) == (255, 255, 255)
    # nothing where the hidden part is stored
    assert tuple(out[2, 2]) == (0, 0, 0)
    # the input is not drawn on
    assert np.asarray(img).max() == 0
    assert drawing.draw_keypoints(img, None).size == (32, 64)


def test_display_scale_shows_small_frames_large_and_never_shrinks():
    assert drawing.display_scale((32, 64), 512) == 8.0
    assert drawing.display_scale((64, 128), 512) == 4.0
    assert drawing.display_scale((128, 256), 512) == 2.0
    assert drawing.display_scale((600, 1200), 512) == 1.0
    kps = editing.mark_not_visible(editing.new_keypoints(), 3)
    assert kps[3, 2] == NOT_VISIBLE


def test_a_point_outside_the_frame_is_refused_and_one_at_the_border_lands_on_it():
    kps = editing.new_keypoints()
    far = editing.handle_click(kps, 0, 500.0, 10.0, frame_size=(64, 128))
    assert not far.changed and "outside the 64 x 128 frame" in far.message and far.part == 0
    assert (far.keypoints == kps).all()
    near = editing.handle_click(kps, 0, 65.0, 10.0, frame_size=(64, 128))  # 1 px past: within the tolerance
    assert near.changed and 63.0 < near.keypoints[0, 0] < 64.0 and near.keypoints[0, 2] == VISIBLE
    # a move is put down under the same rule
    placed = editing.set_point(kps, 3, 10.0, 10.0)
    move = editing.handle_click(placed, 3, 10.0, -40.0, mode="move", grabbed=3, frame_size=(64, 128))
    assert not move.changed and move.grabbed == 3 and tuple(move.keypoints[3]) == (10.0, 10.0, VISIBLE)
    assert editing.is_outside_frame(-10.0, 5.0, 64, 128) and not editing.is_outside_frame(0.0, 127.9, 64, 128)


def test_accepting_suggestions_keeps_corrections_and_skips_unsure_points():
    sug = np.zeros((NUM_PARTS, 3), dtype=np.float32)
    sug[:, 0], sug[:, 1], sug[:, 2] = np.arange(NUM_PARTS) + 1, 2.0, VISIBLE
    sug[4, 2] = NOT_VISIBLE  # the detector was unsure of the right elbow
    mine = editing.set_point(editing.new_keypoints(), 0, 30.0, 40.0)  # the user corrected the head first
    out = editing.accept_suggestions(mine, sug)
    assert tuple(out[0]) == (30.0, 40.0, VISIBLE)  # the correction stays
    assert out[4, 2] == NOT_LABELED  # left for the user, not stored as a guess
    keep = [i for i in range(NUM_PARTS) if i not in (0, 4)]
    np.testing.assert_array_equal(out[keep], sug[keep])
    assert (mine[1:, 2] == NOT_LABELED).all()  # the input is not changed
    only = editing.accept_suggestions(None, sug, parts=[2])
    assert only[2, 2] == VISIBLE and (np.delete(only, 2, axis=0)[:, 2] == NOT_LABELED).all()


def test_suggestions_are_drawn_as_rings_in_the_part_colour_and_labeled_parts_are_not():
    frame = Image.new("RGB", (40, 80), (128, 128, 128))
    sug = np.zeros((NUM_PARTS, 3), dtype=np.float32)
    sug[0], sug[7] = (20.0, 20.0, VISIBLE), (20.0, 60.0, VISIBLE)
    labels = editing.set_point(editing.new_keypoints(), 7, 20.0, 60.0)
    conf = np.full(NUM_PARTS, 0.9, dtype=np.float32)
    img = drawing.draw_keypoints(frame, labels, scale=2.0, radius=4.0)
    before = np.asarray(img).copy()
    out = np.asarray(drawing.draw_suggestions(img, labels, sug, conf, scale=2.0, radius=4.0))
    assert (out[40, 40] == before[40, 40]).all()  # the centre of a ring stays see-through: hollow
    ring = out[35:46, 35:46].reshape(-1, 3)
    assert (np.abs(ring.astype(int) - PART_COLORS[0]).sum(1) < 30).any()  # the head's colour
    assert (out[112:129, 32:49] == before[112:129, 32:49]).all()  # the labeled left foot: no ring drawn


def test_apply_edit_saves_at_once_pushes_undo_and_undo_last_reverts_it(tmp_path):
    store = AnnotationStore(tmp_path / "ds.json")
    undo = editing.UndoStack()
    full = np.tile(np.array([5.0, 6.0, VISIBLE], np.float32), (NUM_PARTS, 1))
    edit = editing.apply_edit(store, "t/f0.jpg", lambda k: editing.set_point(k, 0, 3.0, 4.0), undo)
    assert edit.before is None and tuple(edit.after[0]) == (3.0, 4.0, VISIBLE)
    assert tuple(AnnotationStore(store.path).get("t/f0.jpg")[0]) == (3.0, 4.0, VISIBLE)  # on disk already
    assert edit.done_changed and edit.repair is None  # to do -> started
    second = editing.apply_edit(store, "t/f0.jpg", lambda _: full, undo, current=store.frames())
    assert second.done_changed and progress.is_labeled(store.get("t/f0.jpg"))  # started -> labeled
    same_state = editing.apply_edit(store, "t/f0.jpg", lambda k: editing.set_point(k, 1, 9.0, 9.0), undo)
    assert not same_state.done_changed and len(undo) == 3
    back = editing.undo_last(store, undo)
    assert back.frame == "t/f0.jpg" and editing.changed_part(back.before, back.after) == 1
    assert len(undo) == 2  # an undo is not itself pushed
    editing.undo_last(store, undo)
    editing.undo_last(store, undo)
    assert store.get("t/f0.jpg") is None and editing.undo_last(store, undo) is None


def test_apply_edit_saves_nothing_and_keeps_the_store_when_the_change_is_invalid(tmp_path):
    store = AnnotationStore(tmp_path / "ds.json")
    editing.apply_edit(store, "f.jpg", lambda k: editing.set_point(k, 0, 3.0, 4.0), None)
    with pytest.raises(ValueError):
        editing.apply_edit(store, "f.jpg", lambda k: editing.set_point(k, 0, float("nan"), 4.0), None)
    assert tuple(store.get("f.jpg")[0]) == (3.0, 4.0, VISIBLE)
