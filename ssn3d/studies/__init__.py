"""The paper's SSN studies on synthetic data: random tensors (Fig. 5), Amber paintings (Fig. 6), Pedestrian 128 (Fig. 4)."""

from __future__ import annotations

from pathlib import Path


def recorded_path(folder: Path, out: Path) -> str:
    """A data folder as a study's JSON records it: relative to the output folder when it lies inside it."""
    try:
        return folder.resolve().relative_to(out.resolve()).as_posix()
    except ValueError:
        return str(folder)
