"""The paper's accuracy tables on synthetic misaligned walkers: one command regenerates them.

Rows (issue 7; paper Tables 1-2, Fig. 3 and the ablation against unaligned 3D convolution):

* the temporal-pooling baseline and the plain 3D-conv baseline (no alignment);
* SSN3D unsupervised, semi-supervised (2 ground-truth frames per training tracklet, as the paper's
  "two images with high-quality labels") and supervised from noisy keypoints on every frame
  (``ssn3d.data.synth.labels.noisy_keypoints``: jitter, missed joints, left/right swaps, standing in
  for OpenPose; the test frames get the same detector);
* SSN3D with non-shared (per-frame) classifiers;
* a lambda sweep (eq. 6) for the semi-supervised strategy, the paper's best (Table 1), chosen before
  the runs so that no result picks it;
* ``LEVER_ROWS``: the semi-supervised alignment levers, options NOT in the paper (one line each, one
  table shared with ``benchmarks/ablation_gpu.py``); a lever whose config key this build lacks is
  skipped with the config's reason.

After training, each run is evaluated again by ``python -m ssn3d evaluate`` for its ``eval.json``:
the result file keeps part PCK (overall and per part, argmax peaks, with the mean-position and
random-peak baselines) beside mAP and top-1.

Every row trains through the real CLI (``python -m ssn3d train``, one subprocess per run, evaluated
at its last step with the paper's test protocol) with the same budget. The dataset and every
hyper-parameter are fixed per ``--scale`` in ``SCALES`` below, before any run.

    python benchmarks/accuracy_sweep.py                     # CPU scale (about 20 min on 2 cores)
    python benchmarks/accuracy_sweep.py --scale gpu         # the full-size study (one GPU)
    python benchmarks/accuracy_sweep.py --report-only       # rebuild the table and plots

The sweep is resumable: a finished run leaves ``RESULTS/<row>-s<seed>.json`` and is skipped the
next time, so a killed sweep loses at most the run in progress. ``RESULTS/table.md`` and the PNG plots
under ``benchmarks/figures/`` are rewritten after every run (marked partial until all rows are in).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssn3d.io import atomic_write_json  # noqa: E402

# --------------------------------------------------------------------------- what is run, fixed in advance

# The synthetic data of each scale. The CPU numbers were chosen for the budget (each run ~1 min on a
# shared 2-core VM), not for any row's result; they are recorded in every result file.
# fmt: off
SCALES: dict[str, dict] = {
    "cpu": {
        "dataset": dict(ids=64, cameras=3, tracklets_per_camera=1, frames=16, size=(128, 64), seed=7),
        "config": {
            "model": dict(backbone="resnet18", backbone_stages=1, weights="none", num_parts=9, window=3,
                          attn_channels=32, part_channels=16, embed_dim=64, num_frames=4),
            "loss": dict(margin=0.3, ssn_lambda=0.1),
            "data": dict(dataset="folder", height=64, width=32, seq_len=4, stride=2, num_ids=4, num_instances=4,
                         test_chunk=16, workers=0),
            "train": dict(epochs=15, iters_per_epoch=10, lr=0.001, lr_step=10, lr_gamma=0.1, weight_decay=5e-4,
                          eval_every=0, log_every=10, ckpt_every=15, device="cpu"),
        },
        "seeds": (0, 1),
    },
    "gpu": {  # the paper's model at 256 x 128 on ~40k frames; not run on the CPU VM
        "dataset": dict(ids=300, cameras=4, tracklets_per_camera=2, frames=16, size=(256, 128), seed=7),
        "config": {
            "model": dict(backbone="resnet50", backbone_stages=3, weights="none", num_parts=9, window=3,
                          attn_channels=512, part_channels=256, embed_dim=1024, num_frames=4),
            "loss": dict(margin=0.3, ssn_lambda=0.1),
            "data": dict(dataset="folder", height=256, width=128, seq_len=4, stride=4, num_ids=8,
                         num_instances=4, test_chunk=32, workers=8),
            "train": dict(epochs=60, iters_per_epoch=50, lr=3e-4, lr_step=40, lr_gamma=0.1, weight_decay=5e-4,
                          eval_every=0, log_every=20, ckpt_every=10, device="auto", amp=True,
                          channels_last=True),
        },
        "seeds": (0, 1),
    },
    "smoke": {  # the test suite's: a few steps, to show the runner works end to end
        "dataset": dict(ids=8, cameras=2, tracklets_per_camera=1, frames=8, size=(64, 32), seed=7),
        "config": {
            "model": dict(backbone="resnet18", backbone_stages=1, weights="none", num_parts=9, window=3,
                          attn_channels=8, part_channels=4, embed_dim=16, num_frames=4),
            "loss": dict(margin=0.3, ssn_lambda=0.1),
            "data": dict(dataset="folder", height=32, width=16, seq_len=4, stride=1, num_ids=2, num_instances=2,
                         test_chunk=8, workers=0),
            "train": dict(epochs=1, iters_per_epoch=2, lr=0.001, lr_step=1, eval_every=0, log_every=1,
                          ckpt_every=1, device="cpu"),
        },
        "seeds": (0,),
    },
}
# fmt: on

# Detector-like noise for the supervised row (fixed; ssn3d.data.synth.labels.noisy_keypoints).
NOISE = dict(sigma=2.0, dropout=0.1, swap=0.05)
LAMBDAS = (0.0, 0.05, 0.1, 0.5, 1.0)
LAMBDA_STRATEGY = "semi"  # the paper's best strategy, fixed before the runs


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    overrides: tuple[str, ...]
    labels: str = ""  # "semi" | "noisy" | "": which label file data.annotations names
    main: bool = True  # main rows run every seed of the scale; the others the first seed only
    lam: float | None = field(default=None)

    @property
    def own_schedule(self) -> bool:
        """Whether the row sets its own step budget (``train.epochs``): a schedule row written for this
        sweep's CPU scale, which the GPU runner (with a budget of its own) leaves out."""
        return any(o.startswith("train.epochs=") for o in self.overrides)


