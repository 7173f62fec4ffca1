"""Retrieval: evaluate a model (or load its saved evaluation), CMC and mAP, and each query's top-k.

Paper, "Evaluation Protocols": mAP and CMC over query vs gallery tracklets, 32-frame clips averaged
per tracklet ("Training and testing protocols"). The numbers come from ``ssn3d.engine.evaluate``
(``eval.json``); this page draws them: green borders for the right person, red for a wrong one.
"""

from __future__ import annotations

import json
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

S = st.session_state
ws = workspace()
st.title("Retrieval")
GREEN, RED = (40, 170, 70), (215, 40, 40)


def eval_paths(ckpt: Path, dataset_id: str) -> tuple[Path | None, Path]:
    """(the run's own eval.json or None, where this page writes an evaluation of ``ckpt`` on ``dataset_id``)."""
    from ssn3d.engine.evaluate import resolve_checkpoint

    path, default = resolve_checkpoint(ckpt)
    if path.parent.name == "checkpoints":  # a run's checkpoint: its folder keeps the evaluations
        return default, default.parent / f"eval-{ckpt.stem}-{dataset_id}.json"
    return None, ws.home / "outputs" / f"{ckpt.stem}-{dataset_id}.eval.json"


@st.cache_data(show_spinner=False, max_entries=16)
def load_report(path: str, stamp: float) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


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
with shown_errors(stop=True):
    saved, out = eval_paths(ckpt, dataset.dataset_id)
report = None
for path in (out, saved):
    if path is not None and path.is_file():
        with shown_errors():
            doc = load_report(str(path), path.stat().st_mtime)
            if doc.get("dataset", {}).get("id") == dataset.dataset_id:
                report = doc
                break
c = st.columns([1, 3])
run_eval = c[0].button("Evaluate now" if report is None else "Evaluate again", key="ret_eval", type="primary")
c[1].caption(
    f"On **{spec.label or dataset.dataset_id}**. For a large dataset use `python -m ssn3d evaluate RUN` on the "
    "command line; its eval.json shows here."
)
if run_eval:
    from ssn3d.engine.evaluate import evaluate_target

    use_app_threads()
    bar = st.progress(0.0, text="Extracting features...")
    with shown_errors():
        report, _ = evaluate_target(
            ckpt,
            dataset=spec.name,
            root=str(dataset.root),
            options=dict(spec.options),
            out=out,
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

m = report["metrics"]
cols = st.columns(5)
for col, (key, name) in zip(
    cols, [("mAP", "mAP"), ("top1", "Rank-1"), ("top5", "Rank-5"), ("top10", "Rank-10"), ("mINP", "mINP")]
):
    col.metric(name, f"{100 * m[key]:.1f}%")
cmc = report["cmc"][:50]
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

queries, gallery, qinfo = report["query"], report["gallery"], report["queries"]
fails = st.toggle("Only queries that fail at rank 1", key="ret_fail")
pool = [q for q in qinfo if q.get("ap") is not None and (not fails or q["first_hit"] != 1)]
if not pool:
    st.info("No query to show with this filter.")
    st.stop()
qi = st.selectbox(
    "Query",
    [q["index"] for q in pool],
    key="ret_query",
    format_func=lambda i: (
        f"#{i}  person {queries[i]['pid']}  cam {queries[i]['camid'] + 1}  "
        f"AP {100 * qinfo[i]['ap']:.1f}%  first match at rank {qinfo[i]['first_hit']}"
    ),
)
q, info = queries[qi], qinfo[qi]
st.markdown(
    f"**Query** person {q['pid']}, camera {q['camid'] + 1}: AP **{100 * info['ap']:.1f}%**, "
    f"{info['num_matches']} matching gallery tracklet{'' if info['num_matches'] == 1 else 's'}"
)
with shown_errors():
    st.image([thumbnail(str(root / f), 96) for f in q["frames"]])
k = st.slider(
    "Top k", 1, max(1, len(info.get("ranked", []))), min(10, max(1, len(info.get("ranked", [])))), key="ret_k"
)
ranked = info.get("ranked", [])[:k]
if not ranked:
    st.info("This evaluation kept no ranked list; evaluate again to get one.")
cols = st.columns(min(5, max(1, len(ranked))))
for n, item in enumerate(ranked):
    g = gallery[item["index"]]
    with cols[n % len(cols)], shown_errors():
        mid = g["frames"][len(g["frames"]) // 2]
        st.image(
            bordered(str(root / mid), GREEN if item["match"] else RED),
            caption=f"{n + 1}. person {g['pid']} cam {g['camid'] + 1}  d={item['distance']:.3f}",
        )
