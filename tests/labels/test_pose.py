"""The offline pose detector: landmark mapping, its subprocess on real pedestrian crops, keypoints detect."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ssn3d.data.datasets import build_dataset
from ssn3d.keypoints import NOT_VISIBLE, PARTS, VISIBLE
from ssn3d.labels.pose import (
    PoseDetector,
    PoseDetectorError,
    landmarks_to_parts,
    pose_available,
    suggest_keypoints,
)
from ssn3d.labels.store import AnnotationStore
from ssn3d.serving.paths import UnsafePathError

VTEST = Path(os.environ.get("SSN3D_TEST_VIDEO", "/usr/share/doc/opencv-doc/examples/data/vtest.avi"))
needs_detector = pytest.mark.skipif(
    not pose_available(), reason="the pose detector is not installed: bash scripts/install-pose.sh"
)


def test_landmarks_map_to_the_nine_parts() -> None:
    lm = np.zeros((33, 3), np.float32)
    lm[:, 2] = 0.9
    lm[0] = (30, 10, 0.95)  # nose
    lm[11], lm[12] = (40, 40, 0.9), (20, 40, 0.3)  # shoulders: one barely visible
    lm[23], lm[24] = (36, 80, 0.8), (24, 82, 0.7)  # hips
    lm[13], lm[14] = (45, 60, 0.9), (15, 60, 0.9)  # elbows
    lm[25], lm[26] = (35, 110, 0.9), (25, 110, 0.9)  # knees
    lm[27], lm[28] = (36, 140, 0.9), (24, 200, 0.9)  # ankles; the right one below the frame
    kps, conf = landmarks_to_parts(lm, (64, 160), min_confidence=0.5)
    assert kps.shape == (len(PARTS), 3) and conf.shape == (len(PARTS),)
    np.testing.assert_allclose(kps[0], (30, 10, VISIBLE))
    np.testing.assert_allclose(kps[1, :2], (30, 40))  # shoulder midpoint
    assert conf[1] == pytest.approx(0.3) and kps[1, 2] == NOT_VISIBLE  # the weaker shoulder decides
    np.testing.assert_allclose(kps[2], (30, 81, VISIBLE))  # hip midpoint
    np.testing.assert_allclose(kps[3:7, 0], (45, 15, 35, 25))
    assert kps[8, 2] == NOT_VISIBLE and kps[8, 1] < 160  # outside: kept on the frame, never anchoring
    assert kps[7, 2] == VISIBLE


def test_missing_detector_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSN3D_POSE_PYTHON", str(tmp_path / "no-python"))
    assert not pose_available()
    with pytest.raises(PoseDetectorError, match="not installed; run `bash scripts/install-pose.sh`"):
        PoseDetector()
    env = {**os.environ, "SSN3D_POSE_PYTHON": str(tmp_path / "no-python")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ssn3d",
            "keypoints",
            "detect",
            str(tmp_path),
            "--to",
            str(tmp_path / "l.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "install-pose.sh" in proc.stderr


def test_frames_outside_the_allowed_folders_are_refused(tmp_path: Path) -> None:
    (tmp_path / "f.jpg").write_bytes(b"")
    with pytest.raises(UnsafePathError, match="outside the allowed folders"):
        suggest_keypoints([tmp_path / "f.jpg"], roots=[tmp_path / "data"])


@pytest.fixture(scope="module")
def pedestrians(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real pedestrian crops: tracklets imported from the first 4 s of vtest.avi."""
    if not pose_available():
        pytest.skip("the pose detector is not installed: bash scripts/install-pose.sh")
    if not VTEST.is_file():
        pytest.skip(f"{VTEST} is missing: apt-get install opencv-doc")
    pytest.importorskip("trackers", reason="the video extra is not installed (pip install -e .[video])")
    from ssn3d.data.video_import import import_video

    out = tmp_path_factory.mktemp("pose") / "vtest"
    return import_video(VTEST, out, every=4, max_frames=40, min_length=3).root


@needs_detector
def test_keypoints_lie_inside_the_crop_head_above_feet(pedestrians: Path) -> None:
    ds = build_dataset("folder", pedestrians)
    frames = ds.all_frames()
    results = suggest_keypoints(frames)
    found = [(f, r) for f, r in zip(frames, results) if r.keypoints is not None]
    assert len(found) >= 0.8 * len(frames)  # MediaPipe finds the walker in nearly every HOG crop
    from PIL import Image

    for frame, r in found:
        w, h = Image.open(frame).size
        visible = r.keypoints[:, 2] == VISIBLE
        assert visible.sum() >= 5
        xy = r.keypoints[:, :2]
        assert ((xy >= 0) & (xy < (w, h))).all()
        assert ((r.confidence >= 0) & (r.confidence <= 1)).all()
        assert r.keypoints[0, 1] < min(r.keypoints[7, 1], r.keypoints[8, 1])  # head above both feet
        assert r.keypoints[1, 1] < r.keypoints[2, 1]  # shoulders above hips


@needs_detector
def test_keypoints_detect_is_resumable_and_lists_unreadable_frames(pedestrians: Path, tmp_path: Path) -> None:
    from ssn3d.labels.detect import detect_dataset

    root = tmp_path / "ds"
    shutil.copytree(pedestrians, root)
    ds = build_dataset("folder", root)
    broken = ds.train[0].paths[0]
    Path(broken).write_bytes(b"not a jpeg")
    store = AnnotationStore(tmp_path / "labels.json")
    store.set(ds.relpath(ds.train[0].paths[1]), np.zeros((9, 3)), source="manual")  # a person's label
    report = detect_dataset(ds, store)
    assert report.unreadable == [ds.relpath(broken)]
    assert report.skipped == 1 and report.written >= 0.8 * (report.frames - 2)
    doc = store.read()["frames"]
    assert doc[ds.relpath(ds.train[0].paths[1])]["source"] == "manual"  # never overwritten
    assert sum(e["source"] == "detector" for e in doc.values()) == report.written

    proc = subprocess.run(
        [sys.executable, "-m", "ssn3d", "keypoints", "detect", str(root), "--to", str(store.path), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"0 frames labeled by the pose detector into {store.path}; ")
    assert f"{report.written + 1} of {report.frames} were already there" in proc.stdout
    assert "1 frames cannot be decoded:" in proc.stdout and ds.relpath(broken) in proc.stdout