# One line per lever of the semi-supervised alignment issue: options NOT in the paper (docs/DESIGN.md),
# each beside the paper's semi row; seed 0 only (main=False) except PositionCE, the one that moved PCK at CPU
# scale, and the two levers wired elsewhere, which run every seed. The three combination rows were written
# before any of them ran; the one expected best (all three levers that carry anchors: PositionCE, propagated
# labels, pretrained features) runs every seed. MobileNetV2 is cut at stride 4 (16 x 8 cells at 64 x 32, the
# ResNet18 rows' map): at stride 8 a one-cell miss (8 px) already fails PCK@0.1 (6.4 px), at stride 16 the
# map is 4 x 2. The second round added lever 6 (a part-position prior counted from the labels), its
# combination with PositionCE (run every seed) and one diagnostic row (PositionCE with keypoints on every
# training frame: what more labels would buy), all three written before they ran. Lever 7 (the attention
# classifier also reads the frame's mean feature) and its combination came after these showed that most limb
# misses are left/right swaps; they too were written before they ran. Lever 8 (canonical left/right parts
# named by a facing head) came after a probe found facing unreadable at 64 x 32 (0.53-0.59 held out, even
# fine-tuned on every training frame) but readable from ImageNet MobileNetV2 at 128 x 64 (0.77 from the
# labeled frames alone); so it runs at the CPU scale and, with its twin without the head, at 128 x 64 with
# MobileNetV2 cut at stride 8 (16 x 8 cells, the other rows' map). All three were written before they ran.
# After their first seed, the two 128 x 64 rows got their second seed, and that setting's pooling, paper-semi
# and unsupervised rows were added (both seeds), so that its retrieval has its own baselines.
# The third round's rows at 300 steps (lever 5, the schedule: twice the steps, the decay at two thirds;
# ``SCHEDULE_ROWS`` below)
# came after the 128 x 64 facing row missed PCK 0.8 by 0.005 at 150; the pair at 128 x 64 first, then
# its pooling and unsupervised baselines and the CPU-scale pair with theirs, then one 600-step seed of the
# 128 x 64 facing row, each written before it ran.
# fmt: off
_LEVERS: tuple[Row, ...] = (
    Row("lever1_mobilenet", "Lever 1: semi, pretrained MobileNetV2", ("model.strategy=semi", "model.backbone=mobilenet_v2", "model.weights=imagenet"), labels="semi"),
    Row("lever2_position_ce", "Lever 2: semi + PositionCE (weight 1, one-hot)", ("model.strategy=semi", "loss.position_ce=1.0"), labels="semi"),
    Row("lever2_position_ce_sigma1", "Lever 2: semi + PositionCE (weight 1, sigma 1 cell)", ("model.strategy=semi", "loss.position_ce=1.0", "loss.position_sigma=1.0"), labels="semi", main=False),
    Row("lever2_background", "Lever 2: semi + background class (weight 0.1)", ("model.strategy=semi", "model.background_class=true", "loss.background=0.1"), labels="semi", main=False),
    Row("lever3_temporal", "Lever 3: semi + temporal stability (weight 0.1)", ("model.strategy=semi", "loss.temporal_stability=0.1"), labels="semi", main=False),
    Row("lever3_flip", "Lever 3: semi + flip consistency (weight 0.1)", ("model.strategy=semi", "loss.flip_consistency=0.1"), labels="semi", main=False),
    Row("lever4_propagate", "Lever 4: semi, labels carried to nearby frames", ("model.strategy=semi", "data.propagate_labels=0.8"), labels="semi"),
    Row("lever5_warmup", "Lever 5: semi, labeled warm-up (30 % of steps)", ("model.strategy=semi", "train.labeled_warmup=0.3"), labels="semi", main=False),
    Row("lever5_attn_lr", "Lever 5: semi, attention classifier lr x 3", ("model.strategy=semi", "train.attn_lr_mult=3.0"), labels="semi", main=False),
    Row("levers_combined", "Levers 2+3+5: PositionCE + temporal + flip + attention lr x 3", ("model.strategy=semi", "loss.position_ce=1.0", "loss.temporal_stability=0.1", "loss.flip_consistency=0.1", "train.attn_lr_mult=3.0"), labels="semi", main=False),
    Row("levers_pce_propagate", "Levers 2+4 (not in the paper): PositionCE + propagated labels", ("model.strategy=semi", "loss.position_ce=1.0", "data.propagate_labels=0.8"), labels="semi", main=False),
    Row("levers_pce_mobilenet", "Levers 1+2 (not in the paper): PositionCE + MobileNetV2 ImageNet (stride 4)", ("model.strategy=semi", "loss.position_ce=1.0", "model.backbone=mobilenet_v2", "model.backbone_stages=1", "model.weights=imagenet"), labels="semi", main=False),
    Row("levers_pce_prop_mobilenet", "Levers 1+2+4 (not in the paper): PositionCE + propagation + MobileNetV2 (stride 4)", ("model.strategy=semi", "loss.position_ce=1.0", "data.propagate_labels=0.8", "model.backbone=mobilenet_v2", "model.backbone_stages=1", "model.weights=imagenet"), labels="semi"),
    Row("lever6_position_prior", "Lever 6 (not in the paper): semi + the labels' part-position prior (weight 1)", ("model.strategy=semi", "model.position_prior=1.0"), labels="semi", main=False),
    Row("levers_pce_prior", "Levers 2+6 (not in the paper): PositionCE + part-position prior", ("model.strategy=semi", "loss.position_ce=1.0", "model.position_prior=1.0"), labels="semi"),
    Row("lever7_attn_context", "Lever 7 (not in the paper): semi + frame context in the attention classifier", ("model.strategy=semi", "model.attn_context=true"), labels="semi", main=False),
    Row("levers_pce_prior_context", "Levers 2+6+7 (not in the paper): PositionCE + position prior + frame context", ("model.strategy=semi", "loss.position_ce=1.0", "model.position_prior=1.0", "model.attn_context=true"), labels="semi"),
    Row("lever8_facing", "Levers 2+6+8 (not in the paper): PositionCE + position prior + facing head (canonical sides)", ("model.strategy=semi", "loss.position_ce=1.0", "model.position_prior=1.0", "model.facing=true", "loss.facing=1.0"), labels="semi"),
    Row("levers_pce_prior_mnv2_128", "Levers 1+2+6 at 128 x 64 (not in the paper): PositionCE + prior + MobileNetV2 ImageNet (stride 8)", ("model.strategy=semi", "loss.position_ce=1.0", "model.position_prior=1.0", "model.backbone=mobilenet_v2", "model.backbone_stages=2", "model.weights=imagenet", "data.height=128", "data.width=64"), labels="semi", main=False),
    Row("levers_facing_mnv2_128", "Levers 1+2+6+8 at 128 x 64 (not in the paper): PositionCE + prior + MobileNetV2 ImageNet (stride 8) + facing head", ("model.strategy=semi", "loss.position_ce=1.0", "model.position_prior=1.0", "model.backbone=mobilenet_v2", "model.backbone_stages=2", "model.weights=imagenet", "data.height=128", "data.width=64", "model.facing=true", "loss.facing=1.0"), labels="semi", main=False),
    Row("pooling_mnv2_128", "Baseline at 128 x 64: temporal pooling on MobileNetV2 ImageNet (stride 8)", ("model.arch=temporal_pooling", "model.backbone=mobilenet_v2", "model.backbone_stages=2", "model.weights=imagenet", "data.height=128", "data.width=64")),
    Row("semi_mnv2_128", "Semi, the paper, at 128 x 64 on MobileNetV2 ImageNet (stride 8)", ("model.strategy=semi", "model.backbone=mobilenet_v2", "model.backbone_stages=2", "model.weights=imagenet", "data.height=128", "data.width=64"), labels="semi"),
    Row("unsupervised_mnv2_128", "SSN3D unsupervised at 128 x 64 on MobileNetV2 ImageNet (stride 8)", ("model.strategy=unsupervised", "model.backbone=mobilenet_v2", "model.backbone_stages=2", "model.weights=imagenet", "data.height=128", "data.width=64")),
    Row("diag_pce_every_frame", "Diagnostic: PositionCE with noisy keypoints on every training frame (the label budget's ceiling)", ("model.strategy=semi", "loss.position_ce=1.0"), labels="noisy", main=False),
)
# fmt: on


