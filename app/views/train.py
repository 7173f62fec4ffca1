"""Train: launch a background run, watch its curves live, cancel or resume it, compare runs.

A run is ``python -m ssn3d train`` in its own process (``ssn3d.runs``); this page only reads
its folder (status, metrics, log), so reloading the page, closing the tab or opening a second one
loses nothing, and the run's lock refuses a second launch of the same run. Loss: eq. (6),
L = L_tri + lambda * L_SSN (paper, "Loss Function"). Each evaluation also measures part PCK when the
test frames have keypoints (``ssn3d.engine.evaluate``), and a run whose SSN has not separated the
parts carries a warning in its status, shown here.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from app.auth import current_role, may_control, owner_tag
from app.common import REPO, current_spec, label_store, load_dataset, shown_errors, workspace
from ssn3d.config import Config, load_config
from ssn3d.keypoints import NUM_PARTS
from ssn3d.runs.folder import clean_run_name, read_owner, tail_log, write_owner
from ssn3d.runs.prepare import has_part_aids, part_aids

S = st.session_state
ws = workspace()
st.title("Train")
# one launch per token: a double click cannot start two runs
S.setdefault("train_token", uuid.uuid4().hex[:6])


def cuda_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def device_choices() -> list[str]:
    """auto, cpu, and the GPUs this server has (cuda:N when there are several)."""
    n = cuda_devices()
    return ["auto", "cpu"] + (["cuda"] if n else []) + ([f"cuda:{i}" for i in range(n)] if n > 1 else [])


def _base_configs() -> dict[str, Path]:
    return {p.name: p for p in sorted((REPO / "configs").glob("*.yaml"))}


def _fmt_eta(eta) -> str:
    if eta is None:
        return ""
    eta = int(eta)
    return f"{eta // 3600}h{eta % 3600 // 60:02d}m" if eta >= 3600 else f"{eta // 60}m{eta % 60:02d}s"


# ----------------------------------------------------------------------------- launch form

FORM_LABELS = {  # config key -> the form's label, so a refusal names what to change on the page
    "model.strategy": "Strategy",
    "model.shared_classifier": "Shared attention classifier",
    "loss.ssn_lambda": "lambda (L_SSN weight)",
    "model.num_parts": "N parts",
    "data.seq_len": "T frames per clip",
    "model.num_frames": "T frames per clip",
    "train.epochs": "Epochs",
    "data.num_ids": "P identities per batch",
    "data.num_instances": "K clips per identity",
    "train.max_steps": "Max steps",
    "model.backbone": "Backbone",
    "model.weights": "Backbone weights",
    "train.device": "Device",
    "loss.position_ce": "Part-finding aids",
    "model.position_prior": "Part-finding aids",
    "model.facing": "Part-finding aids",
    "loss.facing": "Part-finding aids",
}


def in_form_words(message: str) -> str:
    """A library sentence about config keys, with each key the form sets named by its label."""
    for key, label in sorted(FORM_LABELS.items(), key=lambda kv: -len(kv[0])):
        message = re.sub(rf"\b{re.escape(key)}\b", f"'{label}'", message)
    return message


FORM_FIELDS = {  # widget key: (config section, field)
    "tr_strategy": ("model", "strategy"),
    "tr_shared": ("model", "shared_classifier"),
    "tr_lambda": ("loss", "ssn_lambda"),
    "tr_parts": ("model", "num_parts"),
    "tr_frames": ("data", "seq_len"),
    "tr_epochs": ("train", "epochs"),
    "tr_p": ("data", "num_ids"),
    "tr_k": ("data", "num_instances"),
    "tr_max_steps": ("train", "max_steps"),
    "tr_backbone": ("model", "backbone"),
    "tr_weights": ("model", "weights"),
    "tr_device": ("train", "device"),
}


def apply_base() -> None:
    """Fill the form from the chosen base config (called when the base changes, and on first view)."""
    configs = _base_configs()
    name = S.get("tr_base", "defaults")
    try:
        cfg = load_config(configs[name]) if name in configs else Config()
    except ValueError as e:
        S["tr_base_error"] = str(e)
        cfg = Config()
    data = cfg.to_dict()
    for key, (section, fld) in FORM_FIELDS.items():
        S[key] = data[section][fld]
    if S["tr_device"] not in device_choices():  # e.g. a cuda config opened on a machine without a GPU
        S["tr_device"] = "auto"
    S["tr_lambda"] = float(S["tr_lambda"])
    S["tr_aids"] = has_part_aids(cfg)


notice = st.container()  # launch outcomes show here, above the form, whether it is open or not
with st.expander("New run", expanded=True):
    spec = current_spec()
    configs = _base_configs()
    if spec is None:
        st.info("Choose a dataset on the Data page first (or set up the demo).")
    else:
        if "tr_base" not in S:
            S["tr_base"] = "walkers-tiny.yaml" if "walkers-tiny.yaml" in configs else "defaults"
        if "tr_epochs" not in S:
            apply_base()
        c = st.columns([1, 1, 2])
        c[0].selectbox("Base config", ["defaults", *configs], key="tr_base", on_change=apply_base)
        # outside the form: N parts below follows the strategy at once, not only after a Launch
        c[1].selectbox("Strategy", ["semi", "unsupervised", "supervised"], key="tr_strategy")
        c[2].caption(
            "The form starts from the base config (configs/); the run trains on the session's dataset "
            f"(**{spec.label or spec.root}**) with its label store as anchors."
        )
        if S.get("tr_base_error"):
            st.error(S.pop("tr_base_error"))
        with st.form("train_form"):
            c = st.columns(3)
            name = c[0].text_input("Run name", "ssn3d", key="tr_name")
            c[1].selectbox("Device", device_choices(), key="tr_device")
            c[2].checkbox("Shared attention classifier", key="tr_shared")
            c = st.columns(4)
            c[0].number_input("lambda (L_SSN weight)", 0.0, 10.0, step=0.01, key="tr_lambda")
            # the keypoint anchors of semi/supervised name NUM_PARTS parts; only unsupervised SSN takes any N
            parts_locked = S.get("tr_strategy", "semi") in ("semi", "supervised")
            if parts_locked:
                S["tr_parts"] = NUM_PARTS
            c[1].number_input(
                "N parts",
                2,
                32,
                key="tr_parts",
                disabled=parts_locked,
                help=f"{NUM_PARTS} (the labeled keypoints) for the semi and supervised strategies",
            )
            c[2].number_input("T frames per clip", 1, 32, key="tr_frames")
            c[3].number_input("Epochs", 1, 1000, key="tr_epochs")
            c = st.columns(4)
            c[0].number_input("P identities per batch", 2, 64, key="tr_p")
            c[1].number_input("K clips per identity", 1, 16, key="tr_k")
            c[2].number_input("Max steps (0 = no cap)", 0, 10**7, key="tr_max_steps")
            c[3].selectbox(
                "Backbone", ["resnet18", "resnet34", "resnet50", "mobilenet_v2", "none"], key="tr_backbone"
            )
            st.text_input(
                "Backbone weights",
                key="tr_weights",
                help="none, imagenet (from the local torch cache), a .pth file, or a run's checkpoint (its backbone is used)",
            )
            semi = S.get("tr_strategy", "semi") == "semi"
            if not semi:  # the aids learn from the labeled keypoints
                S["tr_aids"] = False
            st.checkbox(
                "Part-finding aids (not in the paper)",
                key="tr_aids",
                disabled=not semi,
                help="Semi-supervised only. Pulls each part's attention onto your labeled keypoints, adds where "
                "your labels say each part usually lies, and names left and right from which way the person "
                "faces. Measured on synthetic walkers: part PCK 0.80 instead of 0.29 for the paper's method "
                "(128 x 64 frames, ImageNet MobileNetV2). Unticked, the run is the paper's.",
            )
            gpus = cuda_devices()
            nproc = 1
            if gpus > 1:  # a workstation with several GPUs: one process per GPU under torchrun (DDP)
                nproc = st.number_input("Processes (GPUs) per run", 1, gpus, 1, key="tr_nproc")
            launch = st.form_submit_button("Launch", type="primary", icon=":material/rocket_launch:")
        if launch:
            from ssn3d.config import ConfigError
            from ssn3d.runs.folder import RunBusyError, RunError
            from ssn3d.runs.launch import launch_run
            from ssn3d.runs.prepare import check_launch, launch_config
            from ssn3d.runs.status import run_has_ended

            with notice, shown_errors():
                dataset = load_dataset(spec)
                base = load_config(configs[S["tr_base"]]) if S["tr_base"] in configs else Config()
                choices = {f"{section}.{fld}": S[key] for key, (section, fld) in FORM_FIELDS.items()}
                choices.update(part_aids(bool(S.get("tr_aids")) and choices["model.strategy"] == "semi"))
                roots = (ws.home, *ws.allowed_roots)  # relative weights: inside the workspace, as runs see it
                try:
                    cfg = launch_config(
                        base,
                        choices,
                        dataset=spec.name,
                        data_root=spec.root,
                        options=spec.options,
                        annotations=label_store(ws, dataset).path,
                        weight_roots=roots,
                    )
                    check_launch(cfg, dataset)
                except ConfigError as e:
                    raise ConfigError(f"Not launched: {in_form_words(str(e))}") from None
                safe = clean_run_name(name)
                run_dir = ws.runs / f"{safe}-{S['train_token']}"
                if run_has_ended(run_dir):
                    # this form's run has ended: a press now asks for another run, not a double click
                    S["train_token"] = uuid.uuid4().hex[:6]
                    run_dir = ws.runs / f"{safe}-{S['train_token']}"
                try:
                    launch_run(run_dir, config=cfg, workspace=ws, nproc=int(nproc))
                    write_owner(run_dir, owner_tag())  # who may cancel and resume it
                    S["train_run"] = S["train_pick"] = S["tr_launched"] = run_dir.name  # show it at once
                except RunBusyError:
                    st.info(
                        f"{run_dir.name} is already running (launched by an earlier click); press **New run** "
                        "to start another one beside it."
                    )
                except RunError:
                    if S.get("train_run") != run_dir.name:
                        raise
                    st.info(
                        f"{run_dir.name} was launched by an earlier click; press **New run** for another."
                    )
        if S.get("tr_launched"):
            with notice:
                c = st.columns([4, 1])
                c[0].success(f"Launched {S['tr_launched']}: its curves follow below.")
                if c[1].button(
                    "New run",
                    key="tr_new_token",
                    type="primary",
                    icon=":material/add:",
                    help="a fresh form: the next Launch starts another run",
                ):
                    S["train_token"] = uuid.uuid4().hex[:6]
                    S.pop("tr_launched", None)
                    st.rerun()

# ----------------------------------------------------------------------------- runs table and live view


@st.fragment(run_every="2s")
def live_runs() -> None:
    from ssn3d.runs.folder import RunPaths
    from ssn3d.runs.status import list_runs

    runs = list_runs(ws.runs)
    if not runs:
        st.info("No runs yet: launch one above.")
        return
    rows = []
    for r in runs:
        s = r.status
        best = s.get("best_map")
        last = s.get("last_eval") or {}
        warnings = s.get("warnings") or []
        rows.append(
            {
                "run": r.name,
                "state": s.get("state"),
                "progress": float(s.get("progress") or 0.0),
                "ETA": _fmt_eta(s.get("eta_s")) if s.get("state") == "running" else "",
                "best mAP": None if best is None or best < 0 else round(100 * best, 1),
                **{
                    f"PCK@{a}": round(100 * last[f"pck@{a}"], 1) if f"pck@{a}" in last else None
                    for a in PCK_ALPHAS
                },
                "strategy": r.config.get("model", {}).get("strategy", ""),
                "warning": str(warnings[-1]).split(":")[0] if warnings else "",
            }
        )
    st.dataframe(
        rows,
        hide_index=True,
        key="runs_table",
        column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0, max_value=1)},
    )
    names = [r.name for r in runs]
    if S.get("train_pick") not in names:
        S["train_pick"] = names[0]  # the newest run
    name = st.selectbox("Run", names, key="train_pick")
    run = next(r for r in runs if r.name == name)
    show_run(run, RunPaths(run.path))


def _metrics(path: Path) -> list[dict]:
    """All metrics of a run, read incrementally: only new lines are parsed on each refresh."""
    from ssn3d.runs.metrics import read_metrics

    cache = S.setdefault("train_metrics", {})
    records, offset = cache.get(str(path), ([], 0))
    chunk = read_metrics(path, offset)
    records = chunk.records if chunk.restarted else records + chunk.records
    cache[str(path)] = (records, chunk.offset)
    return records


PCK_ALPHAS = ("0.1", "0.2")  # the part PCK thresholds evaluation reports (ssn3d.part_pck.PCK_ALPHAS)
SHOWN_CURVES = ("loss", "triplet", "ssn", "mAP", "top1", "pck@0.1", "pck@0.2")  # others start hidden


def shown_value(kind: str, value: float) -> float:
    """Evaluation metrics (mAP, CMC ranks, mINP, PCK) are fractions in the files and percent on this page,
    as in the runs table; losses stay as they are."""
    return 100 * value if kind == "eval" else value


def _figure(records: list[dict], kind: str, x: str) -> go.Figure:
    fig = go.Figure()
    rows = [r for r in records if r.get("kind") == kind]
    keys = sorted(
        {k for r in rows for k, v in r.items() if isinstance(v, int | float)} - {"step", "epoch", "time"}
    )
    for key in keys:
        pts = [(r[x], shown_value(kind, r[key])) for r in rows if isinstance(r.get(key), int | float)]
        fig.add_scatter(
            x=[p[0] for p in pts],
            y=[p[1] for p in pts],
            mode="lines+markers",
            name=key,
            visible=True if key in SHOWN_CURVES else "legendonly",
        )
    fig.update_layout(
        height=300,
        margin=dict(l=10, r=10, t=30, b=10),
        xaxis_title=x,
        yaxis_title="percent" if kind == "eval" else None,
    )
    return fig


def show_run(run, paths) -> None:
    from ssn3d.runs.launch import cancel_run, resume_run

    s = run.status
    state = s.get("state")
    mine = may_control(read_owner(run.path), owner_tag(), current_role())
    why = None if mine else "only the session that launched this run, or the operator, may control it"
    c = st.columns([2, 1, 1])
    c[0].markdown(f"**{run.name}**: {state}, step {s.get('step', 0)}/{s.get('total_steps', '?')}")
    if c[1].button(
        "Cancel",
        key=f"cancel_{run.name}",
        disabled=not mine or state not in ("starting", "running"),
        help=why,
    ):
        with shown_errors():
            cancel_run(run.path, wait=False)
            st.toast(f"Stopping {run.name}: it saves its last checkpoint first.")
    if c[2].button(
        "Resume",
        key=f"resume_{run.name}",
        disabled=not mine or state in ("starting", "running", "done") or not paths.last.is_file(),
        help=why,
    ):
        with shown_errors():
            resume_run(run.path, workspace=ws)
            st.toast(f"Resumed {run.name}.")
    if state == "failed" and s.get("error"):
        st.error(f"{run.name} failed: {s['error']}")
    elif state == "cancelled":  # asked for (Cancel, or a signal): a pause, resumable, not a failure
        st.info(
            f"{run.name} was cancelled at step {s.get('step', 0)}"
            + (": Resume continues it from its last checkpoint." if paths.last.is_file() else ".")
        )
    for warning in s.get("warnings") or []:
        st.warning(f"{run.name}: {warning}")
    records = _metrics(paths.root)
    left, right = st.columns(2)
    with left:
        st.caption("Training losses (eq. 6: loss = triplet + lambda * ssn)")
        st.plotly_chart(_figure(records, "train", "step"), key=f"train_curve_{run.name}")
    with right:
        st.caption("Evaluation (query vs gallery; part PCK where test frames have keypoints)")
        if any(r.get("kind") == "eval" for r in records):
            st.plotly_chart(_figure(records, "eval", "epoch"), key=f"eval_curve_{run.name}")
        else:
            st.info("No evaluation yet.")
    with st.expander("Log (last lines)"):
        st.code(tail_log(paths.log) or "(empty)", language=None)


live_runs()

# ----------------------------------------------------------------------------- compare

with st.expander("Compare runs"):
    from ssn3d.runs.status import list_runs

    names = [r.name for r in list_runs(ws.runs)]
    picked = st.multiselect("Runs", names, default=names[:2], key="cmp_runs")
    metric = st.selectbox(
        "Curve", ["loss", "triplet", "ssn", "mAP", "top1", "pck@0.1", "pck@0.2"], key="cmp_metric"
    )
    if picked:
        fig = go.Figure()
        for name in picked:
            recs = _metrics(ws.runs / name)
            pts = [
                (r.get("step"), shown_value(r.get("kind"), r[metric]))
                for r in recs
                if isinstance(r.get(metric), int | float)
            ]
            fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=name)
        fig.update_layout(
            height=320,
            margin=dict(l=10, r=10, t=30, b=10),
            xaxis_title="step",
            yaxis_title=metric if metric in ("loss", "triplet", "ssn") else f"{metric} (%)",
        )
        st.plotly_chart(fig, key="cmp_chart")
