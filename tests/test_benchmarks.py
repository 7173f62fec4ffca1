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

import pytest

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "benchmarks" / "accuracy_sweep.py"


def _sweep(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SWEEP), "--scale", "smoke", "--out", str(tmp_path / "work")]
    cmd += ["--results", str(tmp_path / "results"), "--figures", str(tmp_path / "fig"), *extra]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240)


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
    assert recs["temporal_pooling-s0"]["pck"] is None  # no attention maps
    pck = recs["semi-s0"]["pck"]  # from the run's eval.json: overall, per part, and the two baselines
    assert len(pck["argmax@0.1"]["per_part"]) == 9 and 0.0 <= pck["argmax@0.1"]["overall"] <= 1.0
    assert pck["random@0.1"]["overall"] < pck["mean_position@0.1"]["overall"]
    assert "Temporal pooling (baseline)" in (results / "table.md").read_text()
    assert "mean labeled position" in (results / "table.md").read_text()
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


ABLATION = ROOT / "benchmarks" / "ablation_gpu.py"


@pytest.mark.slow
def test_ablation_gpu_tiny_trains_rows_concurrently_and_tables(tmp_path: Path) -> None:
    """The GPU ablation script's --tiny mode: data, labels, two concurrent runs, evaluate, one JSON + table."""
    cmd = [
        sys.executable,
        str(ABLATION),
        "--tiny",
        "--out",
        str(tmp_path / "out"),
        "--work",
        str(tmp_path / "w"),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "ablation.json").read_text())
    assert list(report["rows"]) == ["temporal_pooling", "semi"]
    for row in report["rows"].values():
        (run,) = row["runs"]
        assert run["status"] == "done" and run["step"] == 3
        assert 0.0 <= run["metrics"]["top1"] <= 1.0 and 0.0 < run["metrics"]["mAP"] <= 1.0
        assert row["summary"]["mAP"]["n"] == 1 and row["summary"]["mAP"]["mean"] == run["metrics"]["mAP"]
    # both trainings overlapped in time: they ran concurrently, not one after the other
    logs = [tmp_path / "w" / "runs" / f"{r}-s0" / "status.json" for r in report["rows"]]
    starts = [json.loads(p.read_text())["started"] for p in logs]
    assert abs(starts[0] - starts[1]) < 10
    # `ssn3d evaluate` ran after training and left each run's eval.json
    assert all((tmp_path / "w" / "runs" / f"{r}-s0" / "eval.json").is_file() for r in report["rows"])
    # the semi row trained from the two-frames-per-tracklet labels the script made
    labels = json.loads((tmp_path / "w" / "labels-semi.json").read_text())["frames"]
    assert labels and all(k.startswith("train/") for k in labels)
    table = (tmp_path / "out" / "ablation.md").read_text()
    assert "Temporal pooling (baseline)" in table and "| s0 done |" in table