# Lever 5, the schedule, on the third round's best pair and its baselines: (row, the row it lengthens,
# epochs). NOT in the paper. The decay stays at two thirds of the steps; at the CPU scale an epoch is 10 steps.
SCHEDULE_ROWS: tuple[tuple[str, str, int], ...] = (
    ("levers_pce_prior_300", "levers_pce_prior", 30),
    ("lever8_facing_300", "lever8_facing", 30),
    ("pooling_300", "temporal_pooling", 30),
    ("unsupervised_300", "unsupervised", 30),
    ("levers_pce_prior_mnv2_128_300", "levers_pce_prior_mnv2_128", 30),
    ("levers_facing_mnv2_128_300", "levers_facing_mnv2_128", 30),
    ("levers_facing_mnv2_128_600", "levers_facing_mnv2_128", 60),
    ("pooling_mnv2_128_300", "pooling_mnv2_128", 30),
    ("unsupervised_mnv2_128_300", "unsupervised_mnv2_128", 30),
)


def longer(base: Row, name: str, epochs: int) -> Row:
    """``base`` trained for ``epochs`` epochs of the CPU scale, its decay at two thirds (an ``own_schedule``
    row, for this sweep only)."""
    steps = epochs * SCALES["cpu"]["config"]["train"]["iters_per_epoch"]
    schedule = (f"train.epochs={epochs}", f"train.lr_step={2 * epochs // 3}")
    return Row(
        name,
        f"{base.label}, {steps} steps (lever 5)",
        (*base.overrides, *schedule),
        labels=base.labels,
        main=False,
    )


