"""Shared fixtures: tiny generated data, real files in temporary folders, CPU only."""

from __future__ import annotations

import os

import pytest
import torch

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
