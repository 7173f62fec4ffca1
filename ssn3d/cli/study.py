"""``python -m ssn3d study {random,...}``: the paper's SSN studies, each writing JSON and PNGs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ssn3d.annotations import atomic_write_text

GRID_PARTS = (3, 9, 16)  # the 3 values of N in the --grid run (paper Fig. 5 shows 9 runs; N not given)


def _random(args: argparse.Namespace) -> int:
    from ssn3d.studies.random_data import DISTRIBUTIONS, RandomStudyConfig, plot_curves, run_random_study, study_summary

    base = dict(iters=args.iters, seed=args.seed, channels=args.channels, size=args.size, batch=args.batch,
                lr=args.lr, device=args.device)
    runs = [(d, n) for d in DISTRIBUTIONS for n in GRID_PARTS] if args.grid else [(args.dist, args.parts)]
    records = []
    for dist, parts in runs:
        cfg = run_random_study(RandomStudyConfig(dist=dist, parts=parts, **base), progress=not args.quiet)
        rec = study_summary(cfg)
        records.append(rec)
        print(f"{dist:9s} N={parts:2d}: final L_SSN {rec['final_loss']:.4f} (log N = {rec['chance']:.4f})")
    out = records[0] if len(records) == 1 else {"runs": records}
    if args.json:
        atomic_write_text(args.json, json.dumps(out))
    if args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        plot_curves(records, args.plot)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="the paper's SSN studies (random data, Amber Abstract, Pedestrian 128)")
    studies = p.add_subparsers(dest="study", metavar="STUDY", required=True)
    r = studies.add_parser("random", help="Fig. 5: SSN alone on random 128x16x16 samples")
    r.add_argument("--dist", choices=["gaussian", "uniform", "ones"], default="gaussian")
    r.add_argument("--parts", type=int, default=9, help="N")
    r.add_argument("--iters", type=int, default=300)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--grid", action="store_true", help=f"the 9 runs: 3 distributions x N in {GRID_PARTS}")
    r.add_argument("--channels", type=int, default=128, help="C of a sample (paper: 128)")
    r.add_argument("--size", type=int, default=16, help="H = W of a sample (paper: 16)")
    r.add_argument("--batch", type=int, default=128, help="paper: 128")
    r.add_argument("--lr", type=float, default=1e-3)
    r.add_argument("--device", default="cpu")
    r.add_argument("--json", help="write {\"loss\": [...], ...} here")
    r.add_argument("--plot", help="write the loss curves here (PNG)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_random)
