"""An offline pose detector for the nine parts: model-assisted labels and the paper's supervised row.

Paper, "Implementation Details / Supervised Labels": the supervised strategy anchors each part at a
pose detector's keypoint (OpenPose in the paper). Here the detector is MediaPipe Pose 0.10.21 (full
model, Apache-2.0), whose models ship inside its wheel, so nothing is downloaded at run time. It
needs numpy < 2 and protobuf < 5, which the main environment cannot take, so it lives in its own
virtualenv (``.venv-pose/``, made by ``scripts/install-pose.sh``) and runs as a subprocess
(``ssn3d/labels/_pose_worker.py``) that this module talks to over JSON lines.

Its 33 landmarks map to our parts: head = nose (0); body = shoulder midpoint (11, 12); crotch = hip
midpoint (23, 24); elbows 13/14; knees 25/26; feet = ankles 27/28. MediaPipe's "left" is the
person's left, as ours is. A point's confidence is its landmark visibility (the smaller of the two
for a midpoint); points at or above ``min_confidence`` and inside the frame get COCO visibility 2,
the others 1 (placed, but not trusted to anchor a part).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ssn3d.keypoints import NOT_VISIBLE, NUM_PARTS, VISIBLE

log = logging.getLogger(__name__)

WORKER = Path(__file__).with_name("_pose_worker.py")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = (
    "run `bash scripts/install-pose.sh` (or set SSN3D_POSE_PYTHON to a Python with mediapipe 0.10.21)"
)
# Requests sent before their answers are read: the worker never waits on a full pipe (answers are
# ~1 kB, a pipe holds 64 kB) and never idles between frames.
PIPELINE = 16
DEFAULT_MIN_CONFIDENCE = 0.5  # MediaPipe's own threshold for "visible" in its drawing utilities

# Landmark indices of each part (a pair means the midpoint), in ``ssn3d.keypoints.PARTS`` order.
LANDMARKS: tuple[tuple[int, ...], ...] = ((0,), (11, 12), (23, 24), (13,), (14,), (25,), (26,), (27,), (28,))


class PoseDetectorError(ValueError):
    """The pose detector is missing or stopped; the message says how to fix it."""


class PoseResult(NamedTuple):
    """What the detector made of one frame.

    Attributes:
        keypoints: (9, 3) ``[x, y, v]`` in frame pixels, or None when no person was found.
        confidence: (9,) in [0, 1], or None with ``keypoints``.
        error: why the frame could not be read, else None.
    """

    keypoints: np.ndarray | None
    confidence: np.ndarray | None
    error: str | None = None


def pose_python(env: dict[str, str] | None = None) -> Path | None:
    """The pose virtualenv's Python: ``SSN3D_POSE_PYTHON``, else ``.venv-pose/`` of the project; None if absent."""
    env = os.environ if env is None else env
    given = env.get("SSN3D_POSE_PYTHON", "").strip()
    candidate = Path(given).expanduser() if given else PROJECT_ROOT / ".venv-pose" / "bin" / "python"
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def pose_available() -> bool:
    """True when the pose detector's virtualenv is installed (it is started only when used)."""
    return pose_python() is not None


