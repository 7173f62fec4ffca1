"""Other skeletons onto our nine parts: the joint tables of COCO and OpenPose, and the mapping rules.

Paper, "Implementation Details / Supervised Labels": the supervised strategy's labels come from
OpenPose, marking "head, body, crotch, left and right elbows, knees and feet". Those nine parts are
``ssn3d.keypoints.PARTS``; this module maps other skeletons onto them:

===========  ========================================  ==========================================
our part     COCO-17                                   OpenPose BODY_25 / COCO-18
===========  ========================================  ==========================================
head         mean of labeled nose, eyes, ears          same
body         mid-point of the shoulders                Neck (OpenPose's own shoulder mid-point)
crotch       mid-point of the hips                     MidHip (BODY_25) or mid-point of the hips
elbows       elbows                                    elbows
knees        knees                                     knees
feet         ankles                                    ankles (toes and heels are ignored)
===========  ========================================  ==========================================

Left and right are the person's own, as in both formats. COCO coordinates are pixel indices, ours
are continuous with pixel centres at +0.5 (``ssn3d.keypoints``), so import adds 0.5 and export (``ssn3d.labels.coco``, ``ssn3d.labels.openpose``).
"""

from __future__ import annotations

import functools
import re

import numpy as np

from ssn3d.keypoints import NUM_PARTS, PARTS

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