def all_rows() -> list[Row]:
    """The paper's rows, then the levers: the one row table of both benchmark runners."""
    return [*rows(), *LEVER_ROWS]


def config_problem(base: Path, overrides: list[str]) -> str:
    """The config's one-sentence reason to refuse these overrides, or "" when it accepts them."""
    from ssn3d.config import ConfigError, load_config

    try:
        cfg = load_config(base, overrides)
    except ConfigError as e:
        return str(e).removeprefix(f"{base}: ")  # the reason, not this machine's path
    return weights_problem(cfg.model.backbone, cfg.model.weights)


def weights_problem(backbone: str, weights: str) -> str:
    """Why a row that names ImageNet weights cannot run here ("" when it can): the backbone would warn and
    start from random init, and the row would be recorded under a name that is not what ran."""
    from ssn3d.models.backbone import IMAGENET_FILES, find_imagenet_file

    if weights != "imagenet" or backbone == "none" or find_imagenet_file(backbone) is not None:
        return ""
    return (
        f"no ImageNet weights for {backbone} in the torch cache; place {IMAGENET_FILES[backbone][0]} under "
        "$TORCH_HOME/hub/checkpoints (python -m ssn3d weights convert writes one) to run this row."
    )


def rows() -> list[Row]:
    out = [
        Row("temporal_pooling", "Temporal pooling (baseline)", ("model.arch=temporal_pooling",)),
        Row("conv3d", "Plain 3D conv (no alignment)", ("model.arch=conv3d",)),
        Row("unsupervised", "SSN3D unsupervised", ("model.strategy=unsupervised",)),
        Row(
            "semi",
            "SSN3D semi-supervised (2 frames/tracklet)",
            ("model.strategy=semi",),
            labels="semi",
            lam=0.1,
        ),
        Row(
            "supervised_noisy",
            "SSN3D supervised, noisy keypoints",
            ("model.strategy=supervised",),
            labels="noisy",
        ),
        Row(
            "semi_nonshared",
            "SSN3D semi, non-shared classifiers",
            ("model.strategy=semi", "model.shared_classifier=false"),
            labels="semi",
            main=False,
        ),
    ]
    for lam in LAMBDAS:
        if lam == 0.1:  # the main semi row
            continue
        out.append(
            Row(
                f"lambda_{lam:g}",
                f"SSN3D {LAMBDA_STRATEGY}, lambda = {lam:g}",
                (f"model.strategy={LAMBDA_STRATEGY}", f"loss.ssn_lambda={lam}"),
                labels="semi",
                main=False,
                lam=lam,
            )
        )
    return out


