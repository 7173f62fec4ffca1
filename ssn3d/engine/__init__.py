"""Training, evaluation, inference and export (issue 5): runs that survive, from one GPU to many.

Imports are lazy so that ``from ssn3d.engine import evaluate`` loads torch only when used. A run
folder's life (launch, status, lock, cancel) is ``ssn3d.runs``, which never loads torch.

* ``ssn3d.engine.train``: ``main(cfg, run_dir, resume=...)``, ``train_one_epoch``
* ``ssn3d.engine.evaluate``: ``evaluate``, ``extract_features``, ``evaluate_target`` (eval.json)
* ``ssn3d.engine.train_data``: the dataset, its labels and the resumable P x K loader of training
* ``ssn3d.engine.train_state``: what a checkpoint holds to continue a run exactly
* ``ssn3d.engine.checkpoint``: ``load_checkpoint``, ``save_model``, ``read_checkpoint``
* ``ssn3d.engine.inference``: ``FeatureExtractor``
* ``ssn3d.engine.export``: ``export_onnx``
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "main": "train",
    "train_one_epoch": "train",
    "evaluate": "evaluate",
    "extract_features": "evaluate",
    "evaluate_target": "evaluate",
    "load_checkpoint": "checkpoint",
    "read_checkpoint": "checkpoint",
    "save_model": "checkpoint",
    "CheckpointError": "checkpoint",
    "FeatureExtractor": "inference",
    "export_onnx": "export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ssn3d.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ssn3d.engine.{_EXPORTS[name]}"), name)
