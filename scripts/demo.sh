#!/usr/bin/env bash
# Install the runtime and start the app on its built-in demo (synthetic walkers + the demo model).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements.txt
python3 -m pip install -q --no-deps -e .
SSN3D_DEMO=1 exec python3 -m streamlit run app/main.py "$@"
