"""Where the evaluation of a checkpoint on a dataset lives, which saved report applies, and a typed reader.

An evaluation report is the ``eval.json`` document of ``ssn3d.engine.evaluate.eval_report``. Reports
are kept beside what they evaluate:

::

    RUN/eval.json                         the run's report on its own dataset: written by training's
                                          final evaluation and by ``python -m ssn3d evaluate RUN``
    RUN/eval-<checkpoint>-<dataset>.json  another evaluation of RUN/checkpoints/<checkpoint>.pt
                                          (a chosen checkpoint, or another dataset)
    CKPT.eval.json                        a loose checkpoint's report on its own dataset (the CLI)
    OUTPUTS/<checkpoint>-<dataset>.eval.json
                                          a loose checkpoint's evaluation on a dataset, when its own folder
                                          is not the place to write (the app writes the workspace's outputs/)

A saved report applies to checkpoint C on dataset D when it describes D (same dataset id and the same
number of query and gallery tracklets, so the frames it lists are D's) and C's weights: a report in
C's run folder made at C's training step (``best.pt`` saved at the final evaluation is the state that
evaluation measured), or, for a loose checkpoint, a report of the file with that name at that step.
A resumed run moves the step on, so its older reports no longer apply.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssn3d.runs.folder import RunPaths

_logger = logging.getLogger(__name__)

REPORT_TOPK = 20  # ranked gallery items kept per query: four rows of five on the Retrieval page


class ReportError(ValueError):
    """A report file that cannot be read as an evaluation report; the message names the file."""


# --------------------------------------------------------------------------- where reports live


@dataclass(frozen=True)
class EvalLocation:
    """Where the evaluation of one checkpoint on one dataset is written, and the reports that may apply.

    Attributes:
        checkpoint: the checkpoint file evaluated.
        run: its run folder, or None for a loose checkpoint.
        write_to: where a new evaluation is written.
        candidates: saved reports that may apply, most specific first (``find_report`` checks them).
    """

    checkpoint: Path
    run: Path | None
    write_to: Path
    candidates: tuple[Path, ...]


def _run_of(checkpoint: Path) -> Path | None:
    if checkpoint.parent.name == "checkpoints" and RunPaths(checkpoint.parent.parent).config.is_file():
        return checkpoint.parent.parent
    return None


def locate_evaluation(
    target: str | os.PathLike, dataset_id: str | None = None, *, outputs: str | os.PathLike | None = None
) -> EvalLocation:
    """Where the evaluation of ``target`` on dataset ``dataset_id`` lives.

    Args:
        target: a run folder (its best.pt, else last.pt) or a checkpoint file.
        dataset_id: the dataset (``VideoReIDDataset.dataset_id``); None: the one the checkpoint trained on.
        outputs: for a loose checkpoint evaluated on a named dataset, the folder to write into
            (default: the checkpoint's own folder).

    Raises:
        CheckpointNotFoundError: a run without a checkpoint, or a path that is neither.
    """
    from ssn3d.engine.checkpoint import CheckpointNotFoundError  # torch: only once a path is located

    target = Path(target)
    if target.is_dir():
        paths = RunPaths(target)
        ckpt = paths.best if paths.best.is_file() else paths.last
        if not ckpt.is_file():
            raise CheckpointNotFoundError(
                f"run {target} has no checkpoint yet ({paths.last}); train it first."
            )
    elif target.is_file():
        ckpt = target
    else:
        raise CheckpointNotFoundError(
            f"{target} is neither a run folder nor a checkpoint file; check the path."
        )
    run = _run_of(ckpt)
    own = RunPaths(run).eval if run is not None else ckpt.with_suffix(".eval.json")
    if dataset_id is None:
        return EvalLocation(ckpt, run, own, (own,))
    if run is not None:
        specific = run / f"eval-{ckpt.stem}-{dataset_id}.json"
    else:
        specific = Path(outputs or ckpt.parent) / f"{ckpt.stem}-{dataset_id}.eval.json"
    return EvalLocation(ckpt, run, specific, (specific, own))


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The training step a checkpoint holds, read without loading its tensors (None: unreadable)."""
    import torch

    try:
        # mmap: the pickle is parsed, the weights stay on disk, so this is cheap for a large model too
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # a damaged file: the caller treats it as "no report applies"
        _logger.warning("cannot read the step of checkpoint %s: %s", path, e)
        return None
    step = obj.get("step") if isinstance(obj, dict) else None
    return int(step) if isinstance(step, int) else None


# --------------------------------------------------------------------------- the report, typed


@dataclass(frozen=True)
class TrackletEntry:
    """A query or gallery tracklet as the report lists it (frames relative to the dataset root)."""

    pid: int
    camid: int
    num_frames: int
    frames: tuple[str, ...]


@dataclass(frozen=True)
class RankedItem:
    """One gallery item of a query's ranking: its gallery index, distance, rank and whether it matches."""

    index: int
    distance: float
    rank: int
    match: bool


@dataclass(frozen=True)
class QueryResult:
    """One query: AP, INP, the rank of its first true match, its top ranked items and that first match.

    ``first_match`` is kept even when it ranks past ``ranked``; None when the gallery holds no match
    (or the report predates it and the match is not among ``ranked``).
    """

    index: int
    ap: float | None
    inp: float | None
    first_hit: int
    num_matches: int
    ranked: tuple[RankedItem, ...]
    first_match: RankedItem | None


@dataclass(frozen=True)
class EvalReport:
    """An evaluation report (``eval.json``) with the fields the app and the CLI read."""

    path: Path | None
    checkpoint: str
    step: int | None
    dataset_id: str
    dataset_name: str
    metrics: dict[str, float]
    cmc: tuple[float, ...]
    query: tuple[TrackletEntry, ...]
    gallery: tuple[TrackletEntry, ...]
    queries: tuple[QueryResult, ...]
    pck: dict[str, Any] | None

    @property
    def topk(self) -> int:
        """The most ranked items any query keeps."""
        return max((len(q.ranked) for q in self.queries), default=0)

    @classmethod
    def from_dict(cls, doc: dict[str, Any], path: Path | None = None) -> EvalReport:
        """Read a report document; raises ``ReportError`` naming the file when a field is missing."""
        where = path or "the report"
        if not isinstance(doc, dict) or doc.get("format") != "ssn3d-eval":
            raise ReportError(f'{where} is not an evaluation report (no "format": "ssn3d-eval").')
        try:
            return cls(
                path=path,
                checkpoint=str(doc.get("checkpoint", "")),
                step=doc.get("step"),
                dataset_id=str(doc["dataset"]["id"]),
                dataset_name=str(doc["dataset"].get("name", "")),
                metrics={k: float(v) for k, v in doc["metrics"].items()},
                cmc=tuple(float(c) for c in doc["cmc"]),
                query=tuple(_tracklet(t) for t in doc["query"]),
                gallery=tuple(_tracklet(t) for t in doc["gallery"]),
                queries=tuple(_query(q) for q in doc["queries"]),
                pck=doc.get("pck"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ReportError(
                f"{where} is damaged or of another version ({type(e).__name__}: {e}); evaluate again."
            ) from None


def _tracklet(t: dict[str, Any]) -> TrackletEntry:
    return TrackletEntry(int(t["pid"]), int(t["camid"]), int(t["num_frames"]), tuple(t["frames"]))


def _query(q: dict[str, Any]) -> QueryResult:
    ranked = tuple(
        RankedItem(int(r["index"]), float(r["distance"]), n + 1, bool(r["match"]))
        for n, r in enumerate(q.get("ranked", []))
    )
    first = q.get("first_match")
    if first is not None:
        match = RankedItem(int(first["index"]), float(first["distance"]), int(first["rank"]), True)
    else:  # an older report: the first match is known only when it is among the ranked items
        match = next((r for r in ranked if r.match), None)
    return QueryResult(
        index=int(q["index"]),
        ap=None if q.get("ap") is None else float(q["ap"]),
        inp=None if q.get("inp") is None else float(q["inp"]),
        first_hit=int(q["first_hit"]),
        num_matches=int(q["num_matches"]),
        ranked=ranked,
        first_match=match,
    )


def read_report(path: str | os.PathLike) -> EvalReport:
    """The report at ``path``.

    Raises:
        ReportError: the file is not UTF-8 JSON or not an evaluation report.
        FileNotFoundError: there is no such file.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReportError(f"{path} is not a JSON evaluation report ({e}); evaluate again.") from None
    return EvalReport.from_dict(doc, path)


def report_applies(
    report: EvalReport, location: EvalLocation, dataset_id: str, sizes: tuple[int, int], step: int | None
) -> bool:
    """Whether ``report`` describes the checkpoint of ``location`` (at ``step``) on this dataset.

    Args:
        report: a saved report.
        location: the checkpoint's ``locate_evaluation``.
        dataset_id: the dataset's id.
        sizes: (query, gallery) tracklets of the dataset.
        step: the checkpoint's step (``checkpoint_step``).
    """
    if report.dataset_id != dataset_id or (len(report.query), len(report.gallery)) != sizes:
        return False
    if step is None or report.step != step:
        return False
    if location.run is None:  # a loose file: the report must be of a file with its name
        return Path(report.checkpoint).name == location.checkpoint.name
    return True  # a report inside the run folder, at the checkpoint's step: the same weights


def find_report(location: EvalLocation, dataset_id: str, sizes: tuple[int, int]) -> EvalReport | None:
    """The first of ``location.candidates`` that applies to its checkpoint on this dataset, or None.

    A candidate that cannot be read is skipped with a warning: evaluating again replaces it.
    """
    step = None
    for path in location.candidates:
        if not path.is_file():
            continue
        try:
            report = read_report(path)
        except (ReportError, OSError) as e:
            _logger.warning("skipping the saved evaluation %s: %s", path, e)
            continue
        if step is None:
            step = checkpoint_step(location.checkpoint)
        if report_applies(report, location, dataset_id, sizes, step):
            return report
    return None
