"""End to end in a real browser: Playwright drives Debian's headless Chromium against `streamlit run`.

* Annotate: a click on the frame (the page's own canvas) draws the point and saves it in ``annotations/``
  at once; a point dragged lands where it is dropped and nothing else changes; labeling two
  frames of one tracklet (clicks, Undo) writes exactly those points to exactly those frames; on real
  footage (OpenCV's vtest.avi) the pose detector's suggestions are drawn as rings, Accept stores exactly
  the confident ones and Undo takes them back; the S, A and N keys work after a click on the frame.
* Attention: the T x N grid appears for a trained checkpoint.
* Train: a tiny run launched from the form runs as its own process, and its loss curve appears.
* Screenshots of every page; into docs/screenshots/ with ``SSN3D_UPDATE_SCREENSHOTS=1``.

Browsers are never downloaded: the tests use /usr/bin/chromium (``scripts/test.sh`` and CI install it).
Without it they fail in CI (env ``CI`` set) and skip elsewhere, saying why.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = REPO / "docs" / "screenshots"

pytestmark = pytest.mark.slow

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError(
            f"{CHROMIUM} is missing: CI must install Debian's chromium package for the browser tests."
        )
    pytest.skip(
        f"{CHROMIUM} is missing (install Debian's chromium package); browser tests skipped.",
        allow_module_level=True,
    )

from playwright.sync_api import Error as PlaywrightError  # noqa: E402
from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

# expect() waits 5 s by default; a loaded 2-core machine can take longer to draw a page.
expect.set_options(timeout=30_000)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout} s")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with demo walkers and a run whose checkpoints the engine trained for two steps."""
    from ssn3d.config import load_config
    from ssn3d.data.synth.walkers import generate_walkers
    from ssn3d.engine.train import main

    home = tmp_path_factory.mktemp("e2e-home")
    demo = generate_walkers(
        home / "data" / "demo-walkers",
        ids=8,
        cameras=2,
        tracklets_per_camera=1,
        frames=8,
        size=(128, 64),
        seed=1,
    )
    cfg = load_config(
        REPO / "configs" / "walkers-tiny.yaml",
        [
            f"data.root={demo}",
            "train.max_steps=2",
            "train.epochs=1",
            "train.device=cpu",
            "model.strategy=unsupervised",
            f"data.annotations={home / 'none.json'}",
        ],
    )
    assert main(cfg, home / "runs" / "aa-trained") == "done"
    return home


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "SSN3D_HOME": str(home), "SSN3D_DEMO": "1", "SSN3D_MAX_RUNS": "2"}
    env.pop("SSN3D_PASSWORD", None)
    log = open(home / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(REPO / "app" / "main.py"),
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        _stop_runs(home)


def _stop_runs(home: Path) -> None:
    """Cancel the runs these tests launched that are still going (their own process groups only)."""
    from ssn3d.runs.launch import cancel_run
    from ssn3d.runs.status import active_runs

    for run in active_runs(home / "runs"):
        cancel_run(run.path, grace_s=5)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        # launch() gives every browser a fresh temporary user-data-dir
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})  # the screenshots' window
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    context.close()


def _open(page: Page, server: str, path: str = "") -> None:
    page.goto(f"{server}/{path}")
    page.wait_for_selector('[data-testid="stApp"]')
    expect(page.get_by_text("SSN3D Studio").or_(page.locator("h1")).first).to_be_visible()
    _settled(page)


def _settled(page: Page, timeout: float = 30.0) -> None:
    """Wait until the script run finished (Streamlit's running indicator is gone)."""
    page.wait_for_timeout(300)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.locator('[data-testid="stStatusWidget"]').count() == 0:
            return
        page.wait_for_timeout(200)


