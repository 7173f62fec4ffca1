"""Retrieval: evaluate a model (or load its saved evaluation), CMC and mAP, and each query's top-k.

Paper, "Evaluation Protocols": mAP and CMC over query vs gallery tracklets, 32-frame clips averaged
per tracklet ("Training and testing protocols"). The numbers come from ``ssn3d.engine.evaluate``
(``eval.json``); this page draws them: green borders for the right person, red for a wrong one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image, ImageOps

from app.common import (
    checkpoint_choices,
    require_dataset,
    shown_errors,
    thumbnail,
    use_app_threads,
    workspace,
)
from ssn3d.engine.evaluations import REPORT_TOPK, EvalReport, find_report, locate_evaluation

S = st.session_state
ws = workspace()
st.title("Retrieval")
GREEN, RED = (40, 170, 70), (215, 40, 40)
PER_ROW = 5  # thumbnails per row of the ranking


@st.cache_resource(show_spinner=False, max_entries=16)
def saved_report(
    ckpt: str, dataset_id: str, sizes: tuple[int, int], stamps: tuple[float, ...]
) -> EvalReport | None:
    """The saved evaluation that applies (``ssn3d.engine.evaluations.find_report``), read again when a
    candidate or the checkpoint changes (``stamps``). The report is never mutated by the page."""
    location = locate_evaluation(ckpt, dataset_id, outputs=ws.home / "outputs")
    return find_report(location, dataset_id, sizes)


def _stamp(path: Path) -> float:
    return path.stat().st_mtime if path.is_file() else 0.0


def bordered(path: str, color: tuple[int, int, int] | None, height: int = 96) -> np.ndarray:
    img = Image.fromarray(thumbnail(path, height))
    return np.asarray(ImageOps.expand(img, border=4, fill=color or (200, 200, 200)))


spec, dataset = require_dataset()
choices = checkpoint_choices(ws)
if not choices:
    st.warning(
        "No checkpoint is available yet: the demo model (assets/demo_model.pt) is not installed and no run "
        "has saved one. Train a run on the Train page, then come back."
    )
    st.stop()
label = st.selectbox("Model", list(choices), key="ret_model")
ckpt = choices[label]
sizes = (len(dataset.query), len(dataset.gallery))
with shown_errors(stop=True):
    location = locate_evaluation(ckpt, dataset.dataset_id, outputs=ws.home / "outputs")
    stamps = tuple(_stamp(p) for p in (ckpt, *location.candidates))
    report = saved_report(str(ckpt), dataset.dataset_id, sizes, stamps)
c = st.columns([1, 3])
run_eval = c[0].button("Evaluate now" if report is None else "Evaluate again", key="ret_eval", type="primary")
if report is not None and report.path is not None and report.path.name == "eval.json":
    where = "the run's own evaluation (written at the end of training or by `python -m ssn3d evaluate`)"
else:
    where = "this page's evaluation" if report is not None else "no evaluation yet"
c[1].caption(
    f"On **{spec.label or dataset.dataset_id}**: {where}. For a large dataset use `python -m ssn3d evaluate RUN` "
    "on the command line; its eval.json shows here."
)
if run_eval:
    from ssn3d.engine.evaluate import evaluate_target

    use_app_threads()
    bar = st.progress(0.0, text="Extracting features...")
    with shown_errors():
        evaluate_target(
            ckpt,
            dataset=spec.name,
            root=str(dataset.root),
            options=dict(spec.options),
            out=location.write_to,
            topk=REPORT_TOPK,
            workers=0,
            progress=lambda d, t: bar.progress(
                min(1.0, d / max(1, t)), text=f"Extracting features: {d}/{t} clips"
            ),
        )
        st.rerun()  # draw the page again from the saved evaluation
    bar.empty()
if report is None:
    st.info("This model has no evaluation on this dataset yet: press **Evaluate now**.")
    st.stop()
root = dataset.root

m = report.metrics
cols = st.columns(5)
for col, (key, name) in zip(
    cols, [("mAP", "mAP"), ("top1", "Rank-1"), ("top5", "Rank-5"), ("top10", "Rank-10"), ("mINP", "mINP")]
):
    col.metric(name, f"{100 * m[key]:.1f}%")
cmc = report.cmc[:50]
fig = go.Figure(go.Scatter(x=list(range(1, len(cmc) + 1)), y=[100 * v for v in cmc], mode="lines+markers"))
fig.update_layout(
    height=260,
    margin=dict(l=10, r=10, t=30, b=10),
    xaxis_title="rank",
    yaxis_title="matching rate (%)",
    title="CMC",
)
if len(cmc) <= 12:  # a small gallery: one tick per rank, not 1.5, 2.5
    fig.update_xaxes(tick0=1, dtick=1)
fig.update_yaxes(range=[max(0.0, 100 * min(cmc, default=0.0) - 5), 101])
st.plotly_chart(fig, key="ret_cmc")

queries, gallery = report.query, report.gallery
fails = st.toggle("Only queries that fail at rank 1", key="ret_fail")
pool = [q for q in report.queries if q.ap is not None and (not fails or q.first_hit != 1)]
if not pool:
    st.info("No query to show with this filter.")
    st.stop()
by_index = {q.index: q for q in pool}
qi = st.selectbox(
    "Query",
    list(by_index),
    key="ret_query",
    format_func=lambda i: (
        f"#{i}  person {queries[i].pid}  cam {queries[i].camid + 1}  "
        f"AP {100 * by_index[i].ap:.1f}%  first match at rank {by_index[i].first_hit}"
    ),
)
q, info = queries[qi], by_index[qi]
st.markdown(
    f"**Query** person {q.pid}, camera {q.camid + 1}: AP **{100 * info.ap:.1f}%**, first true match at "
    f"rank **{info.first_hit}**, {info.num_matches} matching gallery tracklet{'' if info.num_matches == 1 else 's'}"
)
with shown_errors():
    st.image([thumbnail(str(root / f), 96) for f in q.frames])
kept = len(info.ranked)
if not kept:
    st.info("This evaluation kept no ranked list; evaluate again to get one.")
    st.stop()
k = st.slider("Top k", 1, kept, min(10, kept), key="ret_k") if kept > 1 else 1
items = list(info.ranked[:k])
first = info.first_match
beyond = first is not None and first.rank > k
if beyond:  # the ranking stops at k: the first true match follows it, with its rank
    items.append(first)
cols = st.columns(PER_ROW)
for n, item in enumerate(items):
    g = gallery[item.index]
    with cols[n % PER_ROW], shown_errors():
        mid = g.frames[len(g.frames) // 2]
        st.image(
            bordered(str(root / mid), GREEN if item.match else RED),
            caption=(
                f"{item.rank}. person {g.pid} cam {g.camid + 1}  d={item.distance:.3f}"
                + ("  (first true match)" if item is first and beyond else "")
            ),
        )
if beyond:
    st.caption(
        f"The first true match ranks {first.rank}, past the top {k}: it is shown last, after a gap in rank."
    )
