"""Evaluation reports: training's final report, where reports live, which one applies, the first true match.

A real tiny run (the walkers-tiny config, two CPU steps) is trained once for the module; its reports are
real files written by the engine and read back through ``ssn3d.engine.evaluations``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ssn3d.engine.evaluations import (
    REPORT_TOPK,
    EvalReport,
    ReportError,
    find_report,
    locate_evaluation,
    read_report,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tiny_walkers: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ssn3d.config import load_config
    from ssn3d.engine.train import main

    out = tmp_path_factory.mktemp("eval-run")
    cfg = load_config(
        REPO / "configs" / "walkers-tiny.yaml",
        [
            f"data.root={tiny_walkers}",
            "train.max_steps=2",
            "train.epochs=1",
            "train.device=cpu",
            "model.strategy=unsupervised",
            f"data.annotations={out / 'none.json'}",
        ],
    )
    assert main(cfg, out / "run") == "done"
    return out / "run"


def _sizes(tiny_walkers: Path) -> tuple[str, tuple[int, int]]:
    from ssn3d.data.datasets import build_dataset

    ds = build_dataset("folder", str(tiny_walkers))
    return ds.dataset_id, (len(ds.query), len(ds.gallery))


def test_training_leaves_the_report_of_its_final_evaluation(run: Path, tiny_walkers: Path):
    from ssn3d.engine.evaluations import checkpoint_step
    from ssn3d.runs.status import read_status

    report = read_report(run / "eval.json")
    status = read_status(run)
    assert report.step == status["step"] == checkpoint_step(run / "checkpoints" / "last.pt")
    assert Path(report.checkpoint).name == "last.pt"
    assert report.metrics == pytest.approx(status["last_eval"])  # the one final evaluation, not a second
    assert (report.dataset_id, (len(report.query), len(report.gallery))) == _sizes(tiny_walkers)
    assert report.topk == min(REPORT_TOPK, len(report.gallery))
    for q in report.queries:  # every query with a match names it, and it matches
        assert q.first_match is not None and q.first_match.rank == q.first_hit >= 1
        assert report.gallery[q.first_match.index].pid == report.query[q.index].pid
        assert report.gallery[q.first_match.index].camid != report.query[q.index].camid


def test_locations_of_run_loose_and_other_dataset_reports(run: Path, tmp_path: Path):
    best, last = run / "checkpoints" / "best.pt", run / "checkpoints" / "last.pt"
    own = locate_evaluation(run)
    assert own.checkpoint == best and own.run == run and own.write_to == run / "eval.json"
    other = locate_evaluation(last, "folder-other")
    assert other.write_to == run / "eval-last-folder-other.json"
    assert other.candidates == (run / "eval-last-folder-other.json", run / "eval.json")
    loose = tmp_path / "model.pt"
    shutil.copy(best, loose)
    assert locate_evaluation(loose).write_to == tmp_path / "model.eval.json"
    outputs = tmp_path / "outputs"
    there = locate_evaluation(loose, "folder-x", outputs=outputs)
    assert there.run is None and there.candidates == (
        outputs / "model-folder-x.eval.json",
        loose.with_suffix(".eval.json"),
    )
    from ssn3d.engine.checkpoint import CheckpointNotFoundError

    with pytest.raises(CheckpointNotFoundError, match="neither a run folder nor a checkpoint"):
        locate_evaluation(tmp_path / "missing.pt")


def test_which_saved_report_applies(run: Path, tiny_walkers: Path, tmp_path: Path):
    dataset_id, sizes = _sizes(tiny_walkers)
    copy = tmp_path / "run"
    shutil.copytree(run, copy)  # a moved run folder keeps its reports: they are judged by place and step
    for name in ("best", "last"):  # both hold the final state here (best.pt was saved at that evaluation)
        location = locate_evaluation(copy / "checkpoints" / f"{name}.pt", dataset_id)
        found = find_report(location, dataset_id, sizes)
        assert found is not None and found.path == copy / "eval.json"
    location = locate_evaluation(copy / "checkpoints" / "last.pt", dataset_id)
    assert find_report(location, "folder-another", sizes) is None  # another dataset
    assert find_report(location, dataset_id, (sizes[0], sizes[1] + 1)) is None  # same name, other content
    doc = json.loads((copy / "eval.json").read_text())
    (copy / "eval.json").write_text(json.dumps({**doc, "step": doc["step"] - 1}))  # before a resume
    assert find_report(location, dataset_id, sizes) is None
    # the page's own evaluation of this checkpoint comes first; a damaged one is skipped, not fatal
    location.write_to.write_text("{not json")
    assert find_report(location, dataset_id, sizes) is None
    location.write_to.write_text(json.dumps(doc))
    assert find_report(location, dataset_id, sizes).path == location.write_to
    with pytest.raises(ReportError, match="not a JSON evaluation report"):
        read_report(_damaged(tmp_path))
    with pytest.raises(ReportError, match="damaged or of another version"):
        EvalReport.from_dict({"format": "ssn3d-eval", "dataset": {}}, tmp_path / "x.json")


def _damaged(folder: Path) -> Path:
    path = folder / "damaged.json"
    path.write_bytes(b"\xff\xfe not text")
    return path


def test_the_first_true_match_is_kept_past_top_k(run: Path, tmp_path: Path):
    import torch

    from ssn3d.data.datasets import build_dataset
    from ssn3d.engine.checkpoint import load_checkpoint
    from ssn3d.engine.evaluate import evaluate, evaluate_target
    from ssn3d.metrics import rank_gallery

    doc, path = evaluate_target(run, topk=1, device="cpu", workers=0, out=tmp_path / "eval.json")
    report = read_report(path)
    assert report.topk == 1
    # the full ranking, from the same distances, says where each first match is
    ds = build_dataset("folder", doc["dataset"]["root"])
    model, cfg, _ = load_checkpoint(run / "checkpoints" / "best.pt")
    result = evaluate(model, ds, cfg, device=torch.device("cpu"), workers=0)
    q_p, q_c = np.array([t.pid for t in ds.query]), np.array([t.camid for t in ds.query])
    g_p, g_c = np.array([t.pid for t in ds.gallery]), np.array([t.camid for t in ds.gallery])
    full = rank_gallery(result["distmat"], q_p, g_p, q_c, g_c, topk=None)
    for q in report.queries:
        first = int(np.flatnonzero(full.matches[q.index])[0])
        assert q.first_match.index == full.indices[q.index, first]
        assert q.first_match.rank == q.first_hit == first + 1
    assert any(q.first_hit > 1 for q in report.queries), "a two-step model misses some rank-1 matches"
