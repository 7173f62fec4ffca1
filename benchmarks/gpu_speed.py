"""One GPU run for the speed issue: step benchmark, windows ops, profile, end-to-end loader, compiled step; one JSON.

Paper configuration (8 x 4 clips, T = 4, 256 x 128, ResNet50 to layer3, bf16 autocast,
channels_last), SSN3D as the model runs it: eq. (3) as one bmm (ssn3d.models.windows), no host
sync in the step. The former unfold path is no longer in the model, so only the ops benchmark
still times it:

1. eager steps: SSN3D, temporal pooling, backbone alone (``bench_train_step``);
2. eq. (3) + anchors and the supervised parts alone, unfold against bmm, forward + backward
   (``bench_windows``);
3. the top kernels of a 5-step torch.profiler trace of the SSN3D step, and which convolution
   launched each convolution kernel (op name and input shapes);
4. the end-to-end JPEG loader against the in-memory step with uint8 items normalized on the device
   (``bench_e2e_loader``, training's default on CUDA), and the loader alone with float32 against
   uint8 items;
5. compiled steps (SSN3D, baseline, backbone) with dynamo's graph-break count, while the deadline
   leaves room (compiling ResNet50 takes the better part of a minute each).

Sections run in this order and the JSON is rewritten after each, so a deadline cut keeps what ran.

    python benchmarks/gpu_speed.py --out OUT          # or with $OUT set; --deadline 230 s by default
    python benchmarks/gpu_speed.py --tiny --out OUT   # CPU smoke: tiny shapes, dynamo-only compile
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_e2e_loader  # noqa: E402
import bench_train_step  # noqa: E402
import bench_windows  # noqa: E402

COMPILE_S = 75  # a ResNet50 SSN3D step's inductor compile on the GPU machine, forward and backward


class Report:
    """The one JSON: sections added as they finish, rewritten each time; a clock against the deadline."""

    def __init__(self, path: Path, deadline_s: float, meta: dict) -> None:
        self.path, self.deadline, self.t0 = path, deadline_s, time.perf_counter()
        self.data: dict = {**meta, "skipped": []}
        self.save()

    def left(self) -> float:
        return self.deadline - (time.perf_counter() - self.t0)

    def add(self, key: str, value) -> None:
        self.data[key] = value
        self.save()

    def skip(self, what: str, why: str) -> None:
        self.data["skipped"].append({"what": what, "why": why})
        self.save()

    def save(self) -> None:
        self.data["wall_s"] = round(time.perf_counter() - self.t0, 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=1), encoding="utf-8")


def step_args(tiny: bool, device: torch.device) -> argparse.Namespace:
    """bench_train_step's arguments for the paper configuration, or tiny CPU shapes."""
    argv = ["--device", device.type]
    if tiny:
        argv += [
            "--backbone",
            "resnet18",
            "--ids",
            "2",
            "--instances",
            "2",
            "--height",
            "64",
            "--width",
            "32",
        ]
        argv += ["--steps", "2", "--warmup", "1"]
    return bench_train_step.parser().parse_args(argv)


def step_rows(args: argparse.Namespace, device: torch.device, kinds: list[str]) -> list[dict]:
    """time_model for each model kind; with ``args.compile``, dynamo's graph breaks too."""
    from torch._dynamo.utils import counters

    rows = []
    for kind in kinds:
        torch._dynamo.reset()
        counters.clear()
        row = bench_train_step.time_model(kind, args, device)
        row.update(compiled=bool(args.compile))
        if args.compile:
            row["graph_breaks"] = sum(counters["graph_break"].values())
            row["graph_break_reasons"] = sorted({r.splitlines()[0][:160] for r in counters["graph_break"]})
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def _with(args: argparse.Namespace, **kw) -> argparse.Namespace:
    out = copy.copy(args)
    for k, v in kw.items():
        setattr(out, k, v)
    return out


def ratios(rows: list[dict]) -> dict:
    """SSN3D's throughput over the baseline's and its step time over the backbone's (None if not run)."""
    by = {r["model"]: r for r in rows}
    r, base, bone = by.get("ssn3d"), by.get("baseline"), by.get("backbone")
    return {
        "vs_baseline_throughput": round(r["clips_per_s"] / base["clips_per_s"], 3) if r and base else None,
        "vs_backbone_step_time": round(r["step_ms"] / bone["step_ms"], 3) if r and bone else None,
    }


def profile(args: argparse.Namespace, device: torch.device, steps: int, top: int = 15) -> dict:
    """Top kernels (CUDA) or ops (CPU) by self time over ``steps`` SSN3D steps, and the convolutions' kernels."""
    from torch.profiler import ProfilerActivity, profile

    step, _, _ = bench_train_step.build_step("ssn3d", args, device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(2):
        step()
    sync()
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities, record_shapes=True) as prof:
        for _ in range(steps):
            step()
        sync()
    device_kind = torch.autograd.DeviceType.CUDA if cuda else torch.autograd.DeviceType.CPU
    events = [e for e in prof.key_averages() if e.device_type == device_kind]
    time_of = (lambda e: e.self_device_time_total) if cuda else (lambda e: e.self_cpu_time_total)
    total = sum(time_of(e) for e in events) or 1.0
    events.sort(key=time_of, reverse=True)
    kernels = [{"name": e.key[:120], "calls_per_step": round(e.count / steps, 2),
                "ms_per_step": round(time_of(e) / 1000 / steps, 3), "share": round(time_of(e) / total, 4)}
               for e in events[:top]]  # fmt: skip
    return {"steps": steps, "unit": "CUDA kernels" if cuda else "CPU ops (self time)",
            "total_ms_per_step": round(total / 1000 / steps, 2), "top": kernels,
            "conv_kernels": conv_kernels(prof, steps)}  # fmt: skip


