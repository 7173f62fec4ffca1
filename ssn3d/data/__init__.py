"""Data for video re-identification: datasets, P x K sampling, clip transforms and loaders.

``Tracklet`` is imported eagerly (it is tiny); the rest is resolved on first use so that
``import ssn3d.data.synth`` or the CLI's dataset check does not pay for torch's import.
"""

from __future__ import annotations

import importlib
from typing import Any

from ssn3d.data.tracklet import Tracklet

_LAZY = {
    "build_dataset": "ssn3d.data.datasets",
    "DATASETS": "ssn3d.data.datasets",
    "DatasetError": "ssn3d.data.datasets.base",
    "VideoReIDDataset": "ssn3d.data.datasets.base",
    "IdentitySampler": "ssn3d.data.sampling",
    "ClipTransform": "ssn3d.data.transforms",
    "denormalize": "ssn3d.data.transforms",
    "TrainClips": "ssn3d.data.video",
    "TestFrames": "ssn3d.data.video",
    "build_train_loader": "ssn3d.data.video",
    "build_test_loader": "ssn3d.data.video",
    "iter_tracklet_chunks": "ssn3d.data.video",
    "pool_tracklet_features": "ssn3d.data.video",
    "scan_images": "ssn3d.data.video",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ssn3d.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["Tracklet", *_LAZY]
