"""The label store: validated, atomic, and safe against two writers."""

from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pytest

from ssn3d.keypoints import NUM_PARTS
from ssn3d.labels.schema import AnnotationError
from ssn3d.labels.store import AnnotationStore


def kps(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros((NUM_PARTS, 3), dtype=np.float32)
    out[:, :2] = rng.uniform(0, 60, (NUM_PARTS, 2))
    out[:, 2] = 2
    out[3, 2] = 1  # left elbow labeled but not visible
    return out


def test_set_get_delete_roundtrip(tmp_path) -> None:
    store = AnnotationStore(tmp_path / "a" / "ds.json")
    assert store.frames() == {}
    store.set("train/0001/c1_t00/000003.jpg", kps(0))
    got = store.get("train/0001/c1_t00/000003.jpg")
    np.testing.assert_allclose(got, kps(0), atol=0.006)  # stored to 1/100 px
    store.update({"x.jpg": kps(1), "train/0001/c1_t00/000003.jpg": None})
    assert list(store.frames()) == ["x.jpg"]
    store.delete("x.jpg")
    assert store.frames() == {}
    assert not list(tmp_path.glob("a/*.tmp"))  # no temporary files left behind


def _writer(path: str, start: int) -> None:
    store = AnnotationStore(path)
    for i in range(start, start + 15):
        store.set(f"frame{i:03d}.jpg", kps(i))


def test_two_processes_writing_at_once_lose_nothing(tmp_path) -> None:
    path = str(tmp_path / "ds.json")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, s)) for s in (0, 100)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    frames = AnnotationStore(path).frames()
    assert len(frames) == 30
    json.loads((tmp_path / "ds.json").read_text())  # a complete document


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{not json", "cannot be read as JSON"),
        ('{"format": "other"}', "is not an SSN3D label file"),
        ('{"format": "ssn3d-keypoints", "version": 9}', "version 9"),
    ],
)
def test_bad_files_are_refused_with_the_file_name(tmp_path, text: str, needle: str) -> None:
    path = tmp_path / "ds.json"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=needle) as e:
        AnnotationStore(path).frames()
    assert "ds.json" in str(e.value)
    with pytest.raises(AnnotationError):
        AnnotationStore(path).set("a.jpg", kps(0))
    assert path.read_text() == text  # nothing saved before is touched


def test_bad_points_are_refused_and_the_store_is_unchanged(tmp_path) -> None:
    store = AnnotationStore(tmp_path / "ds.json")
    store.set("a.jpg", kps(0))
    before = (tmp_path / "ds.json").read_bytes()
    bad = kps(1)
    bad[2, 2] = 7
    with pytest.raises(AnnotationError, match="visibility"):
        store.update({"b.jpg": kps(2), "c.jpg": bad})
    with pytest.raises(AnnotationError, match="9"):
        store.set("d.jpg", np.zeros((4, 3)))
    assert (tmp_path / "ds.json").read_bytes() == before


def test_saves_go_to_the_journal_and_fold_into_the_file(tmp_path, monkeypatch) -> None:
    import ssn3d.labels.store as ann

    monkeypatch.setattr(ann, "JOURNAL_LIMIT", 5)
    store = AnnotationStore(tmp_path / "ds.json")
    store.set("f000.jpg", kps(0))  # the first save creates the main file
    base = (tmp_path / "ds.json").read_bytes()
    seen = {store.version()}
    for i in range(1, 5):
        store.set(f"f{i:03d}.jpg", kps(i))
        seen.add(store.version())
    assert len(seen) == 5  # every save changes the version caches key on
    assert (tmp_path / "ds.json").read_bytes() == base  # ... without rewriting the main file
    assert len(store.journal.read_text().splitlines()) == 4
    assert len(AnnotationStore(tmp_path / "ds.json").frames()) == 5  # a fresh reader replays the journal
    store.update({"f005.jpg": kps(5), "f000.jpg": None})  # over the limit: folded
    assert not store.journal.exists()
    doc = json.loads((tmp_path / "ds.json").read_text())
    assert sorted(doc["frames"]) == [f"f{i:03d}.jpg" for i in range(1, 6)]


def test_a_torn_last_journal_line_loses_only_that_save(tmp_path) -> None:
    store = AnnotationStore(tmp_path / "ds.json")
    store.set("a.jpg", kps(0))
    store.set("b.jpg", kps(1))
    with open(store.journal, "ab") as fh:
        fh.write(b'{"frame":"c.jpg","entry":{"keypo')  # the process died mid-append
    assert sorted(store.frames()) == ["a.jpg", "b.jpg"]
    store.journal.write_bytes(b'garbage\n{"frame":"b.jpg","entry":null}\n')
    with pytest.raises(AnnotationError, match="journal line 1 is damaged"):
        store.frames()