def conv_kernels(prof, steps: int, top: int = 10) -> list[dict]:
    """Each device kernel launched under a convolution op, by (kernel, op, input shapes): which conv is slow."""
    acc: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for e in prof.events():
        if not e.kernels:
            continue
        op = e
        while op is not None and "conv" not in op.name:
            op = op.cpu_parent
        if op is None:
            continue
        for k in e.kernels:
            slot = acc[(k.name[:100], op.name, str(op.input_shapes)[:200])]
            slot[0] += k.duration
            slot[1] += 1
    rows = sorted(acc.items(), key=lambda kv: kv[1][0], reverse=True)[:top]
    return [{"kernel": k, "op": op, "input_shapes": shapes, "ms_per_step": round(us / 1000 / steps, 3),
             "calls_per_step": round(n / steps, 2)} for (k, op, shapes), (us, n) in rows]  # fmt: skip


def e2e(tiny: bool, device: torch.device, data: Path, workers: int) -> tuple[dict, dict]:
    """bench_e2e_loader's two legs (uint8 items), then the loader alone with float32 and uint8 items."""
    if tiny:
        root = bench_e2e_loader.walkers(str(data), 8, (128, 64))
        argv = ["--cpu-scale", "--root", str(root), "--steps", "2", "--warmup", "1", "--cache", "1"]
    else:
        root = bench_e2e_loader.walkers(str(data), 32, (256, 128))
        argv = ["--root", str(root), "--steps", "30"]
    argv += ["--device", device.type, "--workers", str(workers), "--items", "uint8"]
    legs = bench_e2e_loader.main(argv)
    batch = dict(ids=4, instances=2, size=(128, 64)) if tiny else {}
    rows = [bench_e2e_loader.loader_rate(root, uint8=u, workers=workers, batches=2 if tiny else 12,
                                         device=device, **batch) for u in (False, True)]  # fmt: skip
    loader = {
        "rows": rows,
        "uint8_vs_float32_clips_per_s": round(rows[1]["clips_per_s"] / rows[0]["clips_per_s"], 3),
    }
    return legs, loader


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--out", default=os.environ.get("OUT", "."), help="folder of gpu_speed.json (default: $OUT)"
    )
    p.add_argument("--tiny", action="store_true", help="CPU smoke run: tiny shapes, about a minute")
    p.add_argument(
        "--deadline", type=float, default=230.0, help="seconds; sections that would not fit are skipped"
    )
    p.add_argument(
        "--data", help="where the walkers for the loader are generated (default: a temporary folder)"
    )
    p.add_argument("--workers", type=int, default=0, help="loader workers (default: 8, 1 with --tiny)")
    p.add_argument("--profile-steps", type=int, default=5)
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.tiny
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda and not args.tiny:
        p.error("no CUDA device here; run with --tiny for the CPU smoke run.")
    workers = args.workers or (1 if args.tiny else 8)
    meta = {"machine": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
            "torch": torch.__version__, "cpu_cores": os.cpu_count(), "tiny": args.tiny,
            "config": "tiny CPU shapes" if args.tiny else "8x4 clips, T=4, 256x128, resnet50 to layer3, "
            "bf16 autocast, channels_last"}  # fmt: skip
    report = Report(Path(args.out) / "gpu_speed.json", args.deadline, meta)
    base = step_args(args.tiny, device)
    eager = step_rows(base, device, ["ssn3d", "baseline", "backbone"])
    report.add("step_eager", {"rows": eager, "ratios": ratios(eager)})

    shapes = ["tiny"] if args.tiny else ["tiny", "paper"]
    dtype = torch.bfloat16 if cuda else torch.float32
    ops = bench_windows.run(shapes, device, dtype, {"tiny": 3 if args.tiny else 20, "paper": 20}, rss=False)
    report.add("windows_ops", ops)

    steps = 2 if args.tiny else args.profile_steps
    report.add("profile", profile(base, device, steps))

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else Path(tmp)
        if report.left() > (20 if args.tiny else 60):
            legs, loader = e2e(args.tiny, device, data, workers)
            report.add("e2e_loader", legs)
            report.add("loader_items", loader)
        else:
            report.skip("e2e_loader", f"{report.left():.0f} s left before the deadline")

    # Dynamo alone on the CPU (backend "eager"): the graph breaks without minutes of C++ compilation.
    compiled = _with(base, compile=True, compile_backend="eager" if args.tiny else "inductor")
    need = 10 if args.tiny else COMPILE_S
    rows = []
    for kind in ["ssn3d"] if args.tiny else ["ssn3d", "baseline", "backbone"]:
        if report.left() < need:
            report.skip(f"compiled {kind}", f"{report.left():.0f} s left, a compile takes ~{need} s")
            continue
        rows += step_rows(compiled, device, [kind])
        report.add("step_compiled", {"rows": rows, "ratios": ratios(rows)})
    report.save()
    print(f"wrote {report.path} in {report.data['wall_s']} s", flush=True)
    return report.data


if __name__ == "__main__":
    main()
