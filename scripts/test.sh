#!/usr/bin/env bash
# Install what the tests need on a fresh machine, then run the whole suite.
# Browser tests drive the system Chromium (Debian's package): browsers are never downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements-dev.txt
python3 -m pip install -q --no-deps -e .
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
exec python3 -m pytest -q "$@"
