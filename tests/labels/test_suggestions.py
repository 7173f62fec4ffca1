"""Pose suggestions beside the labels, the importers by name and the ranking's cache key (pure, real files)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from ssn3d.keypoints import NUM_PARTS, VISIBLE
from ssn3d.labels import suggestions
from ssn3d.labels.formats import IMPORT_FORMATS, import_files
from ssn3d.labels.frames import FrameIndex
from ssn3d.labels.next import ranking_version
from ssn3d.labels.pose import PoseResult
from ssn3d.labels.store import AnnotationStore


def _result(v: float) -> PoseResult:
    kps = np.tile(np.array([4.0, 5.0, v], np.float32), (NUM_PARTS, 1))
    kps[1, 2] = 1  # one unsure point
    return PoseResult(kps, np.full(NUM_PARTS, 0.9, np.float32))


def test_keep_suggestions_replaces_a_frames_old_one_and_drops_it_when_no_person_is_found():
    held = {"a": {"keypoints": [], "confidence": []}, "b": {"keypoints": [], "confidence": []}}
    found = suggestions.keep_suggestions(held, ["a", "b"], [_result(VISIBLE), PoseResult(None, None)])
    assert found == 1 and list(held) == ["a"]
    json.dumps(held)  # plain values: session state stays JSON-able
    assert held["a"]["keypoints"][0] == [4.0, 5.0, 2.0]


def test_accept_counts_only_confident_points_and_names_the_first_part_left():
    held: dict = {}
    suggestions.keep_suggestions(held, ["a"], [_result(VISIBLE)])
    kps = np.zeros((NUM_PARTS, 3), np.float32)
    kps[0] = (1.0, 1.0, VISIBLE)  # a correction made before accepting stays
    got = suggestions.accept(kps, held["a"])
    assert got.added == NUM_PARTS - 2 and got.next_part == 1  # the unsure part is left to the user
    assert tuple(got.keypoints[0]) == (1.0, 1.0, VISIBLE)
    text = suggestions.describe(kps, held["a"], [f"p{i}" for i in range(NUM_PARTS)])
    assert "p0" not in text and "p1 0.90 (unsure)" in text and "p2 0.90," in text


def test_import_files_by_format_name_and_a_clear_sentence_for_an_unknown_one(tmp_path):
    store = AnnotationStore(tmp_path / "labels.json")
    index = FrameIndex(["t/f0.jpg"])
    person = {"pose_keypoints_2d": [10.0, 10.0, 0.9] * 25}
    reports = import_files(
        IMPORT_FORMATS[1], {"f0_keypoints.json": json.dumps({"people": [person]})}, index, store
    )
    assert [name for name, _ in reports] == [""] and reports[0][1].imported == ["t/f0.jpg"]
    coco = import_files(IMPORT_FORMATS[0], {"bad.json": b"[1, 2"}, index, store)
    assert coco[0][0] == "bad.json" and isinstance(coco[0][1], str)
    with pytest.raises(ValueError, match="unknown"):
        import_files("CSV", {}, index, store)


def test_the_ranking_is_computed_again_when_a_label_or_the_model_changes(tmp_path):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights")
    store = AnnotationStore(tmp_path / "labels.json")
    first = ranking_version(ckpt, store)
    assert ranking_version(ckpt, store) == first
    store.set("f.jpg", np.zeros((NUM_PARTS, 3)))
    second = ranking_version(ckpt, store)
    assert second != first
    ckpt.write_bytes(b"retrained weights")
    os.utime(ckpt, ns=(ckpt.stat().st_atime_ns, ckpt.stat().st_mtime_ns + 1_000_000))  # a coarse clock
    assert ranking_version(ckpt, store) != second
