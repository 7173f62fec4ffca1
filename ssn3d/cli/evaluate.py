"""``python -m ssn3d evaluate RUN_OR_CHECKPOINT [--dataset NAME --root ROOT --option k=v ...]``.

The paper's test protocol (all frames, 32-frame chunks, mean feature; mAP, CMC, and mINP), written
to the run's ``eval.json`` with the ranked gallery of every query for the app's retrieval viewer; and
when the test frames have keypoints, part PCK with its two baselines, printed as one table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ssn3d.config import ConfigError
from ssn3d.engine.evaluations import REPORT_TOPK


def parse_options(items: list[str]) -> dict[str, str]:
    """``["split=3", "gallery=rest"]`` -> ``{"split": "3", "gallery": "rest"}`` (loaders coerce the strings)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {item!r} must look like key=value, e.g. --option split=0.")
        out[key.strip()] = value
    return out


def check_args(args: argparse.Namespace) -> None:
    """Refuse values the evaluation cannot use, before a model is loaded or a frame decoded."""
    if args.topk < 1:
        raise ConfigError(f"--topk {args.topk} keeps no gallery items; pass a whole number >= 1.")
    device = args.device
    if not (device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ConfigError(f"--device {device!r} is not a device here; choose auto, cpu, cuda or cuda:N.")
    if args.workers is not None and args.workers < 0:
        raise ConfigError(f"--workers {args.workers} must be >= 0 (0 decodes in this process).")
    if args.out and Path(args.out).is_dir():
        raise ConfigError(
            f"--out {args.out} is a folder; pass the JSON file to write, e.g. {Path(args.out) / 'eval.json'}."
        )


PCK_COLUMNS = (
    ("argmax", "argmax"),
    ("soft_argmax", "soft-argmax"),
    ("argmax_best_side", "best side"),
    ("mean_position", "mean position"),
    ("random", "random peak"),
)


def pck_table(pck: dict[str, Any]) -> str:
    """The ``pck`` section of an eval report as a compact text table: parts x (method, alpha), then overall."""
    methods = pck["methods"]
    alphas = [f"pck@{a:g}" for a in pck["alphas"]]
    parts = list(methods["mean_position"][alphas[0]]["per_part"])
    width = max(len(p) for p in [*parts, "overall"]) + 2
    cell = 6

    def row(name: str, values: list[str]) -> str:  # values: one per (method, alpha), grouped by method
        k = len(alphas)
        groups = ("".join(v.rjust(cell) for v in values[i : i + k]) for i in range(0, len(values), k))
        return name.ljust(width) + "  ".join(groups)

    columns = [(m, label) for m, label in PCK_COLUMNS if m in methods]  # "best side": named parts only

    def value(method: str, alpha: str, part: str | None) -> str:
        rep = methods[method][alpha]
        v = rep["overall"] if part is None else rep["per_part"].get(part)
        return "-" if v is None else f"{v:.2f}"

    tols = " / ".join(f"{t:g}" for t in pck["tolerance_px"])
    lines = [
        f"part PCK on {pck['frames']} test frames ({pck['visible_keypoints']} visible keypoints), "
        f"within {' / '.join(f'{a:g}' for a in pck['alphas'])} x crop height ({tols} px)"
        + ("; parts matched to keypoints (Hungarian)" if pck["matched"] else ""),
        "".ljust(width) + "  ".join(label.rjust(len(alphas) * cell) for _, label in columns),
        row("", [a.removeprefix("pck") for _ in columns for a in alphas]),
    ]
    for part in parts:
        lines.append(row(part, [value(m, a, part) for m, _ in columns for a in alphas]))
    lines.append(row("overall", [value(m, a, None) for m, _ in columns for a in alphas]))
    lines.append(f"mean position from {pck['mean_position_source']}; random peak: its exact expectation")
    if "argmax_best_side" in methods:
        lines.append(
            "best side: argmax with each frame's left and right read whichever way fits it better "
            "(a diagnostic: the gap to argmax is hits lost to left/right swaps alone)"
        )
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    check_args(args)  # before the import: a typo is refused at once, not after torch has loaded
    from ssn3d.engine.evaluate import evaluate_target

    bar = None
    if sys.stderr.isatty() and not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(desc="evaluate", unit="chunk", dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    report, path = evaluate_target(
        args.target,
        dataset=args.dataset,
        root=args.root,
        options=parse_options(args.option) if args.option else None,
        topk=args.topk,
        device=args.device,
        workers=args.workers,
        out=args.out,
        progress=progress if bar is not None else None,
    )
    if bar is not None:
        bar.close()
    m = report["metrics"]
    print(
        f"{report['dataset']['id']}: {len(report['query'])} queries, {len(report['gallery'])} gallery tracklets"
    )
    print("  ".join(f"{k} {100 * v:.2f}" for k, v in m.items() if not k.startswith("pck@")))
    if report.get("pck"):
        print(pck_table(report["pck"]))
    print(f"wrote {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a run or checkpoint on query/gallery (mAP, CMC, mINP) and write eval.json",
        description="Features with the paper's test protocol, Euclidean distances, torchreid's ranking rule.",
    )
    p.add_argument(
        "target", metavar="RUN_OR_CHECKPOINT", help="a run folder (best.pt, else last.pt) or a .pt file"
    )
    p.add_argument(
        "--dataset", help="evaluate on this dataset instead of the trained one (mars, ilidsvid, ...)"
    )
    p.add_argument("--root", help="that dataset's folder")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="dataset loader option")
    p.add_argument(
        "--topk",
        type=int,
        default=REPORT_TOPK,
        help="ranked gallery items kept per query in the JSON (each query's first match is kept anyway)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--workers", type=int, help="frame-decoding processes (default: the config's data.workers)"
    )
    p.add_argument(
        "--out",
        help="the JSON file (default: RUN/eval.json or CHECKPOINT.eval.json on the trained dataset; "
        "RUN/eval-CHECKPOINT-DATASET.json or CHECKPOINT-DATASET.eval.json beside it on another dataset)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    p.set_defaults(func=_run)
