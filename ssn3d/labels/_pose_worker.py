"""The pose detector's side of ``ssn3d.labels.pose``: run by the Python of the pose virtualenv, not imported.

This file imports nothing from ``ssn3d`` (that environment has mediapipe, numpy < 2 and OpenCV, but
no torch). It reads one JSON request per line on stdin, ``{"id": 3, "path": "/.../f001.jpg"}``, and
answers one JSON line per request on its own copy of stdout::

    {"id": 3, "size": [w, h], "landmarks": [[x_px, y_px, visibility], ... 33] | null, "error": null}

``landmarks`` is null when no person was found; ``error`` names a frame that could not be decoded.
Only ``model_complexity=1`` is used: its ``pose_landmark_full.tflite`` ships inside the wheel, while
complexities 0 and 2 would download their models on first use.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    # mediapipe and its libraries may print to fd 1; answers go to a private copy of it instead,
    # and fd 1 is pointed at stderr so that nothing else can interleave with the protocol.
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    os.environ.setdefault("GLOG_minloglevel", "2")

    import cv2
    import mediapipe as mp

    cv2.setNumThreads(1)
    pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, min_detection_confidence=0.5)
    out.write(json.dumps({"ready": True, "mediapipe": mp.__version__}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        answer = {"id": request.get("id"), "size": None, "landmarks": None, "error": None}
        image = cv2.imread(request["path"], cv2.IMREAD_COLOR)
        if image is None:
            answer["error"] = "cannot be decoded as an image"
        else:
            h, w = image.shape[:2]
            answer["size"] = [w, h]
            result = pose.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            if result.pose_landmarks is not None:
                answer["landmarks"] = [
                    [round(p.x * w, 2), round(p.y * h, 2), round(p.visibility, 4)]
                    for p in result.pose_landmarks.landmark
                ]
        out.write(json.dumps(answer) + "\n")
    pose.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