# --------------------------------------------------------------------------- data


_BASES = {r.name: r for r in (*rows(), *_LEVERS)}
LEVER_ROWS: tuple[Row, ...] = (*_LEVERS, *(longer(_BASES[b], name, e) for name, b, e in SCHEDULE_ROWS))


def prepare_data(out: Path, scale: dict) -> Path:
    """Generate the walkers and the two label files once (kept across resumed sweeps)."""
    from ssn3d.data.synth.walkers import generate_walkers

    root = out / "walkers"
    params = dict(scale["dataset"])
    meta = root / "dataset.json"
    same = False
    if meta.is_file():
        old = json.loads(meta.read_text(encoding="utf-8"))["params"]
        same = all(old.get(k) == (list(v) if isinstance(v, tuple) else v) for k, v in params.items())
    if not same:
        print(f"generating walkers {params} in {root}", flush=True)
        generate_walkers(root, **params, progress=True)
        for f in ("labels-semi.json", "labels-noisy.json"):
            (out / f).unlink(missing_ok=True)
    cli = [sys.executable, "-m", "ssn3d", "synth", "labels", str(root)]
    if not (out / "labels-semi.json").is_file():
        _run([*cli, "--to", str(out / "labels-semi.json"), "--per-tracklet", "2", "--seed", "0"])
    if not (out / "labels-noisy.json").is_file():
        noise = [
            "--sigma",
            str(NOISE["sigma"]),
            "--dropout",
            str(NOISE["dropout"]),
            "--swap",
            str(NOISE["swap"]),
        ]
        _run([*cli, "--to", str(out / "labels-noisy.json"), "--per-tracklet", "0", "--split", "all", "--noisy",
              *noise, "--seed", "0"])  # fmt: skip
    return root


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _run(cmd: list[str], threads: int = 1, log: Path | None = None) -> None:
    with open(log, "w", encoding="utf-8") if log else open(os.devnull, "w") as sink:
        proc = subprocess.run(cmd, cwd=ROOT, env=_env(threads), stdout=sink, stderr=subprocess.STDOUT)
    if proc.returncode:
        where = f"; see {log}" if log else ""
        raise RuntimeError(f"{' '.join(cmd[:5])} ... exited with {proc.returncode}{where}")


