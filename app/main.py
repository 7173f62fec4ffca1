"""SSN3D Studio: ``streamlit run app/main.py``.

Label anchor keypoints, train, check that SSN's parts stay on their body parts, browse retrieval
(paper: "SSN3D: Self-Separated Network to Align Parts for 3D Convolution in Video Person
Re-Identification", AAAI 2021). One file per page in ``app/views``; the work is done by ``ssn3d``.

The folder is not called ``pages/``: Streamlit treats a ``pages/`` folder next to the main script as
the old multipage layout and then serves every file in it at its own URL *without running this
script*, so the access gate below and ``st.navigation`` would be bypassed.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:  # `streamlit run app/main.py` puts app/ on the path, not the repository
    sys.path.insert(0, _REPO)

import streamlit as st  # noqa: E402

from app.auth import require_access  # noqa: E402
from app.common import current_spec, dataset_in_url, demo_mode, sidebar_dataset, spec_from_url  # noqa: E402
from app.demo import demo_with_progress_bar  # noqa: E402

st.set_page_config(page_title="SSN3D Studio", page_icon=":material/directions_walk:", layout="wide")
st.session_state["ssn3d_role"] = require_access()

if demo_mode() and not st.session_state.get("ssn3d_demo_checked"):
    # SSN3D_DEMO=1 (scripts/demo.sh): the demo is generated (when missing) and selected without a click,
    # once per browser session, unless the URL names the dataset to open (a reload keeps its dataset)
    st.session_state["ssn3d_demo_checked"] = True
    if spec_from_url() is None:
        demo_with_progress_bar()

pages = [
    st.Page("views/data.py", title="Data", icon=":material/folder_open:", default=True),
    st.Page("views/annotate.py", title="Annotate", icon=":material/ads_click:"),
    st.Page("views/train.py", title="Train", icon=":material/model_training:"),
    st.Page("views/attention.py", title="Attention", icon=":material/grid_view:"),
    st.Page("views/retrieval.py", title="Retrieval", icon=":material/search:"),
    st.Page("views/studies.py", title="Studies", icon=":material/science:"),
]
page = st.navigation(pages)
spec = current_spec()
sidebar_dataset(spec)
dataset_in_url(spec)
page.run()
