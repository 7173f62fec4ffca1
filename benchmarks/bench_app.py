"""Speed of the app's two interactive paths (issue 6, "Speed"), on the CPU.

    python benchmarks/bench_app.py                      # the demo model, or a stand-in of its size
    python benchmarks/bench_app.py --checkpoint runs/X/checkpoints/best.pt

1. Attention grid: after the model is loaded once (the app caches it), 8 frames of a demo tracklet
   -> ``FeatureExtractor.attention`` (T, 9, h, w) -> ``overlay_grid`` with its part header, as the
   Attention page does. Target: <= 300 ms.
2. A click on the server: ``handle_click``, the locked atomic save of the label store
   (``AnnotationStore.update``), what the rerun sends back to the frame canvas (``canvas_data`` as
   JSON, the frame's data URL included), and the rerun's re-read of the changed store (its progress
   counts and ticks).
   Target: <= 100 ms. Measured with the demo's label store and with a MARS-size one (16 600 labeled
   frames: two per training tracklet), since every save rewrites the whole file.

3. ``--browser``: click-to-redraw as a labeler sees it. A real ``streamlit run`` of the app on a small
   generated demo, Debian's headless Chromium (Playwright) at 1400 x 900 on the Annotate page. Each
   click on the frame canvas is timed in the page from the pointer event's own time stamp to (a) the
   first animation frame whose canvas holds the new point in its part's colour under the pointer (what
   the labeler sees; target <= 150 ms), and (b) the first one after the server's rerun has answered the
   click with points that include it (saved and confirmed).

Without ``assets/demo_model.pt`` the model is the demo's architecture (``configs/walkers.yaml`` with
a ResNet18 backbone, 128 x 64 frames) with random weights: the time does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ssn3d import attention as at
from ssn3d.config import load_config
from ssn3d.engine.inference import FeatureExtractor
from ssn3d.keypoints import PARTS
from ssn3d.labels import drawing, editing
from ssn3d.labels.store import AnnotationStore
from ssn3d.models import build_model

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the app's package (app/) is not installed: run from a checkout

from app.frame_canvas import canvas_data, frame_url  # noqa: E402


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


def bench_click(path: Path, labeled_frames: int, repeats: int) -> None:
    from PIL import Image

    frame = Image.open(path)
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
        state = {"part": 0, "seq": 0}
        names = [p.replace("_", " ") for p in PARTS]

        labels = store.frames()  # the page's cached index of the store

        def click() -> str:
            nonlocal labels
            x, y = float(rng.uniform(0, frame.width)), float(rng.uniform(0, frame.height))
            before = labels.get(key)
            res = editing.handle_click(
                editing.new_keypoints() if before is None else before, state["part"], x, y
            )
            store.update({key: res.keypoints})  # locked read-modify-write, atomic rename
            state["part"], state["seq"] = res.part, state["seq"] + 1
            labels = store.frames()  # the rerun re-reads the changed store for progress and thumbnails
            data = canvas_data(
                frame=key,
                image=frame_url(str(path)),  # cached per frame, as on the page
                size=frame.size,
                scale=scale,
                keypoints=labels[key],
                selected=res.part,
                names=names,
                ack={"token": "bench", "seq": state["seq"]},
            )
            return json.dumps(data)  # what the rerun sends to the canvas

        size_kb = store.path.stat().st_size / 1024
        report(
            f"click saved + answered ({labeled_frames} labeled frames, {size_kb:.0f} kB store)",
            timed(click, repeats),
            100,
        )


# Installed on the page before a click: times that click from its pointer event to (a) the first animation
# frame whose canvas shows the selected part's colour under the pointer and (b) the first one after the
# server answered the click with its point. window.__click resolves to {drawn, confirmed} in ms, or {error}.
TIME_CLICK = """(canvas, timeout) => {
  const live = () => {
    for (const host of document.querySelectorAll('[data-testid="stBidiComponentIsolated"]')) {
      const c = host.shadowRoot && host.shadowRoot.querySelector("canvas.ssn3d-frame");
      if (c) return c;
    }
    return canvas;
  };
  const view = canvas.__view;
  const part = view.selected;
  const [r, g, b] = view.data.colors[part];
  const ctx = canvas.getContext("2d");
  const sent = Number(canvas.dataset.sent || 0) + 1;
  window.__click = new Promise((resolve) => {
    window.addEventListener("pointerdown", (e) => {
      const t0 = e.timeStamp;
      const rect = canvas.getBoundingClientRect();
      const px = Math.floor(((e.clientX - rect.left) * canvas.width) / rect.width);
      const py = Math.floor(((e.clientY - rect.top) * canvas.height) / rect.height);
      const fx = ((e.clientX - rect.left) / rect.width) * view.data.size[0];
      const fy = ((e.clientY - rect.top) / rect.height) * view.data.size[1];
      let drawn = null;
      const tick = () => {
        if (drawn === null) {
          const [pr, pg, pb] = ctx.getImageData(px, py, 1, 1).data;
          if (Math.abs(pr - r) + Math.abs(pg - g) + Math.abs(pb - b) < 30) drawn = performance.now() - t0;
        }
        const c = live(); // a rerun of the whole page (the frame's first point) mounts a new canvas
        const answered = Number(c.dataset.answered || 0) >= sent;
        const p = c.__view && c.__view.data ? c.__view.data.points[part] : [0, 0, 0];
        if (drawn !== null && answered && p[2] === 2 && Math.hypot(p[0] - fx, p[1] - fy) < 0.5) {
          resolve({ drawn, confirmed: performance.now() - t0 });
        } else if (performance.now() - t0 > timeout) {
          resolve({ error: `not drawn or confirmed within ${timeout} ms (drawn: ${drawn})` });
        } else requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    }, { capture: true, once: true });
  });
  return part;
}"""
# A place to click, 10 pixels inside the frame and 20 display pixels from every placed point: a press on
# a point would start a drag, and a point of a later part, drawn over the new one, would hide it.
FREE_SPOT = """(canvas, seed) => {
  const view = canvas.__view;
  const rect = canvas.getBoundingClientRect();
  const k = rect.width / view.data.size[0];
  let s = seed;
  const next = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let n = 0; n < 1000; n++) {
    const x = 10 + next() * (rect.width - 20);
    const y = 10 + next() * (rect.height - 20);
    if (view.points.every(([px, py, v]) => v !== 2 || Math.hypot(px * k - x, py * k - y) >= 20)) {
      return [Math.round(x), Math.round(y)];
    }
  }
  return [Math.round(rect.width / 2), Math.round(rect.height / 2)];
}"""
# the canvas has drawn its frame and every event it sent is answered
IDLE = """(c) => new Promise((ok, fail) => {
  const t0 = performance.now();
  const wait = () => {
    if (c.__view && c.__view.image && c.dataset.pending === "0") ok();
    else if (performance.now() - t0 > 30000) fail(new Error(`canvas not idle: ${JSON.stringify(c.dataset)}`));
    else requestAnimationFrame(wait);
  };
  wait();
})"""


def bench_browser(clicks: int, chromium: str) -> None:
    """Time clicks on the Annotate page's frame canvas in a real browser against a real server."""
    import socket
    import subprocess
    import urllib.request

    from playwright.sync_api import sync_playwright

    from ssn3d.data.synth.walkers import generate_walkers

    drawn, confirmed = [], []
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
                page.goto(f"{url}/annotate?split=train&tracklet=1&frame=3")  # a frame the demo left unlabeled
                canvas = page.locator("canvas.ssn3d-frame")
                for n in range(clicks + 1):
                    page.wait_for_timeout(400)  # the page is idle: no rerun still running
                    canvas.evaluate(IDLE)
                    x, y = canvas.evaluate(FREE_SPOT, n + 1)
                    box = canvas.bounding_box()
                    canvas.evaluate(TIME_CLICK, 20_000)
                    page.mouse.click(box["x"] + x, box["y"] + y)
                    got = page.evaluate(
                        "() => Promise.race([window.__click, new Promise((ok) => setTimeout("
                        "() => ok({error: 'the click never reached the canvas'}), 30000))])"
                    )
                    if "error" in got:
                        raise RuntimeError(f"click {n}: {got['error']}")
                    if n:  # the first click pays for the first import of the click path
                        drawn.append(got["drawn"])
                        confirmed.append(got["confirmed"])
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    report(f"browser: click -> point drawn on the canvas ({clicks} clicks)", drawn, 150)
    print("  all (ms): " + " ".join(f"{m:.0f}" for m in drawn))
    report(f"browser: click -> server's points include it ({clicks} clicks)", confirmed, 150)
    print("  all (ms): " + " ".join(f"{m:.0f}" for m in confirmed))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=REPO / "assets" / "demo_model.pt")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the app uses 1: app.common)")
    ap.add_argument(
        "--browser", action="store_true", help="only the click in a real browser (needs Chromium)"
    )
    ap.add_argument("--clicks", type=int, default=20)
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

        paths = sorted((root / "train").rglob("*.jpg"))[:8]
        frames = [Image.open(p).convert("RGB") for p in paths]
        ex, what = extractor(args.checkpoint)
        print(f"model: {what}")
        bench_grid(ex, frames, args.repeats)
        bench_click(paths[0], 64, args.repeats)  # the demo: 2 frames x 32 training tracklets
        bench_click(paths[0], 16_600, max(5, args.repeats // 4))  # MARS: 2 frames x 8298 training tracklets


if __name__ == "__main__":
    main()
