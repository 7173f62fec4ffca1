#!/usr/bin/env bash
# Install the offline pose detector (mediapipe 0.10.21 and its bundled models) into its own
# virtualenv, .venv-pose/ at the repository root, where ssn3d.labels.pose finds it.
# It lives apart from the main environment because it needs numpy < 2 and protobuf < 5.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SSN3D_POSE_VENV:-.venv-pose}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q -r requirements-pose.txt
"$VENV/bin/python" -m pip install -q --no-deps mediapipe==0.10.21
"$VENV/bin/python" -c "import mediapipe as mp; mp.solutions.pose.Pose(static_image_mode=True).close()"
echo "pose detector ready in $VENV"