def _shot(page: Page, name: str, tmp_path: Path) -> None:
    folder = SHOTS if os.environ.get("SSN3D_UPDATE_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    assert (folder / f"{name}.png").stat().st_size > 10_000


def _clickable_frame(page: Page):
    """The Annotate page's frame: the canvas the page draws itself (in its component's shadow root)."""
    return page.locator("canvas.ssn3d-frame")


def test_click_on_the_frame_draws_the_point_and_saves_it(page: Page, server: str, home: Path, tmp_path: Path):
    from PIL import Image

    from ssn3d.keypoints import PART_COLORS
    from ssn3d.labels.store import AnnotationStore

    _open(page, server, "annotate")
    img = _clickable_frame(page)
    expect(img).to_be_visible()
    box = img.bounding_box()
    assert box is not None and box["height"] >= 256  # 128-pixel frames are shown large enough to click
    store = home / "annotations" / "folder-demo-walkers.json"
    frame = "train/0001/c1_t00/000000.jpg"
    scale = box["width"] / 64
    x, y = 30, 40  # display pixels
    img.click(position={"x": x, "y": y})
    deadline = time.monotonic() + 20
    entry = None
    while time.monotonic() < deadline:
        entry = AnnotationStore(store).read()["frames"].get(frame)  # the file and its journal of recent saves
        if entry and entry["source"] == "manual":
            break
        time.sleep(0.2)
    assert entry and entry["source"] == "manual", "the click was not saved"
    hx, hy, hv = entry["keypoints"][0]
    assert hv == 2
    assert abs(hx - (x + 0.5) / scale) <= 1.0 and abs(hy - (y + 0.5) / scale) <= 1.0
    # the point is drawn in the head's colour where the user clicked
    deadline = time.monotonic() + 20
    color = None
    while time.monotonic() < deadline:
        try:
            png = _clickable_frame(page).screenshot(timeout=5_000)
        except PlaywrightError:  # the frame's first point reruns the page, which mounts a new canvas
            time.sleep(0.3)
            continue
        shot = Image.open(io.BytesIO(png)).convert("RGB")
        color = shot.getpixel((x, y))
        if all(abs(a - b) <= 40 for a, b in zip(color, PART_COLORS[0])):
            break
        time.sleep(0.3)
    assert all(abs(a - b) <= 40 for a, b in zip(color, PART_COLORS[0])), (
        f"pixel {color} is not the head colour"
    )
    _shot(page, "annotate", tmp_path)


def _store_frames(home: Path) -> dict:
    from ssn3d.labels.store import AnnotationStore

    return AnnotationStore(home / "annotations" / "folder-demo-walkers.json").frames()


def _wait_for_frame(home: Path, frame: str, visible: set[int], timeout: float = 30.0):
    """Wait until ``frame`` holds visible points on exactly the parts ``visible``; its keypoints (or None)."""
    deadline = time.monotonic() + timeout
    kps = None
    while time.monotonic() < deadline:
        kps = _store_frames(home).get(frame)
        have = set() if kps is None else {i for i in range(len(kps)) if kps[i, 2] == 2}
        if have == visible:
            return kps
        time.sleep(0.2)
    return kps


def _click_frame(page: Page, x: float, y: float) -> None:
    """One click on the shown frame at display pixel (x, y), once the page is idle."""
    _settled(page)
    _clickable_frame(page).click(position={"x": x, "y": y}, timeout=10_000)


def test_labels_of_two_frames_land_on_exactly_those_frames(page: Page, server: str, home: Path):
    """Labels go to the frame on screen, also once the tracklet's progress text has changed."""
    from ssn3d.data.datasets import build_dataset

    dataset = build_dataset("folder", str(home / "data" / "demo-walkers"))
    frames = [dataset.relpath(p) for p in dataset.splits()["train"][2].paths]
    _open(page, server, "annotate")
    before = _store_frames(home)
    free = [j for j, f in enumerate(frames) if f not in before]  # the demo pre-labels two frames each
    assert len(free) >= 2
    first, second = free[0], free[-1]
    page.get_by_label("Tracklet").click()
    page.get_by_role("option", name=re.compile(r"^#2 ")).click()
    _settled(page)
    if first != 0:  # a tracklet opens on its frame 0
        page.locator(f".st-key-ann_go_{first} button").click()
        _settled(page)
    box = _clickable_frame(page).bounding_box()
    assert box is not None
    scale = box["width"] / 64  # the demo frames are 64 pixels wide

    def frame_px(x: float, y: float) -> tuple[float, float]:
        return (x + 0.5) / scale, (y + 0.5) / scale

    clicks = [(20, 30), (30, 90), (40, 150)]  # head, body, crotch: the next part is selected after each
    for n, (x, y) in enumerate(clicks, start=1):
        _click_frame(page, x, y)
        got = _wait_for_frame(home, frames[first], set(range(n)))
        assert got is not None and {i for i in range(9) if got[i, 2] == 2} == set(range(n)), (
            f"click {n} did not land on frame {first} of tracklet #2"
        )
    _settled(page)
    page.locator(".st-key-ann_undo_btn button").click()  # takes the crotch back
    assert _wait_for_frame(home, frames[first], {0, 1}) is not None
    _click_frame(page, 50, 200)  # Undo selected the crotch again: it is placed anew
    _wait_for_frame(home, frames[first], {0, 1, 2})
    _settled(page)
    page.locator(f".st-key-ann_go_{second} button").click()
    _settled(page)
    _click_frame(page, 25, 35)
    _wait_for_frame(home, frames[second], {0})
    _click_frame(page, 35, 95)
    _wait_for_frame(home, frames[second], {0, 1})
    _settled(page)

    after = _store_frames(home)
    changed = {k for k in set(before) | set(after) if k not in before or k not in after}
    changed |= {k for k in before if k in after and not (before[k] == after[k]).all()}
    assert changed == {frames[first], frames[second]}, f"labels were written to {sorted(changed)}"
    want = {
        frames[first]: {0: frame_px(*clicks[0]), 1: frame_px(*clicks[1]), 2: frame_px(50, 200)},
        frames[second]: {0: frame_px(25, 35), 1: frame_px(35, 95)},
    }
    for frame, points in want.items():
        kps = after[frame]
        assert {i for i in range(9) if kps[i, 2] > 0} == set(points), f"{frame}: {kps.tolist()}"
        for i, (x, y) in points.items():
            assert abs(kps[i, 0] - x) <= 1.0 and abs(kps[i, 1] - y) <= 1.0, f"{frame} part {i}: {kps[i]}"
    # the place is in the URL: a reload (a new session) opens the same tracklet and frame
    assert f"tracklet=2&frame={second}" in page.url and "dataset=" in page.url
    page.reload()
    page.wait_for_selector('[data-testid="stApp"]')
    _settled(page)
    expect(page.get_by_text(frames[second])).to_be_visible()  # the frame's caption: tracklet #2's frame
    # and Back from another page returns to it
    page.get_by_role("link", name="Data").click()
    # on the Data page before going back (a loaded machine may not have left the Annotate page yet)
    expect(page.get_by_text("Open a dataset")).to_be_visible()
    # and until its run has written the dataset into its URL, so that no write of that run lands after Back
    # (one failed run ended on the Data page's URL after Back)
    expect(page).to_have_url(re.compile(r"/\?dataset="))
    _settled(page)
    page.go_back()
    expect(page).to_have_url(re.compile(r"/annotate\?"))
    page.wait_for_selector('[data-testid="stApp"]')
    _settled(page)
    expect(page.get_by_text(frames[second])).to_be_visible()


def test_dragging_a_point_moves_exactly_that_part_to_the_drop(page: Page, server: str, home: Path):
    """A point of a labeled frame pressed and dragged lands where it is dropped; nothing else changes."""
    import numpy as np

    from ssn3d.data.datasets import build_dataset

    dataset = build_dataset("folder", str(home / "data" / "demo-walkers"))
    frames = [dataset.relpath(p) for p in dataset.splits()["train"][6].paths]
    before = _store_frames(home)
    j = next(i for i, f in enumerate(frames) if f in before and (before[f][:, 2] == 2).sum() >= 2)
    kps = before[frames[j]]
    _open(page, server, f"annotate?split=train&tracklet=6&frame={j}")
    expect(page.get_by_text(frames[j])).to_be_visible()  # the frame's caption
    canvas = _clickable_frame(page)
    box = canvas.bounding_box()
    assert box is not None
    scale = box["width"] / 64
    shown = kps[:, :2] * scale
    visible = np.flatnonzero(kps[:, 2] == 2)
    # the part farthest from the others, so the press picks it and no other
    gap = {int(i): min(np.hypot(*(shown[i] - shown[k])) for k in visible if k != i) for i in visible}
    part = max(gap, key=gap.get)
    x0, y0 = (float(c) for c in shown[part])
    x1, y1 = min(box["width"] - 5, x0 + 25), max(5.0, y0 - 20)  # up and to the right, inside the frame
    page.mouse.move(box["x"] + x0, box["y"] + y0)
    page.mouse.down()
    page.mouse.move(box["x"] + x1, box["y"] + y1, steps=6)
    page.mouse.up()

    def moved(fs: dict) -> bool:
        return abs(fs[frames[j]][part, 0] - kps[part, 0]) > 1

    after = _wait_store(home / "annotations" / "folder-demo-walkers.json", moved)
    got = after[frames[j]]
    assert abs(got[part, 0] - x1 / scale) <= 1 / scale and abs(got[part, 1] - y1 / scale) <= 1 / scale, (
        f"{frames[j]} part {part} at {got[part].tolist()}, dropped at {(x1 / scale, y1 / scale)}"
    )
    assert got[part, 2] == 2
    others = [i for i in range(len(kps)) if i != part]
    np.testing.assert_array_equal(got[others], kps[others])  # exactly that part moved
    assert set(after) == set(before)
    assert all((after[f] == before[f]).all() for f in before if f != frames[j]), "another frame changed"


def _open_tracklet(page: Page, n: int) -> None:
    page.get_by_label("Tracklet").click()
    page.get_by_role("option", name=re.compile(rf"^#{n} ")).click()
    _settled(page)


def test_keys_work_after_a_click_and_the_frame_fits_the_window(browser, server: str, home: Path):
    from PIL import Image

    from ssn3d.data.datasets import build_dataset
    from ssn3d.keypoints import PART_COLORS

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        dataset = build_dataset("folder", str(home / "data" / "demo-walkers"))
        frames = [dataset.relpath(p) for p in dataset.splits()["train"][4].paths]
        _open(page, server, "annotate")
        _open_tracklet(page, 4)
        if frames[0] in _store_frames(home):  # the demo pre-labels two frames: start on one without
            # by its key, and the first of two while a rerun briefly keeps the old button beside the new one
            page.locator(".st-key-ann_next_open button").first.click()
            _settled(page)
        frame = next(f for f in frames if f not in _store_frames(home))
        box = _clickable_frame(page).bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 900, f"frame at {box}"
        _click_frame(page, 20, 30)
        assert _wait_for_frame(home, frame, {0}) is not None
        _settled(page)
        # Undo, with the focus where the click left it: the canvas is part of the page, so the key arrives
        # pressed again (at most 3 times) when a loaded machine was still redrawing the page, whose shortcut
        # handlers are briefly absent then; a press with nothing left to undo changes nothing
        for _ in range(3):
            page.keyboard.press("z")
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline and _store_frames(home).get(frame) is not None:
                time.sleep(0.2)
            if _store_frames(home).get(frame) is None:
                break
            _settled(page)
        assert _store_frames(home).get(frame) is None, "the Z key did not reach the page after a click"
        # the part to place next is named on the image in its colour; its button is filled with it
        _settled(page)
        shot = Image.open(io.BytesIO(_clickable_frame(page).screenshot())).convert("RGB")
        assert all(abs(a - b) <= 40 for a, b in zip(shot.getpixel((1, 1)), PART_COLORS[0]))
        fill = page.locator(".st-key-ann_part_0 button").evaluate("b => getComputedStyle(b).backgroundColor")
        assert fill.replace(" ", "") == "rgb({},{},{})".format(*PART_COLORS[0])
        # at 800 pixels wide the whole frame can still be clicked: inside the window and its column
        page.set_viewport_size({"width": 800, "height": 900})
        _settled(page)
        inner = _clickable_frame(page).bounding_box()
        outer = page.locator(".ssn3d-frame-wrap").bounding_box()
        assert outer is not None and inner is not None
        assert inner["x"] + inner["width"] <= min(800, outer["x"] + outer["width"] + 1), f"{inner} in {outer}"
        # zoomed in twice, a click still lands on the frame pixel under it
        page.set_viewport_size({"width": 1400, "height": 900})
        page.locator(".st-key-ann_zoom").get_by_text("2x", exact=True).click()
        _settled(page)
        box = _clickable_frame(page).bounding_box()
        assert box is not None and box["width"] == pytest.approx(64 * 6, abs=1)  # 3x fitted, then 2x
        _click_frame(page, 100, 200)
        kps = _wait_for_frame(home, frame, {0})
        assert kps is not None and abs(kps[0, 0] - 100.5 / 6) <= 0.5 and abs(kps[0, 1] - 200.5 / 6) <= 0.5
    finally:
        context.close()


VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")  # Debian's opencv-doc (scripts/test.sh)


@pytest.fixture(scope="module")
def vtest(home: Path) -> dict:
    """The first 40 frames of vtest.avi imported with the CLI into the workspace, and what the pose detector
    makes of the first frames of its tracklet #0 (the page must show and store exactly these)."""
    from ssn3d.data.datasets import build_dataset
    from ssn3d.labels.pose import pose_available, suggest_keypoints

    if not pose_available():
        pytest.skip("the pose detector is not installed: bash scripts/install-pose.sh")
    if not VTEST.is_file():
        pytest.skip(f"{VTEST} is missing: apt-get install opencv-doc")
    root = home / "data" / "vtest"
    cmd = [sys.executable, "-m", "ssn3d", "video", "import", str(VTEST), str(root), "--max-frames", "40"]
    done = subprocess.run([*cmd, "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    dataset = build_dataset("folder", str(root))
    paths = dataset.splits()["train"][0].paths[:8]
    found = {
        j: res.keypoints
        for j, res in enumerate(suggest_keypoints([str(p) for p in paths], roots=[home / "data"]))
        if res.keypoints is not None
    }
    if not found:
        pytest.skip("the pose detector found nobody on the first frames of vtest.avi's first tracklet")
    return {
        "root": root,
        "frames": [dataset.relpath(p) for p in dataset.splits()["train"][0].paths],
        "widths": [_image_width(p) for p in paths],  # crops of one track differ in size
        "found": found,
        "store": home / "annotations" / f"{dataset.dataset_id}.json",
    }


def _image_width(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return im.width


def _open_vtest_frame(page: Page, server: str, vtest: dict, j: int) -> None:
    """Open frame ``j`` of the vtest tracklet #0 through the URL, as a bookmark would."""
    from urllib.parse import urlencode

    query = urlencode({"dataset": str(vtest["root"]), "loader": "folder", "split": "train", "tracklet": 0})
    _open(page, server, f"annotate?{query}&frame={j}")
    expect(page.get_by_text(vtest["frames"][j])).to_be_visible()  # the frame's caption


def _frame_pixels(page: Page):
    """The click component's image as the browser shows it: (H, W, 3) uint8."""
    import numpy as np
    from PIL import Image

    png = _clickable_frame(page).screenshot(timeout=5_000)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def _button(page: Page, key: str):
    """The button with widget key ``key``; one with a help text is also drawn hidden (to measure it)."""
    return page.locator(f".st-key-{key} button:visible").first


def _wait_store(path: Path, ok, timeout: float = 30.0) -> dict:
    """Wait until ``ok(frames)`` holds for the label store at ``path``; its frames then (or at the timeout)."""
    from ssn3d.labels.store import AnnotationStore

    deadline = time.monotonic() + timeout
    while True:
        frames = AnnotationStore(path).frames()
        if ok(frames) or time.monotonic() > deadline:
            return frames
        time.sleep(0.2)


def test_suggest_draws_rings_accept_stores_exactly_them_and_undo_takes_them_back(
    page: Page, server: str, vtest: dict, tmp_path: Path
):
    """On real footage: the suggestions exist only in the browser until accepted."""
    import numpy as np

    from ssn3d.labels.store import AnnotationStore

    # a frame where some suggested parts are unsure, if any: those must not become labels
    j = next((i for i, k in vtest["found"].items() if (k[:, 2] == 1).any()), next(iter(vtest["found"])))
    sug, frame = vtest["found"][j], vtest["frames"][j]
    confident = sug[:, 2] == 2
    assert AnnotationStore(vtest["store"]).frames() == {}
    _open_vtest_frame(page, server, vtest, j)
    before = _frame_pixels(page)
    scale = before.shape[1] / vtest["widths"][j]
    _button(page, "ann_suggest").click()
    expect(page.get_by_text(re.compile(r"^Suggested: head \d\.\d\d"))).to_be_visible()
    # a ring around every confident suggestion: the frame changed there, and no label was written
    deadline, missing = time.monotonic() + 20, []
    while time.monotonic() < deadline:
        _settled(page)
        after = _frame_pixels(page)
        missing = []
        for i in np.flatnonzero(confident):
            cx, cy = (int(round(c * scale)) for c in sug[i, :2])
            near = np.abs(after - before)[max(0, cy - 10) : cy + 11, max(0, cx - 10) : cx + 11]
            if after.shape != before.shape or near.size == 0 or near.max() < 60:
                missing.append(int(i))
        if not missing:
            break
    assert not missing, f"no suggestion ring drawn for parts {missing}"
    assert AnnotationStore(vtest["store"]).frames() == {}, "a suggestion was stored before it was accepted"
    _shot(page, "annotate-suggest", tmp_path)
    # Accept: exactly the confident points, on exactly this frame; the unsure ones stay open
    _button(page, "ann_accept").click()
    got = _wait_store(vtest["store"], lambda fs: frame in fs)
    assert set(got) == {frame}, f"labels were written to {sorted(got)}"
    kps = got[frame]
    np.testing.assert_allclose(kps[confident], sug[confident], atol=0.006)  # the store keeps 2 decimals
    assert (kps[~confident, 2] == 0).all(), kps.tolist()
    assert AnnotationStore(vtest["store"]).read()["frames"][frame]["source"] == "pose-accepted"
    # Undo takes the whole accept back
    _settled(page)
    page.locator(".st-key-ann_undo_btn button").click()
    got = _wait_store(vtest["store"], lambda fs: fs == {})
    assert got == {}, f"Undo left {sorted(got)}"


def test_s_a_and_n_keys_work_after_a_click_on_the_frame(page: Page, server: str, vtest: dict):
    """The keys added with the suggestions and the label-next jump reach the page after a click."""
    import numpy as np

    from ssn3d.labels import progress as an

    # a frame where every part is suggested with confidence, so that accepting them finishes it
    k = next((i for i, kp in vtest["found"].items() if (kp[:, 2] == 2).all()), None)
    if k is None:
        pytest.skip("no frame among the first ones of vtest.avi has all nine parts confidently suggested")
    sug, frame, frames = vtest["found"][k], vtest["frames"][k], vtest["frames"]
    _open_vtest_frame(page, server, vtest, k)
    scale = _clickable_frame(page).bounding_box()["width"] / vtest["widths"][k]
    head = (float(sug[0, 0] + 2) * scale, float(sug[0, 1] + 2) * scale)  # the head corrected a little by hand
    _click_frame(page, *head)
    _wait_store(vtest["store"], lambda fs: frame in fs)
    _settled(page)
    page.keyboard.press("s")  # Suggest, with the focus where the click left it
    expect(page.get_by_text(re.compile(r"^Suggested: body \d\.\d\d"))).to_be_visible()  # head is labeled
    _settled(page)
    page.keyboard.press("a")  # Accept
    got = _wait_store(vtest["store"], lambda fs: frame in fs and an.is_labeled(fs[frame]))
    kps = got[frame]
    assert an.is_labeled(kps), f"A did not accept the suggestions: {kps.tolist()}"
    assert abs(kps[0, 0] - (head[0] + 0.5) / scale) <= 1 and abs(kps[0, 1] - (head[1] + 0.5) / scale) <= 1
    np.testing.assert_allclose(kps[1:], sug[1:], atol=0.006)
    # one more click on the finished frame (the body moved by hand), then N opens the next unlabeled frame
    _click_frame(page, float(sug[1, 0]) * scale, float(sug[1, 1] + 3) * scale)
    _wait_store(vtest["store"], lambda fs: abs(fs[frame][1, 1] - sug[1, 1]) > 1)
    _settled(page)
    want = an.next_unlabeled_frame(frames, k, _wait_store(vtest["store"], lambda fs: True))
    assert want is not None and want != k
    page.keyboard.press("n")
    expect(page.get_by_text(frames[want])).to_be_visible()
    _settled(page)
    assert f"frame={want}" in page.url


def test_attention_page_shows_the_grid(page: Page, server: str, tmp_path: Path):
    _open(page, server, "attention")
    expect(page.get_by_text("Rows:")).to_be_visible(timeout=60_000)
    grid = page.locator(".st-key-att_grid .js-plotly-plot").first
    expect(grid).to_be_visible()
    # the part names head the columns and the frame numbers label the rows
    expect(grid.locator(".xtick text", has_text="head")).to_have_count(1)
    expect(grid.locator(".ytick text", has_text="frame 0")).to_have_count(1)
    _shot(page, "attention", tmp_path)


def test_training_launched_from_the_form_shows_its_curve(page: Page, server: str, home: Path, tmp_path: Path):
    _open(page, server, "train")
    page.get_by_label("Run name").fill("browser")
    page.get_by_label("Max steps (0 = no cap)").fill("5")  # the tiny config logs every 5 steps
    page.get_by_label("P identities per batch").fill("2")
    page.get_by_label("K clips per identity").fill("2")
    page.get_by_label("T frames per clip").fill("2")
    page.get_by_label("Device").click()
    page.get_by_role("option", name="cpu").click()
    page.get_by_role("button", name="Launch").click()
    expect(page.get_by_text("Launched browser-")).to_be_visible(timeout=30_000)
    runs = [d for d in (home / "runs").iterdir() if d.name.startswith("browser-")]
    assert len(runs) == 1
    # a second click on the same form does not start a second run
    page.get_by_role("button", name="Launch").click()
    _settled(page)
    assert len([d for d in (home / "runs").iterdir() if d.name.startswith("browser-")]) == 1
    # the live curve (a fragment refreshing every 2 s) shows the run's first logged steps
    curve = page.locator(f".st-key-train_curve_{runs[0].name} .js-plotly-plot .scatterlayer .trace")
    expect(curve.first).to_be_attached(timeout=120_000)
    status = json.loads((runs[0] / "status.json").read_text())
    assert status["state"] in ("running", "done")
    # the screenshot shows what the launch brought: the run's live curve (below the form in the window)
    page.locator(f'.st-key-train_curve_{runs[0].name}[data-stale="false"]').first.scroll_into_view_if_needed()
    _settled(page)
    _shot(page, "train", tmp_path)


def test_screenshots_of_the_other_pages(page: Page, server: str, tmp_path: Path):
    _open(page, server, "")
    expect(page.get_by_text("Current dataset")).to_be_visible()
    expect(page.get_by_text("frames/tracklet")).to_be_visible()  # the dataset's summary table is drawn
    _shot(page, "data", tmp_path)
    _open(page, server, "retrieval")
    # the run's final evaluation (its eval.json) shows without evaluating again
    page.get_by_label("Model").click()
    page.get_by_role("option", name=re.compile(r"^aa-trained ")).first.click()
    _settled(page)
    expect(page.get_by_role("button", name="Evaluate again")).to_be_visible()
    expect(page.get_by_text("Rank-1", exact=True)).to_be_visible(timeout=60_000)
    if (REPO / "assets" / "demo_model.pt").is_file():
        # the model a newcomer finds first, the shipped demo model, is evaluated from the page
        page.get_by_label("Model").click()
        page.get_by_role("option", name=re.compile(r"^demo model")).click()
        _settled(page)
        page.get_by_role("button", name="Evaluate now").click()
        expect(page.get_by_role("button", name="Evaluate again")).to_be_visible(timeout=120_000)
        expect(page.get_by_text("Rank-1", exact=True)).to_be_visible(timeout=60_000)
    _settled(page)
    _shot(page, "retrieval", tmp_path)
    _open(page, server, "studies")
    # a quick study started from the page runs in the background; the page follows it and then shows it
    page.get_by_role("button", name="Run Random data (Fig. 5)").click()
    expect(page.get_by_text("running for")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("done", exact=False).filter(has_text="studies/random-quick")).to_be_visible(
        timeout=180_000
    )
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=30_000)  # its loss curves
    _settled(page)
    _shot(page, "studies", tmp_path)


def test_pages_fit_an_800_pixel_wide_window(browser, server: str):
    """At 800 px nothing of the Attention, Train or Retrieval page lies beyond the window's right edge."""
    context = browser.new_context(viewport={"width": 800, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        for path, ready in (("attention", "Rows:"), ("train", "Base config"), ("retrieval", "Model")):
            _open(page, server, path)
            expect(page.get_by_text(ready).first).to_be_visible(timeout=60_000)
            _settled(page)
            page.wait_for_timeout(500)  # plotly lays its figures out after the script run
            right = page.evaluate(
                """() => Math.max(0, ...[...document.querySelectorAll(
                        '[data-testid="stMain"] img, [data-testid="stMain"] .js-plotly-plot, '
                        + '[data-testid="stMain"] [data-testid="stElementContainer"]')]
                    .map(e => e.getBoundingClientRect()).filter(r => r.width > 0)
                    .map(r => Math.round(r.right)))"""
            )
            assert 0 < right <= 800, f"{path}: an element reaches x = {right} px"
            overflow = page.evaluate("() => document.documentElement.scrollWidth")
            assert overflow <= 800, f"{path}: the page scrolls sideways ({overflow} px)"
    finally:
        context.close()