def landmarks_to_parts(
    landmarks: np.ndarray, size: Sequence[int], min_confidence: float = DEFAULT_MIN_CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's 33 landmarks -> our nine keypoints and their confidences.

    Args:
        landmarks: (33, 3) ``[x_px, y_px, visibility]``.
        size: the frame's (width, height); points outside it are clamped onto it and never visible.
        min_confidence: the confidence from which a point gets COCO visibility 2.

    Returns:
        keypoints (9, 3) ``[x, y, v]`` with v in {1, 2}, and confidence (9,).
    """
    lm = np.asarray(landmarks, dtype=np.float32)
    kps = np.zeros((NUM_PARTS, 3), dtype=np.float32)
    conf = np.zeros(NUM_PARTS, dtype=np.float32)
    w, h = float(size[0]), float(size[1])
    for i, idx in enumerate(LANDMARKS):
        points = lm[list(idx)]  # (1 or 2, 3)
        x, y = points[:, 0].mean(), points[:, 1].mean()
        conf[i] = points[:, 2].min()
        inside = 0 <= x < w and 0 <= y < h
        kps[i] = (
            min(max(x, 0.0), w - 0.01),
            min(max(y, 0.0), h - 0.01),
            VISIBLE if inside and conf[i] >= min_confidence else NOT_VISIBLE,
        )
    return kps, conf


class PoseDetector:
    """A running pose-detector subprocess; use as a context manager (it stops on exit).

    Args:
        min_confidence: see ``landmarks_to_parts``.
        python: the pose virtualenv's Python (default: ``pose_python()``).

    Raises:
        PoseDetectorError: the detector is not installed or does not start.
    """

    def __init__(self, *, min_confidence: float = DEFAULT_MIN_CONFIDENCE, python: Path | None = None) -> None:
        self.min_confidence = min_confidence
        exe = python or pose_python()
        if exe is None:
            raise PoseDetectorError(f"the pose detector is not installed; {INSTALL_HINT}.")
        self._proc = subprocess.Popen(
            [str(exe), "-I", str(WORKER)],  # -I: its own site-packages only, whatever PYTHONPATH says
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # MediaPipe's start-up chatter; failures show as a closed pipe
            text=True,
            bufsize=1,
            env={**os.environ, "OMP_NUM_THREADS": "1"},  # one core per detector on a shared machine
        )
        self._next_id = 0
        hello = self._proc.stdout.readline()
        if not hello.strip():
            self.close()
            raise PoseDetectorError(f"the pose detector at {exe} did not start; {INSTALL_HINT}.")
        log.debug("pose worker ready: %s", hello.strip())

    def detect(self, path: str | os.PathLike) -> PoseResult:
        """Keypoints of the most prominent person in one frame file."""
        return self.detect_many([path])[0]

    def detect_many(self, paths: Iterable[str | os.PathLike]) -> list[PoseResult]:
        """Keypoints for each frame file, in order."""
        paths = [os.fspath(p) for p in paths]
        out: list[PoseResult] = []
        for start in range(0, len(paths), PIPELINE):
            out.extend(self._round_trip(paths[start : start + PIPELINE]))
        return out

    def _round_trip(self, paths: list[str]) -> list[PoseResult]:
        ids = []
        try:
            for p in paths:
                self._next_id += 1
                ids.append(self._next_id)
                self._proc.stdin.write(json.dumps({"id": self._next_id, "path": os.path.abspath(p)}) + "\n")
            self._proc.stdin.flush()
            answers = [json.loads(self._proc.stdout.readline() or "null") for _ in paths]
        except (BrokenPipeError, json.JSONDecodeError):
            answers = [None]
        if any(a is None for a in answers) or [a["id"] for a in answers] != ids:
            self.close()
            raise PoseDetectorError(f"the pose detector stopped unexpectedly; reinstall it: {INSTALL_HINT}.")
        return [self._result(a) for a in answers]

    def _result(self, answer: dict) -> PoseResult:
        if answer["error"]:
            return PoseResult(None, None, answer["error"])
        if answer["landmarks"] is None:
            return PoseResult(None, None)
        kps, conf = landmarks_to_parts(np.asarray(answer["landmarks"]), answer["size"], self.min_confidence)
        return PoseResult(kps, conf)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> PoseDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def suggest_keypoints(
    frame_paths: Sequence[str | os.PathLike],
    *,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    roots: Sequence[str | os.PathLike] | None = None,
) -> list[PoseResult]:
    """The detector's keypoints for a frame or a whole tracklet, in one call (the Annotate page's "Suggest").

    Args:
        frame_paths: frame files.
        min_confidence: see ``landmarks_to_parts``.
        roots: when given (the app: ``Workspace.allowed_roots``), every frame must lie inside these
            folders (``ssn3d.serving.paths.resolve_inside``), checked before the detector starts.

    Returns:
        One ``PoseResult`` per frame: keypoints (9, 3) and confidence (9,), or None for both when no
        person was found (with ``error`` set when the frame could not be read).

    Raises:
        PoseDetectorError: the detector is not installed.
        UnsafePathError: a frame outside ``roots``.
    """
    if roots is not None:
        from ssn3d.serving.paths import resolve_inside

        frame_paths = [resolve_inside(p, roots, must_exist=True, what="frame") for p in frame_paths]
    with PoseDetector(min_confidence=min_confidence) as detector:
        return detector.detect_many(frame_paths)


__all__ = [
    "PoseDetector",
    "PoseDetectorError",
    "PoseResult",
    "landmarks_to_parts",
    "pose_available",
    "suggest_keypoints",
]
