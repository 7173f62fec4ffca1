"""``python -m ssn3d study {random,...}``: the paper's SSN studies, each writing JSON and PNGs.

A study that writes into a folder runs as that folder's one writer with a run's status
(``ssn3d.runs.status.tracked_run``): the app's Studies page launches and follows it like a run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from ssn3d.io import atomic_write_text

GRID_PARTS = (3, 9, 16)  # the 3 values of N in the --grid run (paper Fig. 5 shows 9 runs; N not given)


def _random(args: argparse.Namespace) -> int:
    if args.out:  # a study folder, as the other studies write (the app's Studies page reads it)
        args.json = args.json or str(Path(args.out) / "random.json")
        args.plot = args.plot or str(Path(args.out) / "random.png")
    _check_outputs(args.out, args.json, args.plot)  # before torch loads: a wrong path is refused at once
    from ssn3d.studies.random_data import (
        DISTRIBUTIONS,
        QUICK,
        RandomStudyConfig,
        check_random_study,
        plot_curves,
        run_random_study,
        study_summary,
    )

    given = dict(iters=args.iters, channels=args.channels, size=args.size, batch=args.batch, lr=args.lr)
    base = {**(QUICK if args.quick else {}), **{k: v for k, v in given.items() if v is not None}}
    base.update(seed=args.seed, device=args.device)
    runs = [(d, n) for d in DISTRIBUTIONS for n in GRID_PARTS] if args.grid else [(args.dist, args.parts)]
    for dist, parts in runs:  # every run's arguments are checked before the first one trains
        check_random_study(RandomStudyConfig(dist=dist, parts=parts, **base))
    with _tracked(args.out, "random"):
        records = []
        for dist, parts in runs:
            cfg = run_random_study(RandomStudyConfig(dist=dist, parts=parts, **base), progress=not args.quiet)
            rec = study_summary(cfg)
            records.append(rec)
            print(
                f"{dist:9s} N={parts:2d}: final L_SSN {rec['final_loss']:.4f} (log N = {rec['chance']:.4f})"
            )
        out = records[0] if len(records) == 1 else {"runs": records}
        if args.json:
            atomic_write_text(args.json, json.dumps(out))
        if args.plot:
            Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
            plot_curves(records, args.plot)
    return 0


def _tracked(out: str | Path | None, kind: str) -> contextlib.AbstractContextManager:
    """The study as the one writer of its output folder, with its status there; nothing without a folder."""
    if not out:
        return contextlib.nullcontext()
    from ssn3d.runs.status import tracked_run

    return tracked_run(out, kind=kind)


def _check_outputs(out: str | None, *files: str | None) -> None:
    """Refuse an output folder that is a file, or an output file that is a folder, before any computation."""
    if out and Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out {out} is a file; pass a folder for the study's JSON and figures.")
    for f in files:
        if f and Path(f).is_dir():
            raise ValueError(f"{f} is a folder; pass a file name to write.")


def _device(name: str) -> str:
    """ "auto" -> cuda when there is one, else cpu."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _out_dir(arg: str | None, name: str) -> Path:
    from ssn3d.serving.workspace import Workspace

    return Path(arg) if arg else Workspace.from_env().home / "studies" / name


def _amber(args: argparse.Namespace) -> int:
    from ssn3d.studies.amber import AmberStudyConfig, quick_config, run_amber_study

    given = dict(iters=args.iters, hidden=args.hidden, count=args.count)
    given = {k: v for k, v in given.items() if v is not None}
    common = dict(seed=args.seed, device=_device(args.device), data=args.data or "", **given)
    cfg = quick_config(**common) if args.quick else AmberStudyConfig(**common)
    out = _out_dir(args.out, "amber")
    _check_outputs(str(out))
    with _tracked(out, "amber"):
        rec = run_amber_study(cfg, out, progress=not args.quiet)
    print(f"final L_SSN {rec['final_loss']:.4f} (log N = {rec['chance_loss']:.4f})")
    for motif, best in rec["hits"]["best"].items():
        rate, n, chance = best["rate"], best["paintings"], best["chance"]
        print(f"{motif:15s} part {best['part']}: hits {rate:.2f} of {n} paintings (random peak {chance:.3f})")
    hits = rec["hits"]
    print(f"motif hit rate {hits['motif_hit_rate']:.3f} (random {hits['chance_rate']:.3f}); wrote {out}")
    return 0


