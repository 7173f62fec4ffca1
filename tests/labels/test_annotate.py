"""The annotation page's click handling, as pure functions (ssn3d.labels.editing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ssn3d.keypoints import NOT_LABELED, NOT_VISIBLE, NUM_PARTS, PARTS, VISIBLE
from ssn3d.labels import drawing, editing, progress
from ssn3d.labels.store import AnnotationStore


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


def test_move_point_moves_exactly_that_part_and_keeps_the_selection():
    kps = editing.set_point(editing.set_point(editing.new_keypoints(), 0, 10, 10), 1, 20, 20)
    res = editing.move_point(kps, 1, 30.0, 31.0, (64, 128), selected=4, part_names=PARTS)
    assert res.changed and res.part == 4 and "body" in res.message
    assert tuple(res.keypoints[1]) == (30.0, 31.0, VISIBLE)
    changed = np.flatnonzero((res.keypoints != kps).any(axis=1))
    assert changed.tolist() == [1]  # nothing else moved
    assert tuple(kps[1]) == (20.0, 20.0, VISIBLE)  # the input is never changed
    assert editing.move_point(kps, 0, 5.0, 5.0).part == 0  # no selection given: the moved part


def test_move_point_refuses_a_part_without_a_visible_point():
    kps = editing.mark_not_visible(editing.new_keypoints(), 2)
    for part in (2, 3):  # hidden, not placed: the labeler dragged a point that is gone since
        res = editing.move_point(kps, part, 5.0, 5.0, (64, 128), selected=0)
        assert not res.changed and res.part == 0 and "no point" in res.message
        assert (res.keypoints == kps).all()
    with pytest.raises(ValueError, match="part 9"):
        editing.move_point(kps, 9, 1, 1)


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
    # a dragged point is put down under the same rule
    placed = editing.set_point(kps, 3, 10.0, 10.0)
    move = editing.move_point(placed, 3, 10.0, -40.0, (64, 128))
    assert not move.changed and "outside the 64 x 128 frame" in move.message
    assert tuple(move.keypoints[3]) == (10.0, 10.0, VISIBLE)
    edge = editing.move_point(placed, 3, 64.5, 10.0, (64, 128))
    assert edge.changed and 63.0 < edge.keypoints[3, 0] < 64.0
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
