"""``python -m ssn3d export CHECKPOINT --onnx OUT.onnx``: the embedding model as ONNX, checked against torch.

``--model-only OUT.pt`` writes the weights and config alone (no optimizer state): a small checkpoint
that ``load_checkpoint`` rebuilds, as shipped in ``assets/demo_model.pt``.
"""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from ssn3d.engine.evaluate import resolve_checkpoint
    from ssn3d.engine.export import export_onnx

    ckpt, _ = resolve_checkpoint(args.checkpoint)
    if args.model_only:
        from ssn3d.engine.checkpoint import load_checkpoint, save_model

        model, cfg, meta = load_checkpoint(ckpt)
        keep = {k: meta[k] for k in ("step", "epoch") if isinstance(meta.get(k), int)}
        path = save_model(args.model_only, model, cfg, **keep)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, weights and config only)")
        return 0
    result = export_onnx(
        ckpt, args.onnx, frames=args.frames, opset=args.opset, verify=not args.no_verify, atol=args.atol
    )
    frames = "any T" if result.dynamic_frames else f"T = {result.frames}"
    check = (
        "not verified"
        if result.max_abs_diff is None
        else f"max |onnxruntime - torch| = {result.max_abs_diff:.2e}"
    )
    print(f"wrote {result.path} (clips (B, T, 3, H, W) -> embedding (B, D), {frames}; {check})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint's embedding model to ONNX",
        description="ONNX of the eval-mode embedding model; onnxruntime's output is compared with torch's.",
    )
    p.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="a .pt file or a run folder (best.pt, else last.pt)"
    )
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--onnx", metavar="OUT.onnx", help="the ONNX file to write")
    out.add_argument(
        "--model-only", metavar="OUT.pt", help="a weights-and-config checkpoint, no optimizer state"
    )
    p.add_argument("--frames", type=int, help="T of the example clip (fixed T for non-shared classifiers)")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--atol", type=float, default=1e-4, help="largest accepted |onnxruntime - torch|")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check")
    p.set_defaults(func=_run)
