"""Shared fixtures: tiny generated data, real files in temporary folders, CPU only.

One of each: ``tiny_walkers`` (a dataset), ``workspace`` (an empty ``SSN3D_HOME``), ``tiny_run`` (a
run folder trained by the engine). The one tiny model config is ``tiny.py``'s ``TINY``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from tiny import TRAINING, tiny_overrides

from ssn3d.serving.workspace import Workspace

os.environ.setdefault("MPLBACKEND", "Agg")
# Tiny tensors gain nothing from threads, and on a busy 2-core machine two spinning OpenMP threads
# made them up to 10x slower: every test runs torch on one thread.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_walkers(tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic-walkers dataset in the `folder` layout, with ground-truth keypoints.

    Generated once per test session; tests must not modify it (copy it first if they need to).
    """
    from ssn3d.data.synth.walkers import generate_walkers

    out = tmp_path_factory.mktemp("walkers")
    return generate_walkers(
        out, ids=8, cameras=2, tracklets_per_camera=1, frames=8, size=(64, 32), seed=0, progress=False
    )


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """An empty workspace that the library, the CLI and the app all find through ``SSN3D_HOME``.

    It lives in ``tmp_path / "home"``, so files a test writes in ``tmp_path`` itself (configs, label
    files, weights) lie outside it; no demo, no extra data roots, one run at a time.
    """
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SSN3D_HOME", str(home))
    monkeypatch.delenv("SSN3D_DEMO", raising=False)
    monkeypatch.delenv("SSN3D_DATA_ROOTS", raising=False)
    monkeypatch.setenv("SSN3D_MAX_RUNS", "1")
    return Workspace.from_env()


@pytest.fixture(scope="session")
def tiny_run(tiny_walkers: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder the engine trained for two steps: the tiny config, semi-supervised on the walkers'
    ground truth of the first frame of each training tracklet, with its checkpoints and a final eval.

    Trained once per test session; tests must not modify it (copy it first if they need to).
    """
    from ssn3d.config import load_config
    from ssn3d.engine.train import main
    from ssn3d.labels.store import AnnotationStore

    out = tmp_path_factory.mktemp("tiny-run")
    # a copy named like the demo, so the dataset id of its final evaluation (RUN/eval.json) is the demo's,
    # as for a run launched from the app on the demo
    data = shutil.copytree(tiny_walkers, out / "demo-walkers")
    labels = AnnotationStore(out / "labels.json")
    truth = AnnotationStore(data / "keypoints.json").frames()
    labels.update({k: v for k, v in truth.items() if k.startswith("train/") and k.endswith("00.jpg")})
    cfg = load_config(
        None,
        [
            *tiny_overrides(TRAINING, {"data": {"seq_len": 4}}),
            f"data.root={data}",
            f"data.annotations={labels.path}",
            "train.max_steps=2",
            "train.epochs=1",
            "train.device=cpu",
        ],
    )
    assert main(cfg, out / "run") == "done"
    return out / "run"
