"""Studies: the outputs of the paper's SSN studies (section "Study on SSN", Figures 4-6).

``python -m ssn3d study ...`` writes JSON records and PNG figures into a folder; this page finds
them under the workspace's ``outputs/`` and shows them: the random-data loss curves against log N
(Figure 5), the parts found across Amber-style paintings (Figure 6), Pedestrian-128 attention maps
(Figure 4), and the numbers each study measured.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from app.common import shown_errors, workspace

ws = workspace()
OUT = ws.home / "outputs"
st.title("SSN studies")
st.caption(
    "Produce the outputs on the command line, e.g. `python -m ssn3d study random --grid --json "
    "outputs/random/random.json --plot outputs/random/random.png`; every folder under `outputs/` that holds "
    "a study's JSON shows here."
)


@st.cache_data(show_spinner=False, max_entries=64)
def read_json(path: str, stamp: float) -> object:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def study_folders(root: Path, depth: int = 3) -> list[Path]:
    if not root.is_dir():
        return []
    found = {p.parent for p in root.rglob("*.json") if len(p.relative_to(root).parts) <= depth}
    return sorted(found)


def loss_runs(doc: object) -> list[dict]:
    """The loss curves of a study record: {"loss": [...]} or {"runs": [{"loss": [...]}, ...]}."""
    if isinstance(doc, dict) and isinstance(doc.get("runs"), list):
        return [r for r in doc["runs"] if isinstance(r, dict) and isinstance(r.get("loss"), list)]
    if isinstance(doc, dict) and isinstance(doc.get("loss"), list):
        return [doc]
    return []


def scalars(doc: object) -> dict:
    if not isinstance(doc, dict):
        return {}
    return {k: v for k, v in doc.items() if isinstance(v, int | float | str) and not isinstance(v, bool)}


folders = study_folders(OUT)
if not folders:
    st.info(f"No study outputs yet under `{OUT.name}/` of the workspace.")
    st.stop()
folder = st.selectbox(
    "Study output", folders, key="study_folder", format_func=lambda p: str(p.relative_to(OUT))
)
for path in sorted(folder.glob("*.json")):
    with shown_errors():
        try:
            doc = read_json(str(path), path.stat().st_mtime)
        except ValueError:
            st.warning(f"{path.name} is not valid JSON; run the study again.")
            continue
        st.subheader(path.stem)
        runs = loss_runs(doc)
        if runs:
            fig = go.Figure()
            for r in runs:
                name = " ".join(str(r[k]) for k in ("dist", "parts") if k in r) or path.stem
                fig.add_scatter(y=r["loss"], mode="lines", name=f"{name}")
                parts = r.get("parts")
                if isinstance(parts, int) and parts > 1:
                    fig.add_hline(y=math.log(parts), line_dash="dot", opacity=0.4)
            fig.update_layout(
                height=320,
                margin=dict(l=10, r=10, t=30, b=10),
                xaxis_title="iteration",
                yaxis_title="L_SSN (dotted: log N, chance)",
            )
            st.plotly_chart(fig, key=f"study_loss_{path.stem}")
        hits = doc.get("hits") if isinstance(doc, dict) else None
        if isinstance(hits, dict):
            rate, chance = hits.get("motif_hit_rate"), hits.get("chance_rate")
            if isinstance(rate, int | float) and isinstance(chance, int | float):
                c = st.columns(2)
                c[0].metric("Motif hit rate", f"{100 * rate:.1f}%")
                c[1].metric("A random window", f"{100 * chance:.1f}%")
            best = hits.get("best")
            if isinstance(best, dict):
                st.dataframe(
                    [{"motif": k, **v} for k, v in best.items() if isinstance(v, dict)], hide_index=True
                )
        table = {k: v for k, v in scalars(doc).items() if k not in ("data", "folder", "device")}
        if table:
            st.dataframe([table], hide_index=True)
images = sorted(folder.glob("*.png"))
for img in images:
    st.image(str(img), caption=img.name)