# --------------------------------------------------------------------------- one run


def evaluate_command(run_dir: Path, device: str) -> list[str]:
    """``python -m ssn3d evaluate RUN``: the run's eval.json, part PCK included (both runners use it)."""
    return [sys.executable, "-m", "ssn3d", "evaluate", str(run_dir), "--device", device, "--no-progress"]


def last_eval(run_dir: Path) -> dict:
    """The last ``"kind": "eval"`` record of a run's metrics.jsonl."""
    found = None
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "eval":
            found = rec
    if found is None:
        raise RuntimeError(f"{run_dir} finished without an evaluation")
    return found


def run_one(row: Row, seed: int, out: Path, results: Path, scale_name: str, threads: int) -> dict:
    """Train and evaluate one row with one seed; writes and returns its result record."""
    scale = SCALES[scale_name]
    run_dir = out / "runs" / f"{row.name}-s{seed}"
    if run_dir.exists():  # a killed run: start it over (its folder is ours)
        shutil.rmtree(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    overrides = [*row.overrides, f"train.seed={seed}", f"data.root={out / 'walkers'}"]
    if row.labels:
        overrides.append(f"data.annotations={out / f'labels-{row.labels}.json'}")
    cmd = [sys.executable, "-m", "ssn3d", "train", str(out / "base.yaml"), *overrides]
    cmd += ["--run-dir", str(run_dir), "--no-progress"]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    log = out / "runs" / f"{row.name}-s{seed}.log"
    _run(cmd, threads, log=log)
    wall = time.perf_counter() - t0
    ev = last_eval(run_dir)
    pck = None
    if has_attention(row):  # the baselines and the supervised strategy have no attention maps to score
        _run(evaluate_command(run_dir, "cpu"), threads, log=log.with_suffix(".eval.log"))
        pck = pck_record(json.loads((run_dir / "eval.json").read_text(encoding="utf-8")))
    rec = {
        "row": row.name,
        "label": row.label,
        "seed": seed,
        "scale": scale_name,
        "metrics": {k: ev[k] for k in ("mAP", "top1", "top5", "top10", "mINP")},
        "step": ev["step"],
        "wall_s": round(wall, 1),
        "threads": threads,
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "overrides": row.overrides,
        "dataset": {k: list(v) if isinstance(v, tuple) else v for k, v in scale["dataset"].items()},
        "noise": NOISE if row.labels == "noisy" else None,
        "pck": pck,
        "date": time.strftime("%Y-%m-%d"),
    }
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(results / f"{row.name}-s{seed}.json", rec, indent=1)
    return rec


def has_attention(row: Row) -> bool:
    """Whether a row's model has SSN attention maps (part PCK): SSN3D, not supervised."""
    arch = strategy = None
    for o in row.overrides:
        key, _, value = o.partition("=")
        arch = value if key == "model.arch" else arch
        strategy = value if key == "model.strategy" else strategy
    return arch in (None, "ssn3d") and strategy != "supervised"


def pck_record(doc: dict) -> dict | None:
    """Part PCK of an ``eval.json`` (argmax peaks and the two baselines at 0.1 and 0.2), or None."""
    report = doc.get("pck")
    if not report:
        return None
    methods = report["methods"]
    return {
        "frames": report["frames"],
        "matched": report["matched"],
        **{
            f"{method}@{a}": {
                "overall": methods[method][f"pck@{a}"]["overall"],
                "per_part": methods[method][f"pck@{a}"].get("per_part", {}),
            }
            for method in ("argmax", "soft_argmax", "argmax_best_side", "mean_position", "random")
            if method in methods
            for a in ("0.1", "0.2")
            if f"pck@{a}" in methods[method]
        },
    }


# --------------------------------------------------------------------------- report

METRICS = ("mAP", "top1", "top5", "top10", "mINP")


def _load(results: Path) -> dict[str, list[dict]]:
    by_row: dict[str, list[dict]] = {}
    for f in sorted(results.glob("*-s*.json")):
        rec = json.loads(f.read_text(encoding="utf-8"))
        by_row.setdefault(rec["row"], []).append(rec)
    return by_row


def _cell(values: list[float]) -> str:
    v = 100 * np.asarray(values)
    if len(v) == 1:
        return f"{v[0]:.1f}"
    return f"{v.mean():.1f} ± {(v.max() - v.min()) / 2:.1f}"


def _pck_cells(recs: list[dict]) -> str:
    """PCK@0.1 overall (mean over seeds) and the worst part of the mean per-part PCK, or blanks."""
    have = [x["pck"]["argmax@0.1"] for x in recs if x.get("pck")]
    if not have:
        return "- | -"
    overall = np.mean([h["overall"] for h in have])
    parts = {k: np.mean([h["per_part"].get(k, np.nan) for h in have]) for k in have[0]["per_part"]}
    worst = min(parts, key=parts.get) if parts else None
    return f"{overall:.3f} | " + (f"{parts[worst]:.2f} ({worst})" if worst else "-")


def write_report(results: Path, scale_name: str, selected: list[Row], figures: Path | None) -> str:
    """Write ``RESULTS/table.md`` (mean ± half the range over seeds, in %) and the PNG plots."""
    scale = SCALES[scale_name]
    by_row = _load(results)
    wanted = {r.name: (scale["seeds"] if r.main else scale["seeds"][:1]) for r in selected}
    done = sum(len({x["seed"] for x in by_row.get(n, [])} & set(s)) for n, s in wanted.items())
    total = sum(len(s) for s in wanted.values())
    lines = [
        f"Scale: {scale_name}; {done} of {total} runs" + (" (PARTIAL)" if done < total else ""),
        "",
        "| Row | seeds | mAP | top-1 | top-5 | top-10 | mINP | PCK@0.1 | worst part @0.1 | wall / run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in selected:
        recs = by_row.get(r.name, [])
        if not recs:
            lines.append(f"| {r.label} | - | not run | | | | | | | |")
            continue
        cells = [_cell([x["metrics"][m] for x in recs]) for m in METRICS]
        wall = np.mean([x["wall_s"] for x in recs])
        lines.append(f"| {r.label} | {len(recs)} | {' | '.join(cells)} | {_pck_cells(recs)} | {wall:.0f} s |")
    baselines = [x["pck"] for v in by_row.values() for x in v if x.get("pck") and not x["pck"]["matched"]]
    if baselines:
        mean_pos = np.mean([b["mean_position@0.1"]["overall"] for b in baselines])
        rand = np.mean([b["random@0.1"]["overall"] for b in baselines])
        lines += ["", f"PCK@0.1 baselines on the same test frames: every part at its mean labeled position "
                  f"{mean_pos:.3f}, a uniformly random peak {rand:.3f}."]  # fmt: skip
    text = "\n".join(lines) + "\n"
    (results / "table.md").write_text(text, encoding="utf-8")
    if figures is not None:
        _plots(by_row, selected, scale_name, figures)
    return text


def _plots(by_row: dict[str, list[dict]], selected: list[Row], scale_name: str, figures: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    have = [r for r in selected if by_row.get(r.name) and (r.lam is None or r.name == "semi")]
    if have:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        x = np.arange(len(have))
        for i, m in enumerate(("mAP", "top1")):
            vals = [[100 * rec["metrics"][m] for rec in by_row[r.name]] for r in have]
            mean = [np.mean(v) for v in vals]
            err = [(max(v) - min(v)) / 2 for v in vals]
            ax.bar(x + (i - 0.5) * 0.38, mean, 0.38, yerr=err, capsize=3, label=m)
        ax.set_xticks(x, [textwrap.fill(r.label, 20) for r in have], fontsize=7)
        ax.set_ylabel("%")
        ax.set_title(f"Synthetic walkers, {scale_name} scale (bars: mean over seeds, whiskers: half range)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(figures / f"accuracy-rows-{scale_name}.png", dpi=110)
        plt.close(fig)
    lam_rows = sorted((r for r in selected if r.lam is not None and by_row.get(r.name)), key=lambda r: r.lam)
    if len(lam_rows) >= 2:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        xs = [r.lam for r in lam_rows]
        for m in ("mAP", "top1"):
            ax.plot(range(len(xs)), [100 * by_row[r.name][0]["metrics"][m] for r in lam_rows], "o-", label=m)
        ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs])
        ax.set_xlabel("lambda (eq. 6), seed 0")
        ax.set_ylabel("%")
        ax.set_title(f"Lambda sweep, {LAMBDA_STRATEGY} ({scale_name} scale)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(figures / f"accuracy-lambda-{scale_name}.png", dpi=110)
        plt.close(fig)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    p.add_argument("--out", type=Path, help="data and run folders (default: runs/accuracy-SCALE)")
    p.add_argument(
        "--results", type=Path, help="result JSONs + table.md (default: benchmarks/results/accuracy-SCALE)"
    )
    p.add_argument("--rows", default="", help="comma-separated row names (default: all)")
    p.add_argument("--threads", type=int, default=1, help="OMP threads per training process")
    p.add_argument(
        "--seeds", default="", help="comma-separated seeds for every selected row (default: the scale's)"
    )
    p.add_argument("--figures", type=Path, default=ROOT / "benchmarks" / "figures", help="where the PNGs go")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--report-only", action="store_true", help="rebuild the table from finished runs")
    args = p.parse_args(argv)
    scale = SCALES[args.scale]
    out = (args.out or ROOT / "runs" / f"accuracy-{args.scale}").resolve()
    results = (args.results or ROOT / "benchmarks" / "results" / f"accuracy-{args.scale}").resolve()
    known = all_rows()
    names = [n for n in args.rows.split(",") if n]
    unknown = set(names) - {r.name for r in known}
    if unknown:
        p.error(f"unknown row {sorted(unknown)[0]!r}; known rows: {', '.join(r.name for r in known)}")
    selected = [r for r in known if not names or r.name in names]
    figures = None if args.no_figures else args.figures
    if args.report_only:
        print(write_report(results, args.scale, selected, figures))
        return 0

    out.mkdir(parents=True, exist_ok=True)
    prepare_data(out, scale)
    (out / "base.yaml").write_text(yaml.safe_dump(scale["config"], sort_keys=False), encoding="utf-8")
    runnable = []
    for r in selected:
        overrides = [*r.overrides, f"data.root={out / 'walkers'}"]
        if problem := config_problem(out / "base.yaml", overrides):
            print(f"{r.name}: skipped: {problem}", flush=True)
        else:
            runnable.append(r)
    seeds = [int(x) for x in args.seeds.split(",") if x]
    todo = [(r, s) for r in runnable for s in (seeds or (scale["seeds"] if r.main else scale["seeds"][:1]))]
    t_start = time.perf_counter()
    for i, (row, seed) in enumerate(todo, 1):
        result = results / f"{row.name}-s{seed}.json"
        if result.is_file():
            print(f"[{i}/{len(todo)}] {row.name} seed {seed}: done earlier, skipped", flush=True)
            continue
        print(
            f"[{i}/{len(todo)}] {row.name} seed {seed}: training (load {os.getloadavg()[0]:.1f}) ...",
            flush=True,
        )
        rec = run_one(row, seed, out, results, args.scale, args.threads)
        m = rec["metrics"]
        print(
            f"[{i}/{len(todo)}] {row.name} seed {seed}: {rec['wall_s']:.0f} s, mAP {100 * m['mAP']:.1f} "
            f"top-1 {100 * m['top1']:.1f} (sweep {time.perf_counter() - t_start:.0f} s)",
            flush=True,
        )
        write_report(results, args.scale, selected, figures)
    print(write_report(results, args.scale, selected, figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
