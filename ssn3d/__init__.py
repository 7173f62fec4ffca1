"""SSN3D Studio: part-aligned video person re-identification (Jiang et al., AAAI 2021).

``ssn3d.FeatureExtractor`` (checkpoint in, frames in, embedding or attention maps out) is imported
lazily so that ``import ssn3d`` stays light for the app's pages that never touch torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "FeatureExtractor":
        from ssn3d.engine.inference import FeatureExtractor

        return FeatureExtractor
    raise AttributeError(f"module 'ssn3d' has no attribute {name!r}")