def test_ablation_rows_refuse_unknown_keys_and_read_pck() -> None:
    """A lever row whose key the config lacks is skipped with the config's reason; PCK is found by name."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import ablation_gpu

    base = ROOT / "configs" / "walkers.yaml"
    assert ablation_gpu.config_problem(base, ["model.strategy=semi"]) == ""
    reason = ablation_gpu.config_problem(base, ["loss.no_such_lever=1"])
    assert "no_such_lever" in reason and str(base) not in reason
    names = [r.name for r in ablation_gpu.ROWS]
    assert len(names) == len(set(names))
    for must in ("temporal_pooling", "conv3d", "unsupervised", "semi", "supervised_noisy", "semi_nonshared"):
        assert must in names
    assert sum(n.startswith("lambda_") for n in names) == 4 and sum(n.startswith("lever") for n in names) >= 5
    # the wired levers (2, 3 and 5) are accepted by this build's config; one row table for both runners
    import accuracy_sweep

    assert ablation_gpu.LEVER_ROWS is accuracy_sweep.LEVER_ROWS
    # the sweep's CPU-budget schedule rows (300 steps) are not run at the GPU budget, the others all are
    schedule = {r.name for r in accuracy_sweep.LEVER_ROWS if r.own_schedule}
    assert "levers_facing_mnv2_128_300" in schedule and "levers_facing_mnv2_128" not in schedule
    assert not schedule & set(names) and {r.name for r in accuracy_sweep.LEVER_ROWS} - schedule <= set(names)
    wired = [r for r in ablation_gpu.LEVER_ROWS if r.name.startswith(("lever2", "lever3", "lever5"))]
    assert len(wired) >= 7
    for row in wired:
        assert ablation_gpu.config_problem(base, list(row.overrides)) == "", row.name
    found = ablation_gpu.find_pck({"metrics": {"mAP": 0.5, "pck@0.2": 0.9, "pck@0.1": {"overall": 0.7}}})
    assert set(found) == {"pck@0.2", "pck@0.1"} and ablation_gpu.headline_pck(found) == 0.7
    assert ablation_gpu.headline_pck({}) is None


@pytest.mark.slow
def test_bench_position_ce_quick_writes_both_arms(tmp_path: Path) -> None:
    """benchmarks/bench_position_ce.py: the same training with and without PositionCE, PCK of each."""
    out = tmp_path / "pce.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_position_ce.py"), "--quick", "--iters", "3"]
    proc = subprocess.run([*cmd, "--arms", "ssn_only,position_ce", "--out", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = json.loads(out.read_text())
    assert set(rec["arms"]) == {"ssn_only", "position_ce"} and rec["config"]["iters"] == 3
    assert rec["arms"]["ssn_only"]["weight"] == 0.0 and rec["arms"]["position_ce"]["weight"] == 1.0
    for arm in rec["arms"].values():
        assert 0.0 <= arm["overall"] <= 1.0 and len(arm["per_part"]) == 9
    assert 0.0 < rec["baselines"]["chance"] < rec["baselines"]["mean_position"]["overall"]


@pytest.mark.slow
def test_gpu_speed_tiny_writes_every_section(tmp_path: Path) -> None:
    """benchmarks/gpu_speed.py --tiny on the CPU: every section of the one JSON, the model's one SSN path."""
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "gpu_speed.py"),
        "--tiny",
        "--out",
        str(tmp_path / "out"),
    ]
    proc = subprocess.run([*cmd, "--data", str(tmp_path / "data")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rep = json.loads((tmp_path / "out" / "gpu_speed.json").read_text())
    assert rep["tiny"] and rep["skipped"] == []
    eager = {r["model"]: r for r in rep["step_eager"]["rows"]}
    assert set(eager) == {"ssn3d", "baseline", "backbone"}
    assert all(r["step_ms"] > 0 and r["clips_per_s"] > 0 for r in eager.values())
    assert all(v > 0 for v in rep["step_eager"]["ratios"].values())
    assert {r["path"] for r in rep["windows_ops"]} == {
        "semi/unfold",
        "semi/bmm",
        "supervised/unfold",
        "supervised/bmm",
    }
    ops = {r["path"]: r for r in rep["windows_ops"]}
    assert ops["semi/bmm"]["saved_mb"] < ops["semi/unfold"]["saved_mb"]  # no unfolded windows kept
    prof = rep["profile"]
    assert prof["steps"] == 2 and prof["top"] and prof["top"][0]["ms_per_step"] > 0
    assert rep["e2e_loader"]["loader_clips_per_s"] > 0 and rep["e2e_loader"]["memory_clips_per_s"] > 0
    assert rep["e2e_loader"]["items"] == "uint8"  # the GPU's default items, normalized in the step
    f32, u8 = rep["loader_items"]["rows"]
    assert (f32["items"], u8["items"]) == ("float32", "uint8")
    assert u8["clip_mb_per_batch"] * 4 == pytest.approx(f32["clip_mb_per_batch"], rel=0.01)
    (compiled,) = rep["step_compiled"]["rows"]
    assert compiled["model"] == "ssn3d" and compiled["graph_breaks"] == 0  # no host sync left in the step


def test_a_row_naming_imagenet_weights_is_skipped_when_the_torch_cache_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Otherwise the backbone warns, starts from random init, and the row's name says what did not run."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import accuracy_sweep

    base = ROOT / "configs" / "walkers.yaml"
    mobilenet = ["model.backbone=mobilenet_v2", "model.backbone_stages=2", "model.weights=imagenet"]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    reason = accuracy_sweep.config_problem(base, mobilenet)
    assert "mobilenet_v2-b0353104.pth" in reason and "TORCH_HOME" in reason
    assert accuracy_sweep.config_problem(base, [*mobilenet[:2], "model.weights=none"]) == ""
    checkpoints = tmp_path / "home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "mobilenet_v2-b0353104.pth").write_bytes(b"")  # found by name; read only when a run starts
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    assert accuracy_sweep.config_problem(base, mobilenet) == ""


def test_gpu_runs_start_with_every_rows_first_seed_and_the_main_rows_first() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import ablation_gpu
    from accuracy_sweep import Row

    main, side = Row("main", "", ()), Row("side", "", (), main=False)
    jobs = [ablation_gpu.Job(r, seed, Path(f"{r.name}{seed}"), [], Path("log"))
            for r, seed in ((side, 0), (main, 0), (main, 1), (main, 2))]  # fmt: skip
    order = [(j.row.name, j.seed) for j in ablation_gpu.run_order(jobs)]
    assert order == [("main", 0), ("side", 0), ("main", 1), ("main", 2)]
