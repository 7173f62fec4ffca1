#!/usr/bin/env bash
# Install what the tests need on a fresh machine, then run the whole suite.
# Browser tests drive the system Chromium (Debian's package): browsers are never downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements-dev.txt
python3 -m pip install -q --no-deps -e .
python3 -m pip install -q -e ".[video]"
# The pose detector lives in its own virtualenv (it needs numpy < 2); the video tests use real footage.
# An optional part that cannot be installed (a registry hiccup) makes its tests skip with a reason, not CI fail.
if ! .venv-pose/bin/python -c "import mediapipe" >/dev/null 2>&1; then
  bash scripts/install-pose.sh || echo "warning: the pose detector could not be installed; its tests will skip" >&2
fi
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
if [ ! -f /usr/share/doc/opencv-doc/examples/data/vtest.avi ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq opencv-doc >/dev/null; } ||
    echo "warning: opencv-doc (the real street video) could not be installed; its tests will skip" >&2
fi
exec python3 -m pytest -q "$@"
