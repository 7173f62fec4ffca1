"""Checkpoints: rebuild their model, load with weights_only, refuse pickles and other architectures, atomic writes."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import tiny_overrides

from ssn3d.config import load_config
from ssn3d.engine.checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    capture_rng_state,
    load_checkpoint,
    read_checkpoint,
    restore_rng_state,
    save_checkpoint,
    save_model,
    strip_prefixes,
)
from ssn3d.models import build_model

TINY = tiny_overrides()


def tiny(*overrides: str):
    cfg = load_config(None, [*TINY, *overrides])
    torch.manual_seed(0)
    return build_model(cfg.model, load_weights=False), cfg


def clip(t: int = 4) -> torch.Tensor:
    return torch.randn(2, t, 3, 64, 32, generator=torch.Generator().manual_seed(3))


class Payload:
    """An object whose unpickling runs code: it would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_rebuilds_its_model_and_loads_weights_only(tmp_path: Path) -> None:
    model, cfg = tiny()
    model.eval()
    path = save_model(tmp_path / "m.pt", model, cfg, step=7)
    raw = torch.load(path, map_location="cpu", weights_only=True)  # no numpy or custom objects inside
    assert raw["format"] == "ssn3d-checkpoint" and raw["config"]["model"]["part_channels"] == 16
    rebuilt, cfg2, meta = load_checkpoint(path)
    assert cfg2 == cfg and meta["step"] == 7 and not rebuilt.training
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(clip()), model(clip()))


def test_a_pickle_payload_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    model, cfg = tiny()
    evil = tmp_path / "evil.pt"
    torch.save(
        {
            "format": "ssn3d-checkpoint",
            "version": 1,
            "model": model.state_dict(),
            "config": cfg.to_dict(),
            "extra": Payload(marker),
        },
        evil,
    )
    with pytest.raises(CheckpointError, match="not executed"):
        load_checkpoint(evil)
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the payload is real: unsafe loading runs it
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_plain_pickle_file_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(CheckpointError):
        read_checkpoint(evil)
    assert not marker.exists()


def test_another_architecture_is_refused(tmp_path: Path) -> None:
    model, cfg = tiny()
    path = save_model(tmp_path / "m.pt", model, cfg)
    other = load_config(None, [*TINY, "model.part_channels=8"])
    with pytest.raises(CheckpointError, match="another architecture"):
        load_checkpoint(path, expect=other.model)
    # weights that do not fit the config stored next to them
    small, small_cfg = tiny("model.part_channels=8")
    save_checkpoint(tmp_path / "mixed.pt", {"model": small.state_dict(), "config": cfg.to_dict()})
    with pytest.raises(CheckpointError, match="another architecture"):
        load_checkpoint(tmp_path / "mixed.pt")


@pytest.mark.parametrize("kind", ["missing", "truncated", "state_dict", "not_torch"])
def test_unusable_files_are_refused_with_the_file_named(tmp_path: Path, kind: str) -> None:
    model, cfg = tiny()
    path = tmp_path / "x.pt"
    if kind == "truncated":
        save_model(path, model, cfg)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "state_dict":
        torch.save(model.state_dict(), path)
    elif kind == "not_torch":
        path.write_text("hello")
    error = CheckpointNotFoundError if kind == "missing" else CheckpointError
    with pytest.raises(error, match=str(path)):
        load_checkpoint(path)


def test_ddp_and_compile_prefixes_are_stripped() -> None:
    state = {
        "module._orig_mod.fc.weight": torch.ones(1),
        "module.bn.bias": torch.zeros(1),
        "head.w": torch.ones(1),
    }
    assert set(strip_prefixes(state)) == {"fc.weight", "bn.bias", "head.w"}


def test_rng_state_survives_a_weights_only_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    torch.save({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    first = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random())
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    second = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random())
    torch.testing.assert_close(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert first[2:] == second[2:]


def test_a_failed_save_keeps_the_previous_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    model, cfg = tiny()
    path = save_model(tmp_path / "last.pt", model, cfg, step=1)
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - torch raises its own pickling error type
        save_checkpoint(path, {"model": model.state_dict(), "config": cfg.to_dict(), "bad": lambda: None})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]
    assert read_checkpoint(path)["step"] == 1
