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
ROOTS = (ws.home / "studies", ws.home / "outputs")  # the study CLI's default, and any other output folder
STUDY_FILES = ("amber", "pedestrians", "random")  # JSON stems the studies write (random: any random*.json)
st.title("SSN studies")
st.caption(
    "Produce the outputs on the command line: `python -m ssn3d study amber --quick`, "
    "`python -m ssn3d study pedestrians --quick`, `python -m ssn3d study random --grid --json "
    "studies/random/random.json --plot studies/random/random.png` (drop `--quick` for the paper's settings). "
    "Every folder under `studies/` or `outputs/` of the workspace that holds a study's JSON shows here."
)


@st.cache_data(show_spinner=False, max_entries=64)
def read_json(path: str, stamp: float) -> object:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def study_folders(roots: tuple[Path, ...], depth: int = 3) -> list[Path]:
    """Folders holding a study record (amber.json, pedestrians.json, random*.json), at most ``depth`` deep."""
    found = set()
    for root in roots:
        if root.is_dir():
            for p in root.rglob("*.json"):
                if len(p.relative_to(root).parts) <= depth and p.stem.startswith(STUDY_FILES):
                    found.add(p.parent)
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


folders = study_folders(ROOTS)
if not folders:
    st.info("No study outputs yet under `studies/` or `outputs/` of the workspace.")
    st.stop()
folder = st.selectbox(
    "Study output", folders, key="study_folder", format_func=lambda p: str(p.relative_to(ws.home))
)
for path in sorted(p for p in folder.glob("*.json") if p.stem.startswith(STUDY_FILES)):
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
        results = doc.get("results") if isinstance(doc, dict) else None
        if isinstance(results, dict):  # Pedestrian-128: PCK per part for each strategy, and the baselines
            rows = [
                {"strategy": k, "overall": r.get("overall"), **r.get("per_part", {})}
                for k, r in results.items()
                if isinstance(r, dict)
            ]
            base = doc.get("baselines", {})
            mean_pos = base.get("mean_position") if isinstance(base, dict) else None
            if isinstance(mean_pos, dict):
                rows.append(
                    {
                        "strategy": "mean position",
                        "overall": mean_pos.get("overall"),
                        **mean_pos.get("per_part", {}),
                    }
                )
            st.caption("PCK on the unlabeled crops (peak within 0.1 x crop height of the keypoint)")
            st.dataframe(rows, hide_index=True)
        table = {k: v for k, v in scalars(doc).items() if k not in ("data", "folder", "device")}
        if table:
            st.dataframe([table], hide_index=True)
images = sorted(folder.glob("*.png"))
for img in images:
    st.image(str(img), caption=img.name)
