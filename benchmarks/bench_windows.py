"""Eq. (3) and the anchors' windows: unfold + einsum + gather (SSN's former path) against one bmm (ssn3d.models.windows).

Forward + backward of the part windows alone, at the walkers-tiny shape (B*T = 32 frames of
64 x 16 x 8 maps) and at the paper's (B*T = 128, 1024 x 16 x 8), N = 9 parts, k = 3:

* ``semi``: attention-weighted windows with anchors on half the parts (the semi-supervised path);
* ``supervised``: the window at every keypoint, the mean window where a part has none.

Memory: the bytes autograd saves for backward (unique storages, the inputs included) and, on the
CPU, the peak resident-memory rise of one forward + backward in a fresh process; on CUDA the
allocator's peak.

    python benchmarks/bench_windows.py                     # both shapes, CPU
    python benchmarks/bench_windows.py --shapes tiny --reps 5 --json out.json

SSN itself uses only the bmm path now; the unfold path lives on here (and in tests/test_windows.py,
as the reference) so that the two can still be timed side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssn3d.models.windows import anchor_attention, pad_edges, supervised_parts, weighted_windows  # noqa: E402

SHAPES = {"tiny": (32, 64, 16, 8), "paper": (128, 1024, 16, 8)}  # B*T, C, H, W
NUM_PARTS, WINDOW = 9, 3


# --------------------------------------------------------------------------- the two paths


def unfold_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """All edge-padded k x k windows: (B, C, H, W) -> (B, C*k*k, H*W), channel-major like Conv2d."""
    return F.unfold(pad_edges(x, window), window)


def window_at(x: torch.Tensor, cells: torch.Tensor, window: int) -> torch.Tensor:
    """The window centred at cells (col, row) by advanced indexing: (B, C, H, W), (B, N, 2) -> (B, N, C, k, k)."""
    xp = pad_edges(x, window)
    offs = torch.arange(window, device=x.device)
    rows, cols = cells[..., 1, None] + offs, cells[..., 0, None] + offs  # (B, N, k), padded coordinates
    bidx = torch.arange(x.shape[0], device=x.device)[:, None, None, None]
    out = xp.permute(0, 2, 3, 1)[bidx, rows[..., :, None], cols[..., None, :]]  # (B, N, k, k, C)
    return out.permute(0, 1, 4, 2, 3)


def old_semi(x: torch.Tensor, attn: torch.Tensor, cells: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SSN.forward before the bmm: einsum over the unfolded windows, then the gathered anchors."""
    b, c = x.shape[:2]
    parts = torch.einsum("bnl,bdl->bnd", attn.flatten(2), unfold_windows(x, WINDOW))
    parts = parts.reshape(b, attn.shape[1], c, WINDOW, WINDOW)
    return torch.where(mask[..., None, None, None], window_at(x, cells, WINDOW), parts)


def new_semi(x: torch.Tensor, attn: torch.Tensor, cells: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return weighted_windows(x, anchor_attention(attn, cells, mask), WINDOW)


def old_supervised(
    x: torch.Tensor, attn: torch.Tensor, cells: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    b, c = x.shape[:2]
    mean = unfold_windows(x, WINDOW).mean(-1).reshape(b, 1, c, WINDOW, WINDOW)
    return torch.where(mask[..., None, None, None], window_at(x, cells, WINDOW), mean)


def new_supervised(
    x: torch.Tensor, attn: torch.Tensor, cells: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    return supervised_parts(x, cells, mask, WINDOW)


PATHS: dict[str, Callable[..., torch.Tensor]] = {
    "semi/unfold": old_semi,
    "semi/bmm": new_semi,
    "supervised/unfold": old_supervised,
    "supervised/bmm": new_supervised,
}


# --------------------------------------------------------------------------- measuring


def make_inputs(shape: str, device: torch.device, dtype: torch.dtype = torch.float32, seed: int = 0):
    """x (B, C, H, W), attention (B, N, H, W), cells (B, N, 2), mask (B, N), all but cells needing grad."""
    b, c, h, w = SHAPES[shape]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g).to(device, dtype).requires_grad_()
    attn = torch.randn(b, NUM_PARTS, h * w, generator=g).softmax(-1).reshape(b, NUM_PARTS, h, w)
    attn = attn.to(device, dtype).requires_grad_()
    cells = torch.stack([torch.randint(0, w, (b, NUM_PARTS), generator=g),
                         torch.randint(0, h, (b, NUM_PARTS), generator=g)], -1).to(device)  # fmt: skip
    mask = (torch.rand(b, NUM_PARTS, generator=g) < 0.5).to(device)
    return x, attn, cells, mask


def saved_bytes(fn: Callable[..., torch.Tensor], inputs) -> int:
    """Bytes of the unique storages autograd keeps for backward (what a step holds until backward)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*inputs)
    return sum(seen.values())


def time_path(name: str, shape: str, device: torch.device, dtype: torch.dtype, reps: int) -> dict:
    """Median forward + backward time, saved bytes and (CUDA) peak memory of one path at one shape."""
    fn, inputs = PATHS[name], make_inputs(shape, device, dtype)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    upstream = None

    def once() -> None:
        nonlocal upstream
        out = fn(*inputs)
        upstream = torch.ones_like(out) if upstream is None else upstream
        out.backward(upstream)
        inputs[0].grad = inputs[1].grad = None

    once()  # warm-up
    if cuda:
        sync()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        once()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    row = {"path": name, "shape": shape, "dtype": str(dtype).removeprefix("torch."),
           "fwd_bwd_ms": round(1000 * times[len(times) // 2], 3),
           "saved_mb": round(saved_bytes(fn, inputs) / 2**20, 2)}  # fmt: skip
    if cuda:
        row["peak_extra_mb"] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 2)
    return row


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+) kB", f.read()).group(1))


def peak_rss_child(name: str, shape: str) -> None:
    """In a fresh process: the peak resident-memory rise of one forward + backward (printed as bytes).

    The peak is reset after the inputs exist (Linux ``clear_refs`` 5), since a process's peak otherwise
    includes its parent's from before ``exec``.
    """
    inputs = make_inputs(shape, torch.device("cpu"))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kb("VmRSS")
    PATHS[name](*inputs).sum().backward()
    print(1024 * (_status_kb("VmHWM") - before))


def peak_rss(name: str, shape: str, threads: int) -> int:
    cmd = [sys.executable, __file__, "--child", f"{name}@{shape}", "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
    return int(out.stdout.split()[-1])


def run(shapes: list[str], device: torch.device, dtype: torch.dtype, reps: dict[str, int], rss: bool) -> list:
    rows = []
    for shape in shapes:
        for name in PATHS:
            row = time_path(name, shape, device, dtype, reps[shape])
            if rss and device.type == "cpu":
                row["peak_rss_rise_mb"] = round(peak_rss(name, shape, torch.get_num_threads()) / 2**20, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--shapes", default="tiny,paper")
    p.add_argument("--reps", type=int, default=0, help="timed repetitions (default: 20 tiny, 3 paper)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: a per-core figure)")
    p.add_argument("--no-rss", dest="rss", action="store_false", help="skip the fresh-process peak RSS")
    p.add_argument("--json", help="also write the result here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        peak_rss_child(*args.child.split("@"))
        return {}
    device = torch.device(args.device)
    reps = {"tiny": args.reps or 20, "paper": args.reps or 3}
    rows = run(args.shapes.split(","), device, getattr(torch, args.dtype), reps, args.rss)
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    res = {"machine": machine, "cpu_cores": os.cpu_count(), "threads": args.threads, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1), encoding="utf-8")
    return res


if __name__ == "__main__":
    main()
