"""Plumbing of ``ssn3d.interchange``: joint tables, the joint -> part mapping, frame-name matching, parsing.

Paper, "Implementation Details / Supervised Labels": labels of head, body, crotch, elbows, knees and
feet made with OpenPose. The mapping rules are documented in ``ssn3d.interchange``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from ssn3d.annotations import AnnotationError
from ssn3d.keypoints import NUM_PARTS, PARTS

MAX_DOCUMENT_BYTES = 64 * 1024 * 1024  # ~200k person annotations: far beyond a hand-made label set
MAX_ITEMS = 1_000_000  # images + annotations in one document
MAX_COORD = 1e5  # the label store's own bound on a pixel coordinate
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# fmt: off
COCO_17 = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
           "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
           "left_knee", "right_knee", "left_ankle", "right_ankle")
OPENPOSE_COCO_18 = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
                    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar")
OPENPOSE_BODY_25 = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
                    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
                    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel")
# fmt: on
SKELETONS_BY_COUNT = {NUM_PARTS: PARTS, 17: COCO_17, 18: OPENPOSE_COCO_18, 25: OPENPOSE_BODY_25}

_HEAD = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
# For each of our parts, alternatives tried in order: ("all", joints) needs every joint labeled and
# takes their mean; ("any", joints) takes the mean of the labeled ones (visible ones first).
_RULES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "head": (("all", ("head",)), ("any", _HEAD)),
    "body": (("all", ("body",)), ("all", ("neck",)), ("all", ("left_shoulder", "right_shoulder"))),
    "crotch": (("all", ("crotch",)), ("all", ("mid_hip",)), ("all", ("left_hip", "right_hip"))),
    **{f"{side}_{j}": (("all", (f"{side}_{j}",)),) for side in ("left", "right") for j in ("elbow", "knee")},
    **{
        f"{side}_foot": (("all", (f"{side}_foot",)), ("all", (f"{side}_ankle",)))
        for side in ("left", "right")
    },
}


class InterchangeError(AnnotationError):
    """A document that cannot be imported at all; the message names it and the fix.

    ``reason`` is the short cause without the document's name (what an ``ImportReport`` lists).
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


# --------------------------------------------------------------------------- frames of a dataset


def _norm_name(name: str) -> PurePosixPath:
    return PurePosixPath(*[p for p in name.replace("\\", "/").split("/") if p not in ("", ".", "..")])


class FrameIndex:
    """The frames of one dataset (paths relative to its root), to match names found in foreign files.

    A name matches the frame with the same stem (``0001C1T0001F001`` in ``.../0001C1T0001F001.jpg``
    or ``0001C1T0001F001_keypoints.json``); among several, the one sharing the most trailing folders
    wins, and a tie is reported as ambiguous rather than guessed.

    Args:
        frames: relative POSIX paths, exactly the keys the label store uses.
        root: the dataset root, to read image sizes for export (optional).
    """

    def __init__(self, frames: Iterable[str], root: str | os.PathLike | None = None) -> None:
        self.root = None if root is None else Path(root)
        self.frames = sorted(set(frames))
        self._frame_set = set(self.frames)
        self._by_stem: dict[str, list[str]] = {}
        for f in self.frames:
            self._by_stem.setdefault(PurePosixPath(f).stem, []).append(f)

    @classmethod
    def from_root(cls, root: str | os.PathLike) -> FrameIndex:
        """Every image file under ``root`` (``.jpg``, ``.png``, ...)."""
        root = Path(root)
        if not root.is_dir():
            raise InterchangeError(
                f"dataset root {root} is not a folder; choose the folder that holds the frames."
            )
        frames = [
            (Path(d) / n).relative_to(root).as_posix()
            for d, _, names in os.walk(root)
            for n in names
            if n.lower().endswith(IMAGE_SUFFIXES)
        ]
        return cls(frames, root)

    @classmethod
    def from_tracklets(cls, tracklets: Iterable[Any], root: str | os.PathLike) -> FrameIndex:
        """The frames of ``(paths, pid, camid)`` tracklets, relative to ``root``."""
        root = Path(root).resolve()
        return cls((Path(p).resolve().relative_to(root).as_posix() for t in tracklets for p in t[0]), root)

    def __len__(self) -> int:
        return len(self.frames)

    def match(self, name: str) -> tuple[str | None, str]:
        """(frame, "") for a name found in a foreign file, or (None, why it matches none)."""
        path = _norm_name(name)
        stem = path.stem.removesuffix("_keypoints") if path.suffix.lower() == ".json" else path.stem
        candidates = self._by_stem.get(stem, [])
        if len(candidates) == 1:
            return candidates[0], ""
        if not candidates:
            return None, "no frame of that name in the dataset"
        folders = path.parts[:-1]

        def shared(frame: str) -> int:
            theirs, n = PurePosixPath(frame).parts[:-1], 0
            while n < min(len(folders), len(theirs)) and folders[-1 - n] == theirs[-1 - n]:
                n += 1
            return n

        scores = sorted(((shared(f), f) for f in candidates), reverse=True)
        if scores[0][0] > scores[1][0]:
            return scores[0][1], ""
        return None, "ambiguous: several frames have that name; give its folders too"

    def size(self, frame: str) -> tuple[int, int] | None:
        """(width, height) of a frame read from its header, or None when unknown.

        Only the index's own frames are opened: a label store edited by hand to name
        ``../../elsewhere`` gets no size rather than a peek outside the dataset.
        """
        if self.root is None or frame not in self._frame_set:
            return None
        try:
            with Image.open(self.root / frame) as img:
                return img.size
        except Exception:  # a missing or damaged frame has no size; the export omits it
            return None


