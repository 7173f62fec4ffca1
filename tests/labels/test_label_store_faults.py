"""The label store after interrupted saves: torn journal tails are cut, failed saves say so, nothing complete is lost."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ssn3d.keypoints import NUM_PARTS
from ssn3d.labels.schema import AnnotationError
from ssn3d.labels.store import AnnotationStore

ROOT = Path(__file__).resolve().parents[2]


def kps(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros((NUM_PARTS, 3), dtype=np.float32)
    out[:, :2] = rng.uniform(0, 60, (NUM_PARTS, 2))
    out[:, 2] = 2
    return out


def saved(store: AnnotationStore, n: int) -> dict[str, np.ndarray]:
    """Save frames f000..f{n-1} one at a time (the first creates the main file, the rest are journaled)."""
    for i in range(n):
        store.set(f"f{i:03d}.jpg", kps(i))
    return {f"f{i:03d}.jpg": kps(i) for i in range(n)}


def assert_frames(store: AnnotationStore, expected: dict[str, np.ndarray]) -> None:
    got = AnnotationStore(store.path).frames()  # a fresh reader: nothing cached in this object
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, atol=0.006)


def test_the_reported_reproduction_save_truncate_save_save(tmp_path: Path, caplog) -> None:
    store = AnnotationStore(tmp_path / "ds.json")
    expected = saved(store, 4)
    size = store.journal.stat().st_size
    os.truncate(store.journal, size - 40)  # `truncate -s -40`: the last record loses its end
    del expected["f003.jpg"]
    with caplog.at_level(logging.WARNING, logger="ssn3d.labels.store"):
        store.set("g0.jpg", kps(10))
        store.set("g1.jpg", kps(11))
    expected |= {"g0.jpg": kps(10), "g1.jpg": kps(11)}
    assert_frames(store, expected)
    last_line = store.journal.read_bytes().splitlines()[2]  # the torn record's place
    assert json.loads(last_line)["frame"] == "g0.jpg"
    dropped = size - 40 - len(b"".join(store.journal.read_bytes().splitlines(keepends=True)[:2]))
    assert store.repaired_bytes == dropped
    assert f"dropped {dropped} bytes" in store.last_repair
    warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 1  # told once, not at every later save


def test_truncation_at_every_offset_of_the_last_record_keeps_every_complete_one(tmp_path: Path) -> None:
    first = AnnotationStore(tmp_path / "seed" / "ds.json")
    expected = saved(first, 3)
    main, journal = first.path.read_bytes(), first.journal.read_bytes()
    last = journal.splitlines(keepends=True)[-1]
    complete = {k: v for k, v in expected.items() if k != "f002.jpg"}
    for cut in range(1, len(last) + 1):
        folder = tmp_path / f"cut{cut}"
        folder.mkdir()
        (folder / "ds.json").write_bytes(main)
        (folder / "ds.json.journal").write_bytes(journal[:-cut])
        store = AnnotationStore(folder / "ds.json")
        store.set("new.jpg", kps(9))
        assert store.repaired_bytes == len(last) - cut, cut
        assert_frames(store, complete | {"new.jpg": kps(9)})
        lines = store.journal.read_bytes().split(b"\n")
        assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1]), cut


def test_a_read_cuts_the_torn_tail_and_an_unlockable_store_still_reads(tmp_path: Path) -> None:
    store = AnnotationStore(tmp_path / "ds.json")
    expected = saved(store, 3)
    with open(store.journal, "ab") as fh:
        fh.write(b'{"frame":"x.jpg","entry":{"keypoints":[[1')
    torn = store.journal.stat().st_size
    Path(f"{store.path}.lock").unlink()
    Path(f"{store.path}.lock").mkdir()  # the lock cannot be opened: the read stays a read
    assert_frames(store, expected)
    assert store.journal.stat().st_size == torn
    Path(f"{store.path}.lock").rmdir()
    reader = AnnotationStore(store.path)
    assert sorted(reader.frames()) == sorted(expected)  # a read with the lock available repairs
    assert store.journal.stat().st_size < torn and reader.repaired_bytes == 41


def test_a_line_glued_by_an_older_version_is_salvaged(tmp_path: Path) -> None:
    store = AnnotationStore(tmp_path / "ds.json")
    expected = saved(store, 3)
    lines = store.journal.read_bytes().splitlines(keepends=True)
    # what the previous version wrote: a torn record, then the next save straight after it
    glued = (
        lines[0][:50] + json.dumps({"frame": "late.jpg", "entry": None}).encode().replace(b" ", b"") + b"\n"
    )
    store.journal.write_bytes(glued + lines[1])
    del expected["f001.jpg"]  # the torn record
    store.set("new.jpg", kps(7))
    assert_frames(store, expected | {"new.jpg": kps(7)})
    assert store.repaired_bytes == 50
    assert "late.jpg" not in AnnotationStore(store.path).frames()  # its deletion was replayed, not lost


def test_a_damaged_line_in_the_middle_is_still_refused(tmp_path: Path) -> None:
    store = AnnotationStore(tmp_path / "ds.json")
    saved(store, 3)
    lines = store.journal.read_bytes().splitlines(keepends=True)
    store.journal.write_bytes(b"garbage\n" + lines[0])
    with pytest.raises(AnnotationError, match="line 1 is damaged"):
        store.set("x.jpg", kps(1))


LIMITED_SAVE = textwrap.dedent(
    """
    import resource, signal, sys
    import numpy as np
    from ssn3d.labels.schema import AnnotationError
    from ssn3d.labels.store import AnnotationStore
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    store = AnnotationStore(sys.argv[1])
    points = np.tile([[10.0, 20.0, 2]], (9, 1))
    for name in sys.argv[3:]:
        try:
            store.set(name, points)
            print("saved", name, flush=True)
        except AnnotationError as e:
            print("refused", name, e, flush=True)
    """
)


def limited_save(path: Path, limit: int, *frames: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", LIMITED_SAVE, str(path), str(limit), *frames],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_a_real_file_size_limit_tears_a_save_which_is_refused_and_leaves_the_store_usable(
    tmp_path: Path,
) -> None:
    store = AnnotationStore(tmp_path / "ds.json")
    expected = saved(store, 3)
    size = store.journal.stat().st_size
    outcome = limited_save(store.path, size + 60, "torn1.jpg", "torn2.jpg")  # a record is ~190 bytes
    assert [line.split()[0] for line in outcome] == ["refused", "refused"]
    assert "File too large" in outcome[0] and "not saved" in outcome[0]
    assert store.journal.stat().st_size == size  # the part that reached the disk was taken back
    store.set("after.jpg", kps(5))
    assert_frames(store, expected | {"after.jpg": kps(5)})


def test_a_fold_under_a_file_size_limit_is_refused_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "ds.json"  # no store yet: the first save writes the whole main file
    outcome = limited_save(path, 100, "big.jpg")
    assert outcome[0].startswith("refused big.jpg") and "not saved" in outcome[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds.json.lock"]
    store = AnnotationStore(path)
    store.set("a.jpg", kps(1))
    assert_frames(store, {"a.jpg": kps(1)})
