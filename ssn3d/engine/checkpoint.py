"""Checkpoints that rebuild their own model and never run code when read.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python values::

    {"format": "ssn3d-checkpoint", "version": 1, "model": state_dict, "optimizer": ..., "scheduler": ...,
     "epoch": int, "step": int, "batch_in_epoch": int, "config": Config.to_dict(), "rng": {...},
     "sampler": {...}, "best_map": float, "metrics": {...}}

so it loads with ``torch.load(weights_only=True)``: a file that carries a pickle payload (an object
whose ``__reduce__`` would run code) is refused by the unpickler before anything runs. The model
is rebuilt from the stored config (paper section "Implementation Details" lists what a config
holds: backbone, N, T, ...), and a state dict that does not fit that model is refused with the
keys that differ. Writes are atomic (a temporary file, fsync, rename), so a run killed while saving
keeps its previous checkpoint intact. The temporary is named after its writer's pid
(``.last.pt.<pid>.<random>.tmp``), and the next save or load of that file removes the temporaries
of writers that are no longer alive, so a kill mid-save does not leave tens of megabytes behind.

Every checkpoint carries ``"checksum": "sha256:<hex>"``, a digest of everything else it holds
(tensor bytes, dtypes, shapes and plain values, in order). torch's zip container does not verify
the bytes it reads, so without it a few flipped bytes in a weight resume silently. Checkpoints
written before the checksum existed still load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssn3d.config import Config, ConfigError, ModelConfig, config_from_dict
from ssn3d.io import atomic_open
from ssn3d.models import build_model

_logger = logging.getLogger(__name__)

FORMAT = "ssn3d-checkpoint"
VERSION = 1
_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel and torch.compile wrappers
_CHECKSUM = "sha256"
# Temporaries named before writers put their pid in the name: removed once this old, since a save
# rewrites its temporary continuously and takes seconds, never minutes.
_LEGACY_TMP_AGE_S = 600.0


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what to do."""


class CheckpointNotFoundError(FileNotFoundError):
    """The checkpoint path does not exist."""


# --------------------------------------------------------------------------- checksum and temporaries


