"""ONNX export of the eval-mode embedding model: clips (B, T, 3, H, W) -> embeddings (B, D).

Paper, Figure 1 at test time: backbone -> SSN attention and weighted windows (eq. 1-3, no 2nd
round) -> per-part 3D blocks -> fusion. The graph is traced by torch's dynamo exporter
(``torch.onnx.export(..., dynamo=True)``); the TorchScript exporter bakes the clip length in (its
trace of ``SSN3D.forward_features`` indexes frames with a Python list of length T), so its output
is wrong for any other T, and it is not used.

With a shared attention classifier (the paper's model) and for the baselines, both B and T are
dynamic: any batch of any clip length, e.g. the paper's 32-frame test chunks and a shorter last one.
With one classifier per frame index (``model.shared_classifier=false``) T is fixed at export.
The supervised strategy reads parts at keypoints at test time, so it is not exported.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ssn3d.config import Config
from ssn3d.engine.checkpoint import load_checkpoint

_logger = logging.getLogger(__name__)

OPSET = 18


class ExportError(ValueError):
    """A model that cannot be exported, or an export that does not match torch; the message says why."""


class ExportResult(NamedTuple):
    path: Path
    dynamic_frames: bool  # True: any T; False: T fixed at ``frames``
    frames: int  # T of the example clip (the only T when not dynamic)
    max_abs_diff: float | None  # onnxruntime vs torch on the example clip (None: not verified)


class EmbeddingGraph(nn.Module):
    """The eval forward of SSN3D with one shared classifier, written without per-frame Python indexing.

    Same arithmetic as ``SSN3D.forward`` in eval mode without keypoints: every frame through the
    backbone and the shared SSN, the part windows stacked over time, then the 3D blocks and fusion.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        b, t = clips.shape[:2]
        feats = self.model.backbone(clips.flatten(0, 1))  # (B*T, C, h, w)
        parts = self.model.ssn[0](feats).parts.unflatten(0, (b, t))  # (B, T, N, C, k, k)
        return self.model.forward_head(parts)


class _Plain(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.model(clips)


def export_graph(model: nn.Module, cfg: Config) -> tuple[nn.Module, bool]:
    """The module to export and whether its clip length can be dynamic."""
    m = cfg.model
    if m.arch == "ssn3d" and m.strategy == "supervised":
        raise ExportError(
            "a supervised SSN3D reads parts at keypoints at test time, which an ONNX clip input cannot carry; "
            "export an unsupervised or semi-supervised checkpoint."
        )
    if m.arch == "ssn3d":
        return (EmbeddingGraph(model), True) if m.shared_classifier else (_Plain(model), False)
    return _Plain(model), True


def export_onnx(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    frames: int | None = None,
    opset: int = OPSET,
    verify: bool = True,
    atol: float = 1e-4,
) -> ExportResult:
    """Export a checkpoint's embedding model to ONNX (input ``clips``, output ``embedding``).

    Args:
        checkpoint: a checkpoint file written by training.
        out: the .onnx file to write.
        frames: T of the example clip (default: data.seq_len; the fixed T of a non-shared model:
            data.test_chunk).
        opset: the ONNX opset.
        verify: run the file with onnxruntime on the example clip and compare with torch.
        atol: the largest absolute difference accepted by ``verify``.

    Raises:
        ExportError: the model cannot be exported, or onnxruntime disagrees with torch beyond ``atol``.
    """
    try:
        import onnx  # noqa: F401 - torch's dynamo exporter needs both
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ExportError(
            f"ONNX export needs the onnx and onnxscript packages ({e.name} is missing); pip install -r requirements-dev.txt."
        ) from None
    model, cfg, _ = load_checkpoint(checkpoint, device="cpu")
    graph, dynamic = export_graph(model, cfg)
    graph.eval()
    t = frames or (cfg.data.seq_len if dynamic else cfg.data.test_chunk)
    example = torch.randn(
        2, t, 3, cfg.data.height, cfg.data.width, generator=torch.Generator().manual_seed(0)
    )
    dims = {0: torch.export.Dim("batch", min=1, max=4096)}
    if dynamic:
        dims[1] = torch.export.Dim("frames", min=1, max=4096)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()) as chatter:
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                (example,),
                tmp,
                input_names=["clips"],
                output_names=["embedding"],
                opset_version=opset,
                dynamo=True,
                dynamic_shapes={"clips": dims},
                external_data=False,
            )
        _logger.debug("exporter output: %s", chatter.getvalue())
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    diff = verify_onnx(out, graph, example, atol=atol) if verify else None
    _logger.info("Exported %s (T %s, max |onnx - torch| = %s).", out, "dynamic" if dynamic else t, diff)
    return ExportResult(out, dynamic, t, diff)


def verify_onnx(
    path: str | os.PathLike, graph: nn.Module, clips: torch.Tensor, *, atol: float = 1e-4
) -> float | None:
    """Largest |onnxruntime - torch| on ``clips``; None when onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        _logger.warning("onnxruntime is not installed; %s was not verified (pip install onnxruntime).", path)
        return None
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"clips": clips.numpy()})[0]
    with torch.inference_mode():
        want = graph(clips).float().numpy()
    diff = float(np.abs(got - want).max())
    if not np.isfinite(diff) or diff > atol:
        raise ExportError(
            f"{path} disagrees with torch by {diff:.3g} (> {atol}); do not use it, and report the model config."
        )
    return diff
