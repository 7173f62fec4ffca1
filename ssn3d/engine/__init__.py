"""Training, evaluation, inference and export (issue 5): runs that survive, from one GPU to many.

Imports are lazy so that ``from ssn3d.engine import list_runs`` (the app) does not load torch.

* ``ssn3d.engine.train``: ``main(cfg, run_dir, resume=...)``, ``train_one_epoch``
* ``ssn3d.engine.evaluate``: ``evaluate``, ``extract_features``, ``evaluate_target`` (eval.json)
* ``ssn3d.engine.runs``: ``list_runs``, ``launch_run``, ``resume_run``, ``cancel_run``, ``refresh_status``
* ``ssn3d.engine.rundir``: ``RunPaths``, ``read_status``, ``read_metrics``
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
    "list_runs": "runs",
    "launch_run": "runs",
    "resume_run": "runs",
    "cancel_run": "runs",
    "refresh_status": "runs",
    "new_run_dir": "runs",
    "RunError": "runs",
    "RunBusyError": "runs",
    "TooManyRunsError": "runs",
    "RunPaths": "rundir",
    "read_status": "rundir",
    "read_metrics": "rundir",
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