def _feed(h: Any, value: Any) -> None:
    """Hash ``value`` with its type and size, so that no two different contents feed the same bytes."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # the raw bytes, whatever the dtype
    elif isinstance(value, dict):
        h.update(f"D{len(value)};".encode())
        for k, v in value.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(value, list | tuple):
        h.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)};".encode())
        for v in value:
            _feed(h, v)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(f"S{len(data)};".encode() + data)
    elif isinstance(value, bool) or value is None:
        h.update(f"C{value};".encode())
    elif isinstance(value, int):
        h.update(f"I{value};".encode())
    elif isinstance(value, float):
        h.update(f"F{value.hex()};".encode())  # exact, NaN and infinities included
    else:  # the few other types weights_only admits (torch.dtype, torch.device, ...) print exactly
        text = f"{type(value).__name__}:{value!r}".encode()
        h.update(f"R{len(text)};".encode() + text)


def payload_checksum(data: dict[str, Any]) -> str:
    """``sha256:<hex>`` of every entry of a checkpoint except its checksum."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in data.items() if k != "checksum"})
    return f"{_CHECKSUM}:{h.hexdigest()}"


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie has finished writing for good)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporaries that writers of ``path`` left when killed mid-save; return them.

    A temporary whose pid is alive belongs to a save in progress and is kept, whoever runs this.
    """
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    try:
        candidates = [
            p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp")
        ]
    except OSError:
        return removed
    for tmp in candidates:
        middle = tmp.name[len(prefix) : -len(".tmp")].split(".")
        try:
            if len(middle) == 2 and middle[0].isdigit():
                stale = not _pid_alive(int(middle[0]))
            else:  # written by a version that did not name the writer
                stale = time.time() - tmp.stat().st_mtime > _LEGACY_TMP_AGE_S
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue  # gone already, or a folder we may only read
    if removed:
        _logger.info("removed %d temporary file(s) of interrupted saves of %s", len(removed), path)
    return removed


# --------------------------------------------------------------------------- saving


def plain_config(cfg: Config) -> dict[str, Any]:
    """The config as JSON-level values only (YAML may hold dates or other objects in data.options)."""
    return json.loads(json.dumps(cfg.to_dict(), default=str))


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel and/or torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically: readers and a crash see the old file or the new one, never half.

    ``format``, ``version`` and ``checksum`` are added; tensors are moved to the CPU by ``torch.save``'s
    callers. Temporaries of earlier writers of ``path`` that were killed are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    data = {"format": FORMAT, "version": VERSION, **payload}
    data["checksum"] = payload_checksum(data)
    # the pid in the temporary's name lets remove_stale_temporaries tell a dead writer's leftover from
    # a save in progress; sync_dir because a checkpoint is large and rare, and resuming relies on it
    with atomic_open(path, "wb", tmp_prefix=f".{path.name}.{os.getpid()}.", sync_dir=True) as fh:
        torch.save(data, fh)
    return path


def save_model(path: str | os.PathLike, model: nn.Module, cfg: Config, **meta: Any) -> Path:
    """A weights-only checkpoint (no optimizer state) that ``load_checkpoint`` rebuilds: for demos and exports.

    Args:
        path: the file to write.
        model: the model ``cfg.model`` describes.
        cfg: its config.
        **meta: extra plain values to store (e.g. step, metrics).
    """
    payload = {
        "model": unwrap_model(model).state_dict(),
        "config": plain_config(cfg),
        "epoch": 0,
        "step": 0,
        **meta,
    }
    return save_checkpoint(path, payload)


# --------------------------------------------------------------------------- loading


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's contents, read with ``weights_only=True`` (nothing in the file is executed).

    Raises:
        CheckpointNotFoundError: no such file.
        CheckpointError: a pickle payload, a damaged file (one whose checksum does not match
            included), or not an SSN3D checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"checkpoint {path} does not exist; pass a run folder or a .pt file it holds."
        )
    remove_stale_temporaries(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not _refused_objects(path, e):  # torch's message here is about weights_only, not the file
            raise CheckpointError(
                f"checkpoint {path} cannot be read (its bytes are not a torch checkpoint); it is damaged or "
                "not a checkpoint, so use the run's other checkpoint (last.pt or best.pt)."
            ) from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"checkpoint {path} holds Python objects that safe loading refuses ({first[:160]}); it was not "
            "executed: use a checkpoint written by `python -m ssn3d train`."
        ) from None
    except Exception as e:  # truncated zip, not a torch file, ...: torch raises several types
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(e).__name__}: {str(e)[:120]}); it is damaged or not a "
            "checkpoint, so use the run's other checkpoint (last.pt or best.pt)."
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(
            f'{path} is not an SSN3D checkpoint (it has no "format": "{FORMAT}" entry); pass a file written by '
            "`python -m ssn3d train`."
        )
    if obj.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {obj.get('version')!r}; this version reads {VERSION}."
        )
    for key in ("model", "config"):
        if not isinstance(obj.get(key), dict):
            raise CheckpointError(
                f"checkpoint {path} has no {key!r} entry; it was not written by `python -m ssn3d train`."
            )
    stored = obj.pop("checksum", None)  # absent in checkpoints written before it existed
    if stored is not None and stored != payload_checksum(obj):
        raise CheckpointError(
            f"checkpoint {path} is damaged: its contents no longer match the checksum written with them; "
            "use the run's other checkpoint (last.pt or best.pt) or a copy of this one."
        )
    return obj


def _refused_objects(path: Path, e: pickle.UnpicklingError) -> bool:
    """Whether safe loading refused real Python objects, rather than stumbling over damaged bytes.

    torch raises UnpicklingError for both: a refused class names a "global", and a plain pickle
    file (no torch zip around it) starts with the pickle protocol opcode.
    """
    if "global" in str(e).lower():
        return True
    with contextlib.suppress(OSError), open(path, "rb") as fh:
        head = fh.read(2)
        return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5
    return False


def checkpoint_config(ckpt: dict[str, Any], path: str | os.PathLike = "checkpoint") -> Config:
    """The validated Config stored in a checkpoint."""
    try:
        return config_from_dict(ckpt["config"])
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {path} holds a config this version cannot use: {e}") from None


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove DDP ``module.`` and torch.compile ``_orig_mod.`` prefixes from state-dict keys."""
    out = {}
    for k, v in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if k.startswith(prefix):
                    k, changed = k[len(prefix) :], True
        out[k] = v
    return out


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Load a state dict strictly; refuse with the differing keys when it belongs to another architecture."""
    state = strip_prefixes(state)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        k
        for k in own
        if k in state and tuple(own[k].shape) != tuple(state[k].shape) and not _takes_loaded_shape(model, k)
    ]
    if missing or unexpected or mismatched:
        detail = "; ".join(
            f"{name}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for name, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape differs", mismatched),
            )
            if keys
        )
        raise CheckpointError(
            f"checkpoint {path} holds weights of another architecture ({detail}); use the config it was trained with."
        )
    model.load_state_dict(state, strict=True)


def _takes_loaded_shape(model: nn.Module, key: str) -> bool:
    """Whether ``key`` is a buffer its module resizes to the loaded one (``loaded_shape_buffers``): a
    position prior counted on the training map is as good as the model whatever that map's size was."""
    owner, _, name = key.rpartition(".")
    try:
        module = model.get_submodule(owner)
    except AttributeError:
        return False
    return name in getattr(module, "loaded_shape_buffers", ())


def model_differences(a: ModelConfig, b: ModelConfig) -> list[str]:
    """Model fields whose values differ (``weights`` excluded: it only says where the init came from)."""
    da, db = a.__dict__, b.__dict__
    return [f"model.{k}: {da[k]!r} != {db[k]!r}" for k in da if k != "weights" and da[k] != db[k]]


def load_checkpoint(
    path: str | os.PathLike, *, device: str | torch.device = "cpu", expect: ModelConfig | None = None
) -> tuple[nn.Module, Config, dict[str, Any]]:
    """Rebuild the model a checkpoint describes and load its weights.

    Args:
        path: a checkpoint file written by training.
        device: where the model goes.
        expect: when given, refuse a checkpoint whose model config differs from it.

    Returns:
        (model in eval mode, its Config, meta) with meta holding epoch, step, best_map, metrics and
        the rest of the file except the state dicts.
    """
    ckpt = read_checkpoint(path)
    cfg = checkpoint_config(ckpt, path)
    if expect is not None:
        diff = model_differences(cfg.model, expect)
        if diff:
            raise CheckpointError(
                f"checkpoint {path} is of another architecture ({'; '.join(diff[:3])}); drop the model overrides "
                "or start a new run."
            )
    model = build_model(cfg.model, load_weights=False)
    load_model_state(model, ckpt["model"], path)
    model.to(device).eval()
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "scheduler", "rng")}
    meta["path"] = str(path)
    return model, cfg, meta
