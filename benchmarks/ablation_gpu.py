"""The walkers ablation on one GPU: every row trained at once, one table, within a wall-clock deadline.

One command generates the dataset of the semi-supervised issue (``generate_walkers(ids=96, cameras=3,
tracklets_per_camera=2, frames=24, size=(128, 64), seed=7)``), the two label files (2 ground-truth
frames per training tracklet; the supervised row's noisy keypoints on every frame), then launches
one ``python -m ssn3d train configs/walkers.yaml data.workers=1 train.eval_every=0 ...`` per row and
seed, ``--parallel`` at a time on the one GPU, and, after each training, ``python -m ssn3d evaluate``
(its ``eval.json`` carries part PCK where the build measures it). A global ``--deadline`` (8 min of
wall time from the start, data included) stops what is still running; every finished run is kept.

    python benchmarks/ablation_gpu.py                      # writes $OUT (or --out): ablation.json, .md
    python benchmarks/ablation_gpu.py --tiny --out DIR     # CPU smoke: tiny data, 2 rows, a few steps

Rows: ``ROWS`` = the accuracy sweep's rows (``benchmarks/accuracy_sweep.py``: pooling, plain 3D conv,
unsupervised, semi, supervised with noisy keypoints, semi non-shared, semi lambda variants) plus one
row per lever in its ``LEVER_ROWS``, one line each (one table for both runners), less the schedule rows
that set their own step count for the sweep's CPU budget. A row whose overrides
this build's config does not accept (a lever not wired yet) is reported as skipped with the config's
one-sentence reason; so is a row that names ImageNet weights when the torch cache has none (the
MobileNetV2 rows: put ``mobilenet_v2-b0353104.pth`` under ``$TORCH_HOME/hub/checkpoints`` first).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from accuracy_sweep import (  # noqa: E402  (one row table: the sweep's rows and its one line per lever)
    LEVER_ROWS,
    NOISE,
    Row,
    config_problem,
    evaluate_command,
    last_eval,
    prepare_data,
    rows,
)

DATASET = dict(ids=96, cameras=3, tracklets_per_camera=2, frames=24, size=(128, 64), seed=7)
TINY_DATASET = dict(ids=8, cameras=2, tracklets_per_camera=1, frames=8, size=(64, 32), seed=7)
COMMON = ("data.workers=1", "train.eval_every=0")  # the issue's: one loader process per run, eval at the end
TINY_COMMON = ("data.workers=0", "train.eval_every=0", "train.epochs=1", "train.iters_per_epoch=3",
               "train.device=cpu", "train.amp=false", "train.channels_last=false", "train.log_every=1",
               "model.attn_channels=8", "model.part_channels=4", "model.embed_dim=16",
               "data.num_ids=2", "data.num_instances=2", "data.stride=1", "data.test_chunk=8")  # fmt: skip
TINY_ROWS = ("temporal_pooling", "semi")

# the sweep's rows that set their own step count (its CPU-scale schedule rows) mean nothing at this budget
ROWS: tuple[Row, ...] = tuple(r for r in (*rows(), *LEVER_ROWS) if not r.own_schedule)
SEEDS = (0, 1)  # main rows run both, the others seed 0 (as the table)


@dataclass
class Job:
    row: Row
    seed: int
    run_dir: Path
    cmds: list[list[str]]  # train, then evaluate
    log: Path
    proc: subprocess.Popen | None = None
    step: int = 0  # index of the command running
    started: float = 0.0
    ended: float = 0.0
    status: str = "queued"  # queued | running | done | failed | timed out | not started


def run_order(jobs: list[Job]) -> list[Job]:
    """Every row's seed 0 first, and within a seed the main rows (the paper's and the levers run on every
    seed) before the one-seed ablations: there are more rows than one deadline fits, and a cut should
    leave one seed of each row that carries a goal. Otherwise the table's order."""
    return sorted(jobs, key=lambda j: (j.seed, not j.row.main))


def find_pck(doc: dict[str, Any]) -> dict[str, Any]:
    """Every entry whose name holds "pck", at the top of ``doc`` or under its "metrics"."""
    found: dict[str, Any] = {}
    for scope in (doc, doc.get("metrics") if isinstance(doc.get("metrics"), dict) else {}):
        found.update({k: v for k, v in scope.items() if "pck" in k.lower()})
    return found


