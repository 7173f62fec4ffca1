"""Checkpoints: rebuild their model, load with weights_only, refuse pickles and other architectures, atomic writes."""

from __future__ import annotations

import os
import pickle
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import tiny_overrides

from ssn3d.config import load_config
from ssn3d.engine.checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    save_model,
    strip_prefixes,
)
from ssn3d.engine.rng_state import capture_rng_state, restore_rng_state
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


def test_every_checkpoint_carries_a_checksum_and_one_without_still_loads(tmp_path: Path) -> None:
    model, cfg = tiny()
    path = save_model(tmp_path / "m.pt", model, cfg, step=3)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["checksum"].startswith("sha256:") and len(raw["checksum"]) == len("sha256:") + 64
    assert "checksum" not in read_checkpoint(path)  # verified and consumed, not passed on as meta
    del raw["checksum"]  # what a checkpoint written before checksums holds
    torch.save(raw, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")[2]["step"] == 3


def test_flipped_bytes_inside_the_weights_are_reported_as_damage(tmp_path: Path) -> None:
    model, cfg = tiny()
    path = save_model(tmp_path / "last.pt", model, cfg)
    data = bytearray(path.read_bytes())
    weight = max(model.state_dict().values(), key=lambda t: t.numel())
    start = bytes(data).find(weight.numpy().tobytes()[:256])  # where the largest tensor's bytes lie
    assert start > 0
    rng = random.Random(0)
    for offset in rng.sample(range(start, start + weight.numel() * 4), 100):
        data[offset] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="is damaged") as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes_are_reported_as_damaged_not_as_python_objects(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "last.pt"
    body = random.Random(seed).randbytes(4096)
    path.write_bytes(bytes([body[0] & 0x7F]) + body[1:])  # never the pickle opcode by chance
    with pytest.raises(CheckpointError, match="damaged") as e:
        read_checkpoint(path)
    assert "Python objects" not in str(e.value)


def _finished_pid() -> int:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(child.stdout)


def test_temporaries_of_dead_writers_are_removed_and_a_live_writers_kept(tmp_path: Path) -> None:
    model, cfg = tiny()
    path = save_model(tmp_path / "last.pt", model, cfg, step=1)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead_tmp = tmp_path / f".last.pt.{_finished_pid()}.k2j4h5g6.tmp"
        live_tmp = tmp_path / f".last.pt.{live.pid}.a1b2c3d4.tmp"
        old_tmp = tmp_path / ".last.pt.zx81yw7q.tmp"  # unnamed writer (older versions), long gone
        fresh_tmp = tmp_path / ".last.pt.fr3shxyz.tmp"  # unnamed writer that may still be saving
        other_tmp = tmp_path / f".best.pt.{_finished_pid()}.abcdabcd.tmp"  # another file's: not ours to judge
        for tmp in (dead_tmp, live_tmp, old_tmp, fresh_tmp, other_tmp):
            tmp.write_bytes(b"x" * 1000)
        os.utime(old_tmp, (1_000_000, 1_000_000))
        read_checkpoint(path)  # a load cleans up ...
        assert not dead_tmp.exists() and not old_tmp.exists()
        assert live_tmp.exists() and fresh_tmp.exists() and other_tmp.exists()
        live.kill()
        live.wait()
        save_model(path, model, cfg, step=2)  # ... and so does the next save
        assert sorted(os.listdir(tmp_path)) == sorted(["last.pt", fresh_tmp.name, other_tmp.name])
    finally:
        live.kill()
        live.wait()


KILLED_SAVE = """
import os, sys, time
import torch
from ssn3d.engine.checkpoint import save_checkpoint
def slow_fsync(fd):  # holds the save between writing the temporary and renaming it
    print("writing", flush=True)
    time.sleep(120)
os.fsync = slow_fsync
save_checkpoint(sys.argv[1], {"model": {"w": torch.zeros(250_000)}, "config": {}})
"""


def test_a_writer_killed_mid_save_leaves_the_old_checkpoint_and_no_lasting_temporary(tmp_path: Path) -> None:
    model, cfg = tiny()
    path = save_model(tmp_path / "last.pt", model, cfg, step=1)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_SAVE, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert writer.stdout.readline().strip() == "writing"
    (tmp,) = tmp_path.glob(".last.pt.*.tmp")
    assert tmp.name.startswith(f".last.pt.{writer.pid}.") and tmp.stat().st_size > 1_000_000
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert read_checkpoint(path)["step"] == 1  # the previous checkpoint, whole
    assert not tmp.exists()
