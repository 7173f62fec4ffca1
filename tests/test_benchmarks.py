"""Smoke test of the accuracy-sweep runner (benchmarks/accuracy_sweep.py): real data, real training subprocesses.

Two rows x one seed x two steps on tiny walkers: the runner must generate the data and label files,
train each row through the CLI, write one result JSON per run, skip finished runs when started
again, and build the table (partial while rows are missing) and the bar plot.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "benchmarks" / "accuracy_sweep.py"


def _sweep(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SWEEP), "--scale", "smoke", "--out", str(tmp_path / "work")]
    cmd += ["--results", str(tmp_path / "results"), "--figures", str(tmp_path / "fig"), *extra]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_sweep_runs_rows_resumes_and_tables(tmp_path: Path) -> None:
    first = _sweep(tmp_path, "--rows", "temporal_pooling,semi")
    assert first.returncode == 0, first.stderr[-2000:]
    results = tmp_path / "results"
    recs = {f.stem: json.loads(f.read_text()) for f in results.glob("*-s*.json")}
    assert set(recs) == {"temporal_pooling-s0", "semi-s0"}
    for rec in recs.values():
        assert rec["step"] == 2
        for m in ("mAP", "top1", "top5", "top10", "mINP"):
            assert 0.0 <= rec["metrics"][m] <= 1.0
        assert rec["metrics"]["top1"] <= rec["metrics"]["top5"] <= rec["metrics"]["top10"]
    # The semi row trained from the two-frames-per-tracklet label file the runner wrote.
    labels = json.loads((tmp_path / "work" / "labels-semi.json").read_text())["frames"]
    train_tracklets = {str(Path(k).parent) for k in labels}
    assert len(labels) == 2 * len(train_tracklets) and all(k.startswith("train/") for k in labels)
    assert "Temporal pooling (baseline)" in (results / "table.md").read_text()
    assert (tmp_path / "fig" / "accuracy-rows-smoke.png").stat().st_size > 1000

    # Started again (as after a kill): the two finished runs are skipped, not trained again.
    before = (results / "semi-s0.json").stat().st_mtime_ns
    second = _sweep(tmp_path, "--rows", "temporal_pooling,semi", "--no-figures")
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.count("skipped") == 2 and "training" not in second.stdout
    assert (results / "semi-s0.json").stat().st_mtime_ns == before

    # The full row list with only two runs finished is reported as partial, unfinished rows as not run.
    report = _sweep(tmp_path, "--report-only", "--no-figures")
    assert report.returncode == 0, report.stderr[-2000:]
    assert "PARTIAL" in report.stdout and "not run" in report.stdout