def as_frame_index(dataset: FrameIndex | str | os.PathLike | Iterable[str]) -> FrameIndex:
    if isinstance(dataset, FrameIndex):
        return dataset
    if isinstance(dataset, str | os.PathLike):
        return FrameIndex.from_root(dataset)
    return FrameIndex(dataset)


# --------------------------------------------------------------------------- joint mapping


def canonical_joint(name: str) -> str:
    """``"RShoulder"`` -> ``"right_shoulder"``, ``"MidHip"`` -> ``"mid_hip"``, ``"left eye"`` -> ``"left_eye"``."""
    name = re.sub(r"^([LR])(?=[A-Z])", lambda m: "Left" if m[1] == "L" else "Right", name.strip())
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@functools.lru_cache(maxsize=64)
def _compile(joints: tuple[str, ...]) -> tuple[tuple[tuple[str, tuple[int, ...]], ...], ...]:
    """Per part, its alternatives as joint indices of this skeleton (alternatives it lacks dropped)."""
    where = {canonical_joint(j): i for i, j in reversed(list(enumerate(joints)))}
    compiled = []
    for part in PARTS:
        alts = []
        for how, names in _RULES[part]:
            idx = tuple(where[n] for n in names if n in where)
            if idx and (how == "any" or len(idx) == len(names)):
                alts.append((how, idx))
        compiled.append(tuple(alts))
    return tuple(compiled)


def map_joints(points: np.ndarray, joints: tuple[str, ...]) -> np.ndarray:
    """Map one person's joints onto our parts.

    Args:
        points: (K, 3) of (x, y, v) with v in {0, 1, 2}, in our continuous pixel coordinates.
        joints: the K joint names (COCO, OpenPose or ours).

    Returns:
        (9, 3) keypoints; parts with no labeled source joint stay (0, 0, 0).
    """
    rows = np.asarray(points, dtype=np.float64).tolist()  # plain floats: numpy is slow on 3-element rows
    out = np.zeros((NUM_PARTS, 3), dtype=np.float32)
    for i, alternatives in enumerate(_compile(tuple(joints))):
        for how, idx in alternatives:
            labeled = [rows[j] for j in idx if rows[j][2] > 0]
            if not labeled or (how == "all" and len(labeled) < len(idx)):
                continue
            if how == "any":
                labeled = [p for p in labeled if p[2] == 2] or labeled  # visible joints first
            v = min(p[2] for p in labeled) if how == "all" else max(p[2] for p in labeled)
            n = len(labeled)
            out[i] = (sum(p[0] for p in labeled) / n, sum(p[1] for p in labeled) / n, v)
            break
    return out


# --------------------------------------------------------------------------- parsing helpers


def read_json(source: Mapping[str, Any] | str | bytes | os.PathLike, what: str) -> Any:
    """A parsed JSON document: a mapping as is, ``str``/``bytes`` as JSON text, a ``Path`` read from disk."""
    if isinstance(source, Mapping):
        return source
    if isinstance(source, os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise InterchangeError(
                f"{what} {path} is not a file; choose the JSON file to import.", "not a file"
            )
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            raise InterchangeError(
                f"{what} {path} is larger than {MAX_DOCUMENT_BYTES >> 20} MB; split it.", "too large"
            )
        source = path.read_bytes()
    if not isinstance(source, str | bytes | bytearray):
        raise InterchangeError(
            f"{what} is a {type(source).__name__}, not a JSON document; pass its text or bytes.", "not JSON"
        )
    if len(source) > MAX_DOCUMENT_BYTES:
        raise InterchangeError(
            f"{what} is larger than {MAX_DOCUMENT_BYTES >> 20} MB; split it into smaller files.", "too large"
        )
    try:
        return json.loads(source)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, too many digits, deep nesting
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e).splitlines()[0][:120]
        raise InterchangeError(
            f"{what} is not valid JSON ({reason}); export it again from its tool.", "not valid JSON"
        ) from None


def _number(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    return -1e15 < v < 1e15 if isinstance(v, int) else math.isfinite(v)  # a huge int overflows float()


def parse_points(flat: Any, count: int | None, confidence: float | None) -> np.ndarray | str:
    """(K, 3) points in our coordinates from a flat [x, y, v-or-confidence, ...] list, or why not."""
    if not isinstance(flat, list) or not flat or len(flat) % 3:
        return "keypoints are not a list of x, y, v triples"
    if count is not None and len(flat) != 3 * count:
        return f"{len(flat) // 3} keypoints where the skeleton has {count}"
    if len(flat) > 3 * 1000 or not all(_number(v) for v in flat):
        return "keypoints hold a value that is not a finite number"
    pts = np.asarray(flat, dtype=np.float64).reshape(-1, 3)
    if confidence is None:
        if not np.isin(pts[:, 2], (0, 1, 2)).all():
            return "a visibility flag is not 0, 1 or 2"
    else:
        if ((pts[:, 2] < 0) | (pts[:, 2] > 1.0 + 1e-6)).any():
            return "a confidence lies outside [0, 1]"
        pts[:, 2] = np.where((pts[:, 2] >= confidence) & (pts[:, 2] > 0), 2, 0)  # 0: not detected
    labeled = pts[:, 2] > 0
    pts[labeled, :2] += 0.5
    if ((pts[labeled, :2] < 0) | (pts[labeled, :2] > MAX_COORD)).any():
        return "a keypoint lies outside any image"
    pts[~labeled] = 0
    return pts.astype(np.float32)
