"""Speed of the app's two interactive paths (issue 6, "Speed"), on the CPU.

    python benchmarks/bench_app.py                      # the demo model, or a stand-in of its size
    python benchmarks/bench_app.py --checkpoint runs/X/checkpoints/best.pt

1. Attention grid: after the model is loaded once (the app caches it), 8 frames of a demo tracklet
   -> ``FeatureExtractor.attention`` (T, 9, h, w) -> ``overlay_grid`` with its part header, as the
   Attention page does. Target: <= 300 ms.
2. A click: display pixel -> frame pixel (``scale_click``), ``handle_click``, the locked atomic save
   of the label store (``AnnotationStore.update``), the redraw the page sends back (``draw_keypoints``
   at the display scale and the PNG the image-click component encodes), and the rerun's re-read of the
   changed store (its progress counts and ticks).
   Target: <= 100 ms. Measured with the demo's label store and with a MARS-size one (16 600 labeled
   frames: two per training tracklet), since every save rewrites the whole file.

3. ``--browser``: click-to-redraw as a labeler sees it. A real ``streamlit run`` of the app on a small
   generated demo, Debian's headless Chromium (Playwright) at 1400 x 900 on the Annotate page; each
   click on the frame is timed until the click component shows the redrawn frame (new image source,
   decoded). Target: <= 150 ms.

Without ``assets/demo_model.pt`` the model is the demo's architecture (``configs/walkers.yaml`` with
a ResNet18 backbone, 128 x 64 frames) with random weights: the time does not depend on the weights.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ssn3d import attention as at
from ssn3d.config import load_config
from ssn3d.engine.inference import FeatureExtractor
from ssn3d.labels import drawing, editing
from ssn3d.labels.store import AnnotationStore
from ssn3d.models import build_model

REPO = Path(__file__).resolve().parents[1]


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up: first-call allocations and lazy imports are not what a user waits for
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - t))
    return out


def report(name: str, ms: list[float], target: float) -> None:
    med, worst = statistics.median(ms), max(ms)
    verdict = "ok" if med <= target else "OVER"
    print(f"{name:58s} median {med:7.1f} ms   max {worst:7.1f} ms   target {target:.0f} ms  {verdict}")


def extractor(checkpoint: Path | None) -> tuple[FeatureExtractor, str]:
    if checkpoint is not None and checkpoint.is_file():
        return FeatureExtractor.from_checkpoint(checkpoint), f"checkpoint {checkpoint.name}"
    cfg = load_config(REPO / "configs" / "walkers.yaml", ["model.backbone=resnet18", "train.device=cpu"])
    torch.manual_seed(0)
    model = build_model(cfg.model, load_weights=False)
    return FeatureExtractor(model, cfg, "cpu"), "stand-in: walkers.yaml with resnet18, random weights"


def bench_grid(ex: FeatureExtractor, frames: list, repeats: int) -> None:
    w, h = ex.image_size

    def render() -> np.ndarray:
        maps = ex.attention(frames)
        arr = at.frames_to_array(frames, (w, h))
        return np.concatenate([at.part_header(maps.shape[1], w), at.overlay_grid(arr, maps, 0.5)], axis=0)

    maps = ex.attention(frames)
    arr = at.frames_to_array(frames, (w, h))
    print(f"frames {len(frames)} x {w}x{h}, maps {tuple(maps.shape)}")
    report("attention maps of 8 frames (model forward)", timed(lambda: ex.attention(frames), repeats), 300)
    report(
        "overlay grid 8 x 9 + header (numpy only)",
        timed(lambda: at.overlay_grid(arr, maps, 0.5), repeats),
        300,
    )
    report("attention grid: forward + overlays (the page's work)", timed(render, repeats), 300)
    report(
        "argmax view + part tracks",
        timed(lambda: (at.argmax_view(arr, maps), at.draw_tracks(arr, maps)), repeats),
        300,
    )


def bench_click(frame, labeled_frames: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = AnnotationStore(Path(tmp) / "labels.json")
        rng = np.random.default_rng(0)
        filler = {
            f"train/{i // 2:05d}/c1_t00/{i % 2:06d}.jpg": np.c_[rng.random((9, 2)) * 60, np.full(9, 2.0)]
            for i in range(labeled_frames)
        }
        store.update(filler)
        key = "train/99999/c1_t00/000000.jpg"
        scale = drawing.display_scale(frame.size)
        shown = (round(frame.width * scale), round(frame.height * scale))
        state = {"part": 0}

        labels = store.frames()  # the page's cached index of the store

        def click() -> str:
            nonlocal labels
            x, y = editing.scale_click(
                int(rng.integers(shown[0])), int(rng.integers(shown[1])), shown, frame.size
            )
            before = labels.get(key)
            res = editing.handle_click(
                editing.new_keypoints() if before is None else before, state["part"], x, y
            )
            store.update({key: res.keypoints})  # locked read-modify-write, atomic rename
            state["part"] = res.part
            img = drawing.draw_keypoints(
                frame, res.keypoints, scale=scale, radius=1.5 * scale, selected=res.part
            )
            buf = io.BytesIO()
            img.save(buf, format="PNG", compress_level=0)  # as streamlit-image-coordinates sends it
            labels = store.frames()  # the rerun re-reads the changed store for progress and thumbnails
            return base64.b64encode(buf.getvalue()).decode()

        size_kb = store.path.stat().st_size / 1024
        report(
            f"click saved + redrawn ({labeled_frames} labeled frames, {size_kb:.0f} kB store)",
            timed(click, repeats),
            100,
        )


REDRAWN = """(old) => {
  const shown = [...document.querySelectorAll('iframe[title*="streamlit_image_coordinates"]')]
    .filter((f) => f.getAttribute("height") !== "0");
  const f = shown[shown.length - 1];
  const img = f && f.contentDocument && f.contentDocument.getElementById("image");
  return !!img && img.src.length > 0 && img.src !== old && img.complete && img.naturalWidth > 0;
}"""
SHOWN_SRC = """() => {
  const shown = [...document.querySelectorAll('iframe[title*="streamlit_image_coordinates"]')]
    .filter((f) => f.getAttribute("height") !== "0");
  return shown[shown.length - 1].contentDocument.getElementById("image").src;
}"""


def bench_browser(clicks: int, chromium: str) -> None:
    """Time clicks on the Annotate page's frame in a real browser against a real server."""
    import socket
    import subprocess
    import sys
    import urllib.request

    from playwright.sync_api import sync_playwright

    from ssn3d.data.synth.walkers import generate_walkers

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        generate_walkers(home / "data" / "demo-walkers", ids=8, cameras=2, frames=8, size=(128, 64), seed=1)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "SSN3D_HOME": str(home), "SSN3D_DEMO": "1"}
        env.pop("SSN3D_PASSWORD", None)
        cmd = [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "main.py"), "--server.port"]
        cmd += [str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                    break
                except OSError:
                    time.sleep(0.3)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox"])
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.set_default_timeout(60_000)
                page.goto(f"{url}/annotate")
                page.wait_for_function(SHOWN_SRC.replace("return shown", "return shown.length && shown"))
                ms = []
                rng = np.random.default_rng(0)
                for n in range(clicks + 1):
                    page.wait_for_timeout(400)  # the page is idle: no rerun still running
                    old = page.evaluate(SHOWN_SRC)
                    frame = page.locator(
                        'iframe[title*="streamlit_image_coordinates"]:not([height="0"])'
                    ).last
                    img = frame.content_frame.locator("#image")
                    x, y = int(rng.integers(10, 180)), int(rng.integers(10, 370))
                    t = time.perf_counter()
                    img.click(position={"x": x, "y": y})
                    page.wait_for_function(REDRAWN, arg=old, polling="raf")
                    if n:  # the first click pays for the first import of the click path
                        ms.append(1000 * (time.perf_counter() - t))
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    report(f"browser: click -> redrawn frame shown ({clicks} clicks)", ms, 150)
    print("  all (ms): " + " ".join(f"{m:.0f}" for m in ms))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=REPO / "assets" / "demo_model.pt")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the app uses 1: app.common)")
    ap.add_argument(
        "--browser", action="store_true", help="only the click in a real browser (needs Chromium)"
    )
    ap.add_argument("--clicks", type=int, default=15)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())  # other work on the machine skews the times
    print(
        f"{platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    print(f"load average before the run: {load}")
    if args.browser:
        bench_browser(args.clicks, args.chromium)
        return
    from ssn3d.data.synth.walkers import generate_walkers

    with tempfile.TemporaryDirectory() as tmp:
        root = generate_walkers(Path(tmp) / "w", ids=2, cameras=2, frames=8, size=(128, 64), split=False)
        from PIL import Image

        frames = [Image.open(p).convert("RGB") for p in sorted((root / "train").rglob("*.jpg"))[:8]]
        ex, what = extractor(args.checkpoint)
        print(f"model: {what}")
        bench_grid(ex, frames, args.repeats)
        bench_click(frames[0], 64, args.repeats)  # the demo: 2 frames x 32 training tracklets
        bench_click(frames[0], 16_600, max(5, args.repeats // 4))  # MARS: 2 frames x 8298 training tracklets


if __name__ == "__main__":
    main()
