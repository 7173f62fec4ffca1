"""Video import on real footage: OpenCV's vtest.avi (Debian's opencv-doc), people walking past one camera."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ssn3d.data.datasets import build_dataset
from ssn3d.serving.paths import UnsafePathError

cv2 = pytest.importorskip("cv2", reason="the video extra is not installed (pip install -e .[video])")
pytest.importorskip("trackers", reason="the video extra is not installed (pip install -e .[video])")

from ssn3d.data.video_import import VideoImportError, import_video  # noqa: E402

VTEST = Path(os.environ.get("SSN3D_TEST_VIDEO", "/usr/share/doc/opencv-doc/examples/data/vtest.avi"))
needs_vtest = pytest.mark.skipif(
    not VTEST.is_file(), reason=f"{VTEST} is missing: apt-get install opencv-doc"
)
FRAMES = 100  # the first 10 s of footage: several walkers enter, cross and leave


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory):
    if not VTEST.is_file():
        pytest.skip(f"{VTEST} is missing: apt-get install opencv-doc")
    cv2.setNumThreads(1)
    out = tmp_path_factory.mktemp("video") / "vtest"
    return import_video(VTEST, out, every=2, max_frames=FRAMES, min_length=5)


def _background(frames: int) -> np.ndarray:
    """The per-pixel median of the first frames: the street without the people walking through it."""
    cap = cv2.VideoCapture(os.fspath(VTEST))
    stack = [cap.read()[1] for _ in range(frames)]
    cap.release()
    return np.median(np.stack(stack), axis=0).astype(np.int16), stack


@needs_vtest
def test_tracklets_form_a_folder_dataset(imported) -> None:
    assert imported.frames_read == FRAMES and imported.frames_used == FRAMES // 2
    ds = build_dataset("folder", imported.root)
    assert len(ds.train) == len(imported.tracklets) >= 3  # several people cross the first 10 s
    assert ds.query == [] and ds.gallery == []  # one camera, unverified ids: nothing to evaluate
    assert {t.camid for t in ds.train} == {0}
    manifest = json.loads((imported.root / "dataset.json").read_text())
    assert manifest["identities"] == "unverified" and manifest["cameras"] == 1
    for pid, count in imported.tracklets.items():
        track = manifest["tracks"][f"{pid:04d}"]
        assert len(track["frames"]) == len(track["boxes"]) == count >= 5
        assert track["frames"] == sorted(track["frames"]) and all(f % 2 == 0 for f in track["frames"])
    assert not list(imported.root.parent.glob(".*partial"))  # the staging folder became the dataset


@needs_vtest
def test_crops_contain_a_person(imported) -> None:
    # Independent of the HOG detector: a crop holds a person when it differs from the empty street.
    background, frames = _background(FRAMES)
    manifest = json.loads((imported.root / "dataset.json").read_text())
    moving = []
    for pid, track in manifest["tracks"].items():
        for index, (x0, y0, x1, y1) in zip(track["frames"], track["boxes"]):
            crop = imported.root / "train" / pid / "c1_t00" / f"f{index:06d}.jpg"
            image = cv2.imread(os.fspath(crop))
            box = (slice(int(y0), int(np.ceil(y1))), slice(int(x0), int(np.ceil(x1))))
            assert abs(image.shape[0] - (y1 - y0)) <= 2 and abs(image.shape[1] - (x1 - x0)) <= 2
            diff = np.abs(frames[index][box].astype(np.int16) - background[box]).max(axis=2)
            moving.append((diff > 30).mean())
    moving = np.asarray(moving)
    # a walker covers ~30% of a HOG box; the empty street, under 2%
    assert (moving > 0.08).mean() >= 0.9, np.percentile(moving, [5, 25, 50])


def _still_video(path: Path, frames: int = 12) -> Path:
    writer = cv2.VideoWriter(os.fspath(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(frames):
        writer.write(np.full((240, 320, 3), 90 + i, np.uint8))
    writer.release()
    return path


def test_bad_videos_get_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(VideoImportError, match="not a supported video type"):
        import_video(tmp_path / "notes.txt", tmp_path / "a")
    (tmp_path / "broken.avi").write_bytes(os.urandom(4096))
    with pytest.raises(VideoImportError, match="cannot be decoded as a video"):
        import_video(tmp_path / "broken.avi", tmp_path / "b")
    with pytest.raises(VideoImportError, match="no person was tracked"):
        import_video(_still_video(tmp_path / "street.avi"), tmp_path / "c")
    assert not (tmp_path / "c").exists() and not list(tmp_path.glob(".c.*"))  # nothing left behind
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(VideoImportError, match="not empty"):
        import_video(tmp_path / "street.avi", tmp_path / "full")
    with pytest.raises(UnsafePathError, match="outside the allowed folders"):
        import_video(tmp_path / "street.avi", tmp_path / "d", roots=[tmp_path / "data"])


def test_cli_refuses_a_broken_video_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.mp4").write_bytes(os.urandom(4096))
    proc = subprocess.run(
        [sys.executable, "-m", "ssn3d", "video", "import", str(tmp_path / "broken.mp4"), str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: broken.mp4 cannot be decoded as a video; check the file or re-encode it (e.g. H.264 .mp4)."
    ]


@needs_vtest
def test_cli_imports_the_footage(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "ssn3d", "video", "import", str(VTEST), str(out)]
    proc = subprocess.run(
        [*cmd, "--every", "3", "--max-frames", "45", "--min-length", "3", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "identities are unverified track ids" in proc.stdout
    assert len(build_dataset("folder", out).train) >= 2


# --------------------------------------------------------------------------- the Data page


def _data_page(home: Path):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "main.py"), default_timeout=90)
    at.run()
    assert not at.exception
    return at


def _import_from_page(at, path: str, max_frames: int) -> None:
    at.text_input(key="vid_path").set_value(path)
    at.number_input(key="vid_every").set_value(2)
    at.number_input(key="vid_min").set_value(5)
    at.number_input(key="vid_max").set_value(max_frames)
    at.button[[b.label for b in at.button].index("Import video")].click().run()
    assert not at.exception, at.exception


@needs_vtest
def test_the_data_page_imports_a_video_and_opens_it_for_labeling(tmp_path: Path, monkeypatch) -> None:
    import shutil

    monkeypatch.setenv("SSN3D_HOME", str(tmp_path))
    monkeypatch.delenv("SSN3D_DATA_ROOTS", raising=False)
    monkeypatch.delenv("SSN3D_DEMO", raising=False)
    cv2.setNumThreads(1)
    at = _data_page(tmp_path)
    # outside the workspace and its data roots: one sentence, nothing written
    _import_from_page(at, str(VTEST), 60)
    assert len(at.error) == 1 and "outside" in at.error[0].value and "Traceback" not in at.error[0].value
    assert not (tmp_path / "data" / "vtest").exists()
    # a file that is not a video
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "notes.avi").write_bytes(b"not a video at all")
    _import_from_page(at, str(tmp_path / "data" / "notes.avi"), 60)
    assert len(at.error) == 1 and "cannot be decoded" in at.error[0].value
    # the real footage, inside the workspace: tracklets, the progress bar, and the dataset opened
    shutil.copy(VTEST, tmp_path / "data" / "vtest.avi")
    _import_from_page(at, str(tmp_path / "data" / "vtest.avi"), 60)
    assert not at.error, [e.value for e in at.error]
    assert "Imported" in at.success[0].value and "data/vtest" in at.success[0].value
    root = tmp_path / "data" / "vtest"
    assert (root / "dataset.json").is_file() and len(build_dataset("folder", root).train) >= 1
    assert at.session_state["ssn3d_dataset"]["root"] == str(root)
    assert "vtest" in "\n".join(c.value for c in at.sidebar.caption)
    at.switch_page("views/annotate.py").run()
    assert not at.exception and at.session_state["ann_ctx"]["frame"].startswith("train/")
