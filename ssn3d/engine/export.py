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
import tempfile
import warnings
from collections.abc import Iterator
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


# Long on purpose: checks, export to a temporary file, then opset and numeric verification before replacing.
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
        ExportError: bad arguments (``out`` a folder, ``frames`` < 1, an opset the exporter cannot write),
            a model that cannot be exported, or onnxruntime disagreeing with torch beyond ``atol``; ``out``
            is then left as it was.
    """
    try:
        import onnx  # noqa: F401 - torch's dynamo exporter needs both
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ExportError(
            f"ONNX export needs the onnx and onnxscript packages ({e.name} is missing); pip install -r requirements-dev.txt."
        ) from None
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"{out} is a folder; pass the ONNX file to write, e.g. {out / 'model.onnx'}.")
    if frames is not None and frames < 1:
        raise ExportError(f"--frames {frames} is not a clip length; pass a whole number of frames >= 1.")
    if opset < 1:
        raise ExportError(f"--opset {opset} is not an ONNX opset; pass e.g. {OPSET}.")
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
    out.parent.mkdir(parents=True, exist_ok=True)
    # Everything is checked on a temporary file beside ``out``; only a file that passed replaces ``out``
    # (atomically), so a refused export leaves an earlier good file as it was.
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        with (
            warnings.catch_warnings(),
            _quiet_exporter(),
            contextlib.redirect_stdout(io.StringIO()) as chatter,
        ):
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
        written = onnx_opset(tmp)
        if written != opset:  # the exporter falls back to its own opset when it cannot convert
            raise ExportError(
                f"the exporter cannot write opset {opset} for this model (it wrote opset {written}); "
                f"pass --opset {written} or another opset it supports."
            )
        diff = verify_onnx(tmp, graph, example, atol=atol) if verify else None
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    _logger.info("Exported %s (T %s, max |onnx - torch| = %s).", out, "dynamic" if dynamic else t, diff)
    return ExportResult(out, dynamic, t, diff)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's loggers: an opset it cannot convert to is logged with a whole traceback,
    and the check after the export says it in one sentence instead."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def onnx_opset(path: str | os.PathLike) -> int | None:
    """The default-domain opset an ONNX file declares (None: it declares none)."""
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def verify_onnx(
    path: str | os.PathLike, graph: nn.Module, clips: torch.Tensor, *, atol: float = 1e-4
) -> float | None:
    """Largest |onnxruntime - torch| on ``clips``; None when onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        _logger.warning("onnxruntime is not installed; %s was not verified (pip install onnxruntime).", path)
        return None
    try:
        session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"clips": clips.numpy()})[0]
    except Exception as e:  # onnxruntime raises its own types (an unsupported opset, a bad graph)
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ExportError(
            f"onnxruntime cannot run the exported graph ({first}); try another --opset."
        ) from None
    with torch.inference_mode():
        want = graph(clips).float().numpy()
    diff = float(np.abs(got - want).max())
    if not np.isfinite(diff) or diff > atol:
        raise ExportError(
            f"{path} disagrees with torch by {diff:.3g} (> {atol}); do not use it, and report the model config."
        )
    return diff