def headline_pck(found: dict[str, Any]) -> float | None:
    """One overall PCK from ``find_pck``: a number, or a dict's "overall", preferring PCK at 0.1."""
    cands: list[tuple[bool, int, float]] = []
    for k, v in found.items():
        if isinstance(v, dict):
            v = v.get("overall")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            cands.append(("0.2" in k, len(k), float(v)))
    return min(cands)[2] if cands else None


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _start(job: Job, threads: int) -> None:
    sink = open(job.log, "a", encoding="utf-8")
    job.proc = subprocess.Popen(job.cmds[job.step], cwd=ROOT, env=_env(threads), stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    sink.close()  # the child holds its own copy
    job.status = "running"


def _stop(job: Job) -> None:
    """SIGTERM to the run's process group (its loader workers too), SIGKILL after 10 s."""
    assert job.proc is not None
    try:
        os.killpg(job.proc.pid, signal.SIGTERM)
        job.proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(job.proc.pid, signal.SIGKILL)
        job.proc.wait()
    except ProcessLookupError:
        pass


def schedule(jobs: list[Job], parallel: int, deadline: float, threads: int, min_left: float) -> None:
    """Run every job's commands in order, ``parallel`` jobs at a time, until done or ``deadline``."""
    queue = list(jobs)
    running: list[Job] = []
    while queue or running:
        now = time.monotonic()
        for job in list(running):
            rc = job.proc.poll()
            if rc is None:
                continue
            if rc == 0 and job.step + 1 < len(job.cmds):
                job.step += 1
                _start(job, threads)
                continue
            running.remove(job)
            job.ended, job.status = now, "done" if rc == 0 else "failed"
            print(
                f"{job.row.name} seed {job.seed}: {job.status} after {job.ended - job.started:.0f} s",
                flush=True,
            )
        if now >= deadline:
            for job in running:
                _stop(job)
                job.ended, job.status = now, "timed out"
            for job in queue:
                job.status = "not started"
            return
        while queue and len(running) < parallel and deadline - now >= min_left:
            job = queue.pop(0)
            job.started = now
            _start(job, threads)
            running.append(job)
        if queue and not running and deadline - now < min_left:
            for job in queue:
                job.status = "not started"
            return
        time.sleep(1.0)


def collect(job: Job) -> dict[str, Any]:
    """One run's record: retrieval from the run's last evaluation, part PCK from eval.json where present."""
    rec: dict[str, Any] = {"row": job.row.name, "seed": job.seed, "status": job.status,
                           "wall_s": round(job.ended - job.started, 1) if job.started else None}  # fmt: skip
    try:
        ev = last_eval(job.run_dir)
        rec.update(step=ev["step"], metrics={k: ev[k] for k in ("mAP", "top1", "top5", "mINP") if k in ev})
        pck = find_pck(ev)
    except (OSError, RuntimeError, ValueError):
        pck = {}
    eval_json = job.run_dir / "eval.json"
    if eval_json.is_file():
        pck.update(find_pck(json.loads(eval_json.read_text(encoding="utf-8"))))
    if pck:
        rec["pck"] = pck
        rec["pck_overall"] = headline_pck(pck)
    if job.status != "done" and job.log.is_file():
        rec["log_tail"] = job.log.read_text(encoding="utf-8", errors="replace")[-1500:]
    return rec


def summarise(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
            "half_range": float((v.max() - v.min()) / 2), "n": len(v)}  # fmt: skip


def _cell(s: dict[str, float] | None, scale: float = 100.0, digits: int = 1) -> str:
    if s is None:
        return "-"
    if s["n"] == 1:
        return f"{scale * s['mean']:.{digits}f}"
    return f"{scale * s['mean']:.{digits}f} ± {scale * s['half_range']:.{digits}f}"


def table(report: dict[str, Any]) -> str:
    lines = ["| row | seeds done | mAP | top-1 | part PCK | status |", "|---|---|---|---|---|---|"]
    for r in report["rows"].values():
        s = r["summary"]
        status = r.get("skipped") or ", ".join(f"s{x['seed']} {x['status']}" for x in r["runs"])
        done = sum(1 for x in r["runs"] if x.get("metrics"))
        lines.append(f"| {r['label']} | {done} | {_cell(s.get('mAP'))} | {_cell(s.get('top1'))} | "
                     f"{_cell(s.get('pck'), 1.0, 3)} | {status} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def machine() -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"gpu": gpu, "cpu_count": os.cpu_count(), "torch": torch.__version__}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, help="where ablation.json and ablation.md go (default: $OUT)")
    p.add_argument("--work", type=Path, help="data and run folders (default: runs/ablation[-tiny])")
    p.add_argument("--deadline", type=float, default=480.0, help="wall seconds from the start, data included")
    p.add_argument("--parallel", type=int, default=16, help="runs at once (default 16)")
    p.add_argument("--min-left", type=float, default=120.0, help="start no run with fewer seconds left")
    p.add_argument("--rows", default="", help="comma-separated row names (default: all; --tiny: 2)")
    p.add_argument("--no-evaluate", action="store_true", help="skip `ssn3d evaluate` (eval.json, part PCK)")
    p.add_argument("--tiny", action="store_true", help="CPU smoke mode: tiny data, 2 rows, 3 steps")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    out = args.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    if out is None:
        p.error("say where the table goes: --out DIR (or set OUT)")
    known = {r.name: r for r in ROWS}
    names = [n for n in args.rows.split(",") if n] or (list(TINY_ROWS) if args.tiny else list(known))
    if unknown := [n for n in names if n not in known]:
        p.error(f"unknown row {unknown[0]!r}; known rows: {', '.join(known)}")
    work = (args.work or ROOT / "runs" / ("ablation-tiny" if args.tiny else "ablation")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    dataset = TINY_DATASET if args.tiny else DATASET
    base = ROOT / "configs" / ("walkers-tiny.yaml" if args.tiny else "walkers.yaml")
    prepare_data(work, {"dataset": dataset})
    t_data = time.monotonic() - t0
    common = [*(TINY_COMMON if args.tiny else COMMON), f"data.root={work / 'walkers'}"]
    report: dict[str, Any] = {"command": " ".join(["python benchmarks/ablation_gpu.py", *(argv or sys.argv[1:])]),
                              "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
                              "dataset": {k: list(v) if isinstance(v, tuple) else v for k, v in dataset.items()},
                              "noise": NOISE, "base_config": str(base.relative_to(ROOT)), "common": common[:-1],
                              "deadline_s": args.deadline, "parallel": args.parallel, "data_s": round(t_data, 1),
                              "rows": {}}  # fmt: skip
    jobs: list[Job] = []
    for name in names:
        row = known[name]
        overrides = [*common, *row.overrides]
        if row.labels:
            overrides.append(f"data.annotations={work / f'labels-{row.labels}.json'}")
        report["rows"][name] = {"label": row.label, "overrides": list(row.overrides), "runs": []}
        if problem := config_problem(base, overrides):
            report["rows"][name]["skipped"] = f"skipped: {problem}"
            continue
        for seed in SEEDS if row.main and not args.tiny else SEEDS[:1]:
            run_dir = work / "runs" / f"{name}-s{seed}"
            train = [sys.executable, "-m", "ssn3d", "train", str(base), *overrides, f"train.seed={seed}",
                     "--run-dir", str(run_dir), "--no-progress"]  # fmt: skip
            cmds = [train]
            if not args.no_evaluate:
                cmds.append(evaluate_command(run_dir, "cpu" if args.tiny else "auto"))
            if run_dir.exists():  # a run of an earlier invocation: start over, the folder is ours
                shutil.rmtree(run_dir)
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            log = work / "runs" / f"{name}-s{seed}.log"
            log.unlink(missing_ok=True)
            jobs.append(Job(row, seed, run_dir, cmds, log))
    jobs = run_order(jobs)
    threads = max(1, (os.cpu_count() or 1) // max(1, min(args.parallel, len(jobs) or 1)))
    print(f"data ready in {t_data:.0f} s; {len(jobs)} runs, {args.parallel} at a time, {threads} threads each",
          flush=True)  # fmt: skip
    schedule(jobs, args.parallel, t0 + args.deadline, threads, 0.0 if args.tiny else args.min_left)
    for job in jobs:
        report["rows"][job.row.name]["runs"].append(collect(job))
    for r in report["rows"].values():
        done = [x for x in r["runs"] if x.get("metrics")]
        r["summary"] = {
            "mAP": summarise([x["metrics"]["mAP"] for x in done]),
            "top1": summarise([x["metrics"]["top1"] for x in done]),
            "pck": summarise([x["pck_overall"] for x in done if x.get("pck_overall") is not None]),
        }
    report["wall_s"] = round(time.monotonic() - t0, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    md = table(report)
    head = (f"{report['command']} on {report['machine']['gpu'] or 'CPU'} ({report['machine']['cpu_count']} cores), "
            f"{report['date']}: {report['wall_s']:.0f} s wall, data {t_data:.0f} s\n\n")  # fmt: skip
    (out / "ablation.md").write_text(head + md, encoding="utf-8")
    print(head + md, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
