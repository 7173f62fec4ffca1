"""Tracklets from a camera video: detect people, link them into tracks, crop, write the ``folder`` layout.

The paper's datasets (MARS, DukeMTMC-VideoReID) were made this way: a person detector on every frame,
a tracker linking the boxes, one tracklet per track. Here:

* people: OpenCV's HOG people detector (Dalal and Triggs), whose SVM ships compiled into OpenCV, so
  nothing is downloaded; the detectors that find more people (torchvision's, YOLO) need weights
  fetched at run time, and MediaPipe's pose detector finds one person per frame;
* tracks: ByteTrack from Roboflow's ``trackers`` (maintained, Apache-2.0, numpy 2); its second
  association pass on low-confidence boxes keeps tracks alive through HOG's weak frames;
* output: ``OUT/train/<track id + 1>/c1_t00/f<frame>.jpg`` (one camera) and ``OUT/dataset.json``, which
  marks the identities as unverified track ids and keeps each crop's box. Everything is written to a
  hidden sibling folder first and renamed at the end, so a failed import leaves nothing behind.

Both packages are the optional ``video`` extra (``pip install -e .[video]``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

VIDEO_EXTS = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
INSTALL_HINT = "install the video extra with `pip install -e .[video]` (OpenCV and trackers)"
CAMERA = 1  # one video is one camera: tracklet folders are c1_*

ProgressFn = Callable[[int, int], None]


class VideoImportError(ValueError):
    """A video that cannot be imported; the message is one sentence naming it and the fix."""


def _require_packages():
    # FFmpeg and OpenCV print their own complaints about a broken file straight to stderr; the
    # VideoImportError below already says it in one sentence (set these variables to see them).
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    try:
        import cv2
        import supervision
        import trackers
    except ImportError:
        raise VideoImportError(f"video import needs OpenCV and trackers; {INSTALL_HINT}.") from None
    return cv2, supervision, trackers


class PeopleDetector:
    """OpenCV's HOG people detector on whole frames.

    Args:
        upscale: frames are enlarged by this factor first; HOG's window is 64 x 128, so people
            shorter than ~128 / upscale pixels go unseen (1.0 finds the nearer walkers of a
            768 x 576 street view at ~9 frames/s on one idle core; 1.5 found 1.7x more at 1/4 the speed).
        min_confidence: the smallest SVM margin kept; margins are clipped to [0, 1] as confidences.
    """

    def __init__(self, *, upscale: float = 1.0, min_confidence: float = 0.1) -> None:
        cv2, _, _ = _require_packages()
        self._cv2 = cv2
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.upscale = upscale
        self.min_confidence = min_confidence

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (K, 4) ``x0, y0, x1, y1`` in frame pixels and confidences (K,) of one BGR frame (H, W, 3)."""
        image = frame
        if self.upscale != 1.0:
            image = self._cv2.resize(frame, None, fx=self.upscale, fy=self.upscale)
        rects, weights = self._hog.detectMultiScale(image, winStride=(8, 8), padding=(8, 8), scale=1.05)
        if len(rects) == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        rects = np.asarray(rects, np.float32).reshape(-1, 4) / self.upscale  # (K, 4) x, y, w, h
        conf = np.clip(np.asarray(weights, np.float32).ravel(), 0.0, 1.0)
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)  # (K, 4) xyxy
        h, w = frame.shape[:2]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        keep = conf >= self.min_confidence
        return boxes[keep], conf[keep]


@dataclass
class ImportResult:
    """What ``import_video`` wrote.

    Attributes:
        root: the new dataset folder (``folder`` layout).
        frames_read: video frames decoded; frames_used: those given to the detector (every N-th).
        detections: person boxes found; tracks: tracks the tracker made.
        tracklets: {track id: number of crops} of the tracks kept (at least ``min_length`` crops).
    """

    root: Path
    frames_read: int = 0
    frames_used: int = 0
    detections: int = 0
    tracks: int = 0
    tracklets: dict[int, int] = field(default_factory=dict)


def _open_video(cv2, video: Path):
    if not video.is_file():
        raise FileNotFoundError(f"video {video} does not exist; check the path.")
    if video.suffix.lower() not in VIDEO_EXTS:
        raise VideoImportError(
            f"{video.name} is not a supported video type; use one of {', '.join(VIDEO_EXTS)}."
        )
    cap = cv2.VideoCapture(os.fspath(video))
    ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok or first is None:
        cap.release()
        raise VideoImportError(
            f"{video.name} cannot be decoded as a video; check the file or re-encode it (e.g. H.264 .mp4)."
        )
    return cap, first


def _new_output(out: Path) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise VideoImportError(f"output folder {out} is not empty; choose a new folder.")
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))


