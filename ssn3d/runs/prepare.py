"""What a new run from the app trains with: the config from a form's choices, and the checks it would fail.

The Train page gathers its widgets' values as ``{"section.field": value}`` over a base config;
everything that turns them into a run's Config (the session's dataset and label store, a weights path
confined to the workspace, T of the clip for the model) and refuses it early is here, so the page
only gathers, calls and draws.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ssn3d.config import Config, ConfigError, config_from_dict
from ssn3d.serving.paths import resolve_inside

# The part-finding aids the Train page offers as one switch for semi-supervised runs: options NOT in the
# paper, each measured on walkers (benchmarks/RESULTS.md, section 1): PositionCE pulls the attention onto
# the labeled keypoints, the position prior adds where the labels say each part lies, and canonical sides
# with a facing head name left and right from the frame (readable from 128 x 64 frames on pretrained features).
PART_AIDS: dict[str, Any] = {
    "loss.position_ce": 1.0,
    "model.position_prior": 1.0,
    "model.facing": True,
    "loss.facing": 1.0,
}


def part_aids(on: bool) -> dict[str, Any]:
    """The choices that switch every part-finding aid on, or every one off (the paper: weight 0, false)."""
    return {k: v if on else type(v)() for k, v in PART_AIDS.items()}


def has_part_aids(cfg: Config) -> bool:
    """Whether ``cfg`` has every part-finding aid on (a base config the switch then starts from, ticked)."""
    data = cfg.to_dict()
    return all(data[k.split(".")[0]][k.split(".")[1]] == v for k, v in PART_AIDS.items())


def launch_config(
    base: Config,
    choices: Mapping[str, Any],
    *,
    dataset: str,
    data_root: str | os.PathLike,
    options: Mapping[str, Any],
    annotations: str | os.PathLike,
    weight_roots: Sequence[Path],
) -> Config:
    """``base`` with ``choices`` on top, training on the given dataset with its label store as anchors.

    Args:
        base: the base config the form started from.
        choices: ``{"section.field": value}``; ``model.weights`` is "none", "imagenet" or a file path.
        dataset: the dataset's registry name; data_root, options: its folder and loader options.
        annotations: the label store the run reads its anchors from.
        weight_roots: the folders a weights file must lie inside (the workspace and the data roots),
            like every path a user types.

    Raises:
        ConfigError: a choice the config refuses; ValueError: a weights path outside ``weight_roots``.
    """
    data = base.to_dict()
    for key, value in choices.items():
        section, fld = key.split(".", 1)
        data[section][fld] = value
    weights = str(choices.get("model.weights", data["model"]["weights"])).strip() or "none"
    if weights not in ("none", "imagenet"):
        weights = str(
            resolve_inside(weights, tuple(weight_roots), must_exist=True, what="backbone weights file")
        )
    data["model"]["weights"] = weights
    data["model"]["num_frames"] = data["data"][
        "seq_len"
    ]  # T of a clip: the non-shared variant needs them equal
    data["data"].update(
        dataset=dataset, root=str(data_root), options=dict(options), annotations=str(annotations)
    )
    return config_from_dict(data)


def check_launch(cfg: Config, dataset: Any) -> None:
    """Refuse before launching what the run would refuse at its start, with the library's own checks:
    enough identities for a P x K batch (the sampler), labels for the supervised strategy (the loader),
    labeled training frames for the position prior (the session).

    Args:
        cfg: the run's config (its ``data.annotations`` is the label store read).
        dataset: the loaded dataset of ``cfg.data`` (a ``VideoReIDDataset``).

    Raises:
        ConfigError: with the library's sentence.
    """
    # torch only when a launch is checked: listing runs must not load it
    from ssn3d.data.sampling import IdentitySampler
    from ssn3d.engine.train_data import load_labels

    try:
        IdentitySampler(dataset.train, cfg.data.num_ids, cfg.data.num_instances)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    labels = load_labels(cfg, dataset)
    if cfg.model.position_prior > 0:
        from ssn3d.engine.session import prior_keypoints

        prior_keypoints(dataset, labels, cfg)
