"""The tiny SSN3D the engine tests build: a one-stage ResNet18, narrow heads, 64 x 32 frames.

One definition for every test that trains, saves, exports or extracts, so that a change to the
config's keys is made here once. Tests add what they need on top (later overrides win).
"""

from __future__ import annotations

from pathlib import Path

import yaml

TINY: dict[str, dict[str, object]] = {
    "model": {
        "backbone": "resnet18",
        "backbone_stages": 1,  # 64 channels at stride 4 -> 16 x 8 maps for 64 x 32 frames
        "weights": "none",
        "attn_channels": 32,
        "part_channels": 16,
        "embed_dim": 32,
    },
    "data": {"height": 64, "width": 32},
}

# what a test that trains on the tiny walkers adds: the folder layout, short clips, small P x K batches
TRAINING: dict[str, dict[str, object]] = {
    "data": {"dataset": "folder", "stride": 2, "num_ids": 2, "num_instances": 2, "workers": 0},
    "train": {"log_every": 1, "eval_every": 0},
}


def tiny_overrides(*extra: dict[str, dict[str, object]]) -> list[str]:
    """TINY (and the given sections on top of it) as ``section.key=value`` overrides for load_config."""
    out = []
    for layer in (TINY, *extra):
        for section, values in layer.items():
            out += [f"{section}.{key}={value}" for key, value in values.items()]
    return out


def tiny_config_dict(*extra: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    """TINY with the given sections merged over it, as a config file's mapping."""
    out: dict[str, dict[str, object]] = {}
    for layer in (TINY, *extra):
        for section, values in layer.items():
            out.setdefault(section, {}).update(values)
    return out


def write_tiny_config(path: Path, *extra: dict[str, dict[str, object]]) -> Path:
    path.write_text(yaml.safe_dump(tiny_config_dict(*extra)))
    return path