def _pedestrians(args: argparse.Namespace) -> int:
    from ssn3d.studies.pedestrians import PedestrianStudyConfig, quick_config, run_pedestrian_study

    given = dict(
        iters=args.iters,
        backbone=args.backbone,
        stages=args.stages,
        weights=args.weights,
        count=args.count,
        warmup=args.warmup,
        attention_loss=args.attention_loss,
        position_prior=args.position_prior,
        facing=args.facing,
    )
    given = {k: v for k, v in given.items() if v is not None}
    if args.frozen_backbone:
        given["train_backbone"] = False
    common = dict(seed=args.seed, device=_device(args.device), data=args.data or "", **given)
    cfg = quick_config(**common) if args.quick else PedestrianStudyConfig(**common)
    out = _out_dir(args.out, "pedestrians")
    _check_outputs(str(out))
    with _tracked(out, "pedestrians"):
        rec = run_pedestrian_study(cfg, out, progress=not args.quiet)
    for strategy, res in rec["results"].items():
        parts = " ".join(f"{k}={v:.2f}" for k, v in res["per_part"].items())
        print(f"{strategy:12s} PCK {res['overall']:.3f}  ({parts})")
        if "best_side" in res:
            print(
                f"{'':12s} with each crop's left and right read the better way: {res['best_side']['overall']:.3f}"
            )
    base = rec["baselines"]
    prior, chance = base["mean_position"]["overall"], base["chance"]
    print(f"mean position PCK {prior:.3f}, random peak {chance:.3f}; wrote {out}")
    return 0


# Long on purpose: a flat sequence of argparse options, one line per study option.
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="the paper's SSN studies (random data, Amber Abstract, Pedestrian 128)")
    studies = p.add_subparsers(dest="study", metavar="STUDY", required=True)
    r = studies.add_parser("random", help="Fig. 5: SSN alone on random 128x16x16 samples")
    r.add_argument("--dist", choices=["gaussian", "uniform", "ones"], default="gaussian")
    r.add_argument("--parts", type=int, default=9, help="N")
    r.add_argument("--quick", action="store_true", help="CPU seconds: 16x8x8 samples, K = 64, 200 iterations")
    r.add_argument("--iters", type=int, help="default 300")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--grid", action="store_true", help=f"the 9 runs: 3 distributions x N in {GRID_PARTS}")
    r.add_argument("--channels", type=int, help="C of a sample (paper: 128)")
    r.add_argument("--size", type=int, help="H = W of a sample (paper: 16)")
    r.add_argument("--batch", type=int, help="paper: 128")
    r.add_argument("--lr", type=float, help="default 1e-4")
    r.add_argument("--device", default="cpu")
    r.add_argument("--out", help="a study folder: writes OUT/random.json and OUT/random.png")
    r.add_argument("--json", help='write {"loss": [...], ...} here')
    r.add_argument("--plot", help="write the loss curves here (PNG)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_random)

    a = studies.add_parser("amber", help="Fig. 6: unsupervised SSN on Amber-style paintings, motif hits")
    a.add_argument("--quick", action="store_true", help="CPU seconds: 24 paintings at 60x80, 9x9 window")
    a.add_argument("--out", help="output folder (default: <workspace>/studies/amber)")
    a.add_argument("--data", help="existing paintings (synth amber); default: paint into OUT/paintings")
    a.add_argument("--iters", type=int, help="training iterations")
    a.add_argument("--hidden", type=int, help="K of the attention classifier")
    a.add_argument("--count", type=int, help="paintings to paint (paper: 128)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=_amber)

    p = studies.add_parser("pedestrians", help="Fig. 4: SSN on Pedestrian-128-style crops, PCK")
    p.add_argument("--quick", action="store_true", help="CPU seconds: a fixed random backbone, 48 crops")
    p.add_argument("--out", help="output folder (default: <workspace>/studies/pedestrians)")
    p.add_argument("--data", help="existing crops (synth pedestrians --single); default: make OUT/crops")
    p.add_argument("--iters", type=int, help="training iterations per strategy")
    p.add_argument("--count", type=int, help="crops to make (paper: 128)")
    p.add_argument(
        "--weights",
        help="backbone weights: imagenet (local torch cache only), none, a .pth, or a run's checkpoint",
    )
    p.add_argument(
        "--backbone",
        choices=["resnet34", "resnet18", "resnet50", "mobilenet_v2"],
        help="default resnet34 (the paper's); mobilenet_v2 is NOT in the paper",
    )
    p.add_argument(
        "--stages",
        type=int,
        choices=[1, 2, 3, 4],
        help="stride halvings kept after the stem (default 2: stride 8, 15 x 8 maps for 120 x 60 crops)",
    )
    p.add_argument("--frozen-backbone", action="store_true", help="train SSN only, on fixed features")
    p.add_argument("--warmup", type=float, help="share of iterations on labeled crops only")
    p.add_argument("--attention-loss", type=float, help="NOT in the paper: attention-to-keypoint CE weight")
    p.add_argument(
        "--position-prior",
        type=float,
        help="NOT in the paper: weight of the labeled crops' part-position prior on the semi maps (0: off)",
    )
    p.add_argument(
        "--facing",
        type=float,
        help="NOT in the paper: canonical left/right parts named by a facing head, its loss weight (0: off)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_pedestrians)