# Long on purpose: one read-detect-track-crop loop over a video, staged then committed; its state is local.
def import_video(
    video: str | os.PathLike,
    out: str | os.PathLike,
    *,
    every: int = 1,
    min_length: int = 8,
    max_frames: int | None = None,
    detector: PeopleDetector | None = None,
    progress: ProgressFn | None = None,
    roots: Sequence[str | os.PathLike] | None = None,
) -> ImportResult:
    """Detect, track and crop the people of a video into a new ``folder`` dataset (one call for the Data page).

    Args:
        video: the video file.
        out: the dataset folder to create; it must not exist or be empty.
        every: use every N-th frame (10 fps footage at ``every=2`` gives 5 fps tracklets).
        min_length: tracks with fewer crops are dropped (short tracks are mostly false detections).
        max_frames: stop after this many decoded frames (None: the whole video).
        detector: the people detector (default: ``PeopleDetector()``).
        progress: called as ``progress(frames_read, total_frames)``; total is 0 when the container
            does not say.
        roots: when given (the app: ``Workspace.allowed_roots``), ``video`` and ``out`` must lie inside
            these folders (``ssn3d.serving.paths.resolve_inside``).

    Returns:
        An ``ImportResult``.

    Raises:
        VideoImportError: an unsupported or undecodable video, a missing package, a non-empty output,
            or a video in which no person was tracked for ``min_length`` frames.
        UnsafePathError: ``video`` or ``out`` outside ``roots``.
    """
    if every < 1 or min_length < 1:
        raise VideoImportError(f"--every ({every}) and --min-length ({min_length}) must be at least 1.")
    if roots is not None:
        from ssn3d.serving.paths import resolve_inside

        video = resolve_inside(video, roots, must_exist=True, what="video")
        out = resolve_inside(out, roots, what="output folder")
    cv2, sv, trackers = _require_packages()
    video, out = Path(video), Path(out)
    cap, frame = _open_video(cv2, video)
    detector = detector or PeopleDetector()
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    if max_frames is not None:
        total = min(total, max_frames) if total else max_frames
    tracker = trackers.ByteTrackTracker(
        frame_rate=fps / every,
        lost_track_buffer=max(1, round(fps / every)),  # a person unseen for a second is gone
        track_activation_threshold=0.5,  # HOG margins >= 0.5 are nearly always people
        high_conf_det_threshold=0.5,
        minimum_consecutive_frames=2,
    )
    staging = _new_output(out)
    result = ImportResult(root=out)
    crops: dict[int, list[list[float]]] = {}  # track id -> [[frame, x0, y0, x1, y1], ...]
    try:
        while frame is not None and (max_frames is None or result.frames_read < max_frames):
            index = result.frames_read
            result.frames_read += 1
            if index % every == 0:
                result.frames_used += 1
                boxes, conf = detector(frame)
                result.detections += len(boxes)
                tracked = tracker.update(sv.Detections(xyxy=boxes.reshape(-1, 4), confidence=conf))
                for box, tid in zip(tracked.xyxy, tracked.tracker_id):
                    pid = int(tid) + 1  # ByteTrack counts from 0; person folders count from 1
                    if tid >= 0 and _write_crop(cv2, frame, box, staging, pid, index):
                        crops.setdefault(pid, []).append([index, *map(float, box)])
            if progress is not None:
                progress(result.frames_read, total)
            ok, frame = cap.read()
            frame = frame if ok else None
        result.tracks = len(crops)
        kept = {tid: rows for tid, rows in crops.items() if len(rows) >= min_length}
        if not kept:
            raise VideoImportError(
                f"no person was tracked for {min_length} frames in {video.name}; "
                "try a video with people walking through it, or a smaller --min-length."
            )
        for tid in set(crops) - set(kept):
            shutil.rmtree(staging / "train" / f"{tid:04d}", ignore_errors=True)
        result.tracklets = {tid: len(rows) for tid, rows in sorted(kept.items())}
        _write_manifest(staging / "dataset.json", video, fps, every, min_length, kept)
        if out.exists():  # an empty folder (checked above): the staging folder takes its place
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
        raise
    finally:
        cap.release()
    log.info("imported %d tracklets from %s into %s", len(result.tracklets), video.name, out)
    return result


def _write_crop(cv2, frame: np.ndarray, box: np.ndarray, root: Path, tid: int, index: int) -> bool:
    h, w = frame.shape[:2]
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x1 - x0 < 2 or y1 - y0 < 2:  # a box pushed off the frame edge: nothing to crop
        return False
    folder = root / "train" / f"{tid:04d}" / f"c{CAMERA}_t00"
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(os.fspath(folder / f"f{index:06d}.jpg"), frame[y0:y1, x0:x1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    return True


def _write_manifest(path: Path, video: Path, fps: float, every: int, min_length: int, kept: dict) -> None:
    doc = {
        "source": "video",
        "video": video.name,
        "fps": fps,
        "every": every,
        "min_length": min_length,
        "cameras": 1,
        "identities": "unverified",  # a track id is one tracker's guess: one person may hold several ids
        "detector": "opencv-hog-people",
        "tracker": "bytetrack (trackers)",
        "tracks": {
            f"{tid:04d}": {
                "frames": [int(r[0]) for r in rows],
                "boxes": [[round(v, 1) for v in r[1:]] for r in rows],
            }
            for tid, rows in sorted(kept.items())
        },
    }
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
