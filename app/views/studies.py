"""Studies: the outputs of the paper's SSN studies (section "Study on SSN", Figures 4-6).

``python -m ssn3d study ...`` writes JSON records and PNG figures into a folder; this page finds
them under the workspace's ``outputs/`` and shows them: the random-data loss curves against log N
(Figure 5), the parts found across Amber-style paintings (Figure 6), Pedestrian-128 attention maps
(Figure 4), and the numbers each study measured. Each study's quick variant can be started from
here too: it runs in the background (``ssn3d.studies.jobs``), one at a time per workspace.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from app.common import shown_errors, workspace
from ssn3d.studies.figures import curve_colors
from ssn3d.studies.jobs import QUICK_ARGS, job_folder, job_state, launch_study, log_tail, running_jobs

ws = workspace()
S = st.session_state
ROOTS = (ws.home / "studies", ws.home / "outputs")  # the study CLI's default, and any other output folder
STUDY_FILES = ("amber", "pedestrians", "random")  # JSON stems the studies write (random: any random*.json)
TITLES = {
    "random": "Random data (Fig. 5)",
    "amber": "Amber paintings (Fig. 6)",
    "pedestrians": "Pedestrian 128 (Fig. 4)",
}
st.title("SSN studies")
st.caption(
    "SSN alone, on the data of the paper's studies. Run a quick variant below (a minute or two on a CPU), "
    "or the paper's settings on the command line: `python -m ssn3d study amber`, `python -m ssn3d study "
    "pedestrians`, `python -m ssn3d study random --grid --out studies/random` (add `--quick` for the "
    "variants run here). Every folder under `studies/` or `outputs/` of the workspace that holds a study's "
    "JSON shows below."
)


def _ago(t: float) -> str:
    s = max(0, int(time.time() - t))
    return f"{s} s" if s < 120 else f"{s // 60} min"


@st.fragment(run_every="2s" if running_jobs(ws) else None)  # ticks only while a study job runs
def study_jobs() -> None:
    busy = running_jobs(ws)
    for col, kind in zip(st.columns(len(QUICK_ARGS)), QUICK_ARGS, strict=True):
        folder = job_folder(ws, kind)
        job = job_state(folder)
        with col:
            if st.button(
                f"Run {TITLES[kind]}",
                key=f"study_run_{kind}",
                disabled=bool(busy),
                icon=":material/play_arrow:",
            ):
                with shown_errors():
                    launch_study(ws, kind)
                    S["study_watch"] = kind
                    st.rerun()  # the whole page: the fragment ticks while the job runs
            if job is None:
                continue
            if job["state"] == "running":
                st.caption(f":material/progress_activity: running for {_ago(job['started'])}")
            elif job["state"] == "done":
                st.caption(f":material/check: done {_ago(job['ended'])} ago: `{folder.relative_to(ws.home)}`")
            else:
                st.error(f"The {kind} study stopped without writing its results; the end of its log:")
                st.code(log_tail(folder) or "(empty log)", language=None)
    watched = S.get("study_watch")
    if watched and not busy:  # the job it started has ended: show its folder
        del S["study_watch"]
        if (job_state(job_folder(ws, watched)) or {}).get("state") == "done":
            S["study_show"] = job_folder(ws, watched)  # selected on the full run, before the selectbox exists
        st.rerun()


study_jobs()


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


def is_loss_figure(path: Path) -> bool:
    """The studies' PNGs of loss curves: ``<study>_loss.png``, and the random study's ``random*.png``."""
    return path.stem.endswith("_loss") or path.stem.startswith("random")


folders = study_folders(ROOTS)
if not folders:
    st.info("No study outputs yet under `studies/` or `outputs/` of the workspace: run one above.")
    st.stop()
if "study_show" in S:
    S["study_folder"] = S.pop("study_show")
if S.get("study_folder") not in folders:
    S.pop("study_folder", None)
folder = st.selectbox(
    "Study output", folders, key="study_folder", format_func=lambda p: str(p.relative_to(ws.home))
)
drawn_loss = False
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
            drawn_loss = True
            keys = [
                (str(r.get("dist", path.stem)), r.get("parts") if isinstance(r.get("parts"), int) else None)
                for r in runs
            ]
            colors = curve_colors(keys)
            fig = go.Figure()
            for r, key in zip(runs, keys, strict=True):
                name = " ".join(str(r[k]) for k in ("dist", "parts") if k in r) or path.stem
                fig.add_scatter(y=r["loss"], mode="lines", name=name, line=dict(color=colors[key], width=2))
            for n in sorted({n for _, n in keys if n is not None and n > 1}):
                # one guide per part count, under the curves: "ones" sits exactly at log N and must show
                fig.add_hline(
                    y=math.log(n),
                    line_dash="dot",
                    line_color="gray",
                    layer="below",
                    annotation_text=f"log {n}",
                    annotation_position="top left",
                )
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
# the study's own PNG of its loss curves is the chart above drawn again: show each figure once
images = [p for p in sorted(folder.glob("*.png")) if not (drawn_loss and is_loss_figure(p))]
for img in images:
    st.image(str(img), caption=img.name)
