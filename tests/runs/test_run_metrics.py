"""A run's metrics file: incremental reads, and the lines past a checkpoint cut on resume."""

from __future__ import annotations

from pathlib import Path

from ssn3d.runs.folder import RunPaths
from ssn3d.runs.metrics import append_metrics, read_metrics, truncate_metrics


def test_metrics_are_read_incrementally_and_truncated_on_resume(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        append_metrics(tmp_path, {"kind": "train", "step": step, "loss": 1.0 / step})
    first = read_metrics(tmp_path)
    assert [r["step"] for r in first.records] == [1, 2, 3] and not first.restarted
    with open(RunPaths(tmp_path).metrics, "a") as fh:
        fh.write('{"kind": "train", "step": 4')  # a line being written
    again = read_metrics(tmp_path, first.offset)
    assert again.records == [] and again.offset == first.offset
    with open(RunPaths(tmp_path).metrics, "a") as fh:
        fh.write(', "loss": 0.25}\n')
    assert [r["step"] for r in read_metrics(tmp_path, first.offset).records] == [4]
    assert truncate_metrics(tmp_path, after_step=2) == 2
    after = read_metrics(tmp_path, first.offset)  # the reader's offset is past the new end
    assert after.restarted and [r["step"] for r in after.records] == [1, 2]
