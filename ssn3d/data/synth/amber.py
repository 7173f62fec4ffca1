"""Amber-Abstract-style paintings with planted motifs whose places are known.

Paper, "Study on SSN / Amber Abstract" (Figure 6): 128 digital abstract-expressionist paintings
"inspired by the shapes and colors of amber", 480 x 640, resized to 120 x 160; unsupervised SSN
"spots similar parts between different paintings": type 1 "a light blue protuberance", type 2 "an
orange diamond above a blue stripe", type 3 "a small deep blue block". The authors planted
nothing on purpose; here those three motifs are planted at random places in known subsets of the
paintings, so that "the part finds the same motif across paintings" becomes a number. Everything
else is painted from an amber palette without blue, at random, so nothing else repeats on purpose.

Writes ``OUT/<index 0000...>.jpg`` and ``OUT/motifs.json``::

    {"generator": "ssn3d.synth.amber", "size": [480, 640], "motifs": {"protuberance": {...}, ...},
     "paintings": {"0000.jpg": [{"motif": "block", "box": [x0, y0, x1, y1]}, ...], ...}, ...}

Boxes are in painting pixels (x right, y down; x1, y1 exclusive).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from ssn3d.data.synth.walkers import SynthError, _prepare
from ssn3d.io import atomic_write_json

_logger = logging.getLogger(__name__)

AMBER: tuple[tuple[int, int, int], ...] = (
    (255, 191, 0),
    (255, 140, 20),
    (200, 100, 15),
    (130, 60, 15),
    (70, 30, 8),
    (250, 225, 160),
    (235, 170, 70),
    (180, 120, 50),
    (255, 215, 110),
    (110, 45, 25),
)
# The planted motifs: name -> (description, share of paintings carrying it, size w x h at 480 x 640).
MOTIFS: dict[str, tuple[str, float, tuple[int, int]]] = {
    "protuberance": ("a light blue protuberance (paper Fig. 6, type 1)", 1 / 3, (96, 72)),
    "diamond_stripe": ("an orange diamond above a blue stripe (type 2)", 1 / 3, (96, 96)),
    "block": ("a small deep blue block (type 3)", 1 / 3, (48, 48)),
}
LIGHT_BLUE, STRIPE_BLUE, DEEP_BLUE, ORANGE = (150, 205, 245), (40, 90, 200), (15, 30, 125), (255, 110, 0)


def _stroke(rng: np.random.Generator, w: int, h: int) -> list[tuple[float, float]]:
    """A brush path: a random walk with momentum."""
    x, y = rng.uniform(-0.1 * w, 1.1 * w), rng.uniform(-0.1 * h, 1.1 * h)
    angle, step = rng.uniform(0, 2 * math.pi), rng.uniform(8, 30)
    pts = [(x, y)]
    for _ in range(int(rng.integers(4, 24))):
        angle += rng.normal(0, 0.45)
        x, y = x + step * math.cos(angle), y + step * math.sin(angle)
        pts.append((x, y))
    return pts


def _amber(rng: np.random.Generator, jitter: float = 18) -> tuple[int, int, int]:
    c = np.asarray(AMBER[int(rng.integers(len(AMBER)))], dtype=np.float64)
    c = c + rng.normal(0, jitter, 3) * np.array([1.0, 0.8, 0.4])  # vary warmth more than blueness
    c[2] = min(c[2], 0.75 * c[0])  # keep it amber: blue never above three quarters of red
    return tuple(int(v) for v in np.clip(c, 0, 255))


def paint_abstract(rng: np.random.Generator, size: tuple[int, int] = (480, 640)) -> Image.Image:
    """One painting in the amber palette: colour fields, brush strokes, drips, splatters, grain."""
    h, w = size
    a, b = np.asarray(_amber(rng), dtype=np.float32), np.asarray(_amber(rng), dtype=np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = ((xx / w - 0.5) * math.cos(theta) + (yy / h - 0.5) * math.sin(theta) + 0.75) / 1.5
    img = Image.fromarray((a * (1 - t[..., None]) + b * t[..., None]).clip(0, 255).astype(np.uint8))
    fields = Image.new("RGBA", (w, h))
    fd = ImageDraw.Draw(fields)
    for _ in range(int(rng.integers(3, 7))):  # big soft colour fields
        cx, cy, rx, ry = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(60, 260), rng.uniform(40, 200)
        fd.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=(*_amber(rng), int(rng.integers(90, 200))))
    img = Image.alpha_composite(img.convert("RGBA"), fields.filter(ImageFilter.GaussianBlur(25)))
    for _ in range(3):  # three layers of strokes, each with its own opacity
        layer = Image.new("RGBA", (w, h))
        d = ImageDraw.Draw(layer)
        for _ in range(int(rng.integers(6, 20))):
            d.line(
                _stroke(rng, w, h), fill=(*_amber(rng), 255), width=int(rng.integers(4, 40)), joint="curve"
            )
        for _ in range(int(rng.integers(0, 8))):  # drips
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            d.line(
                [(x, y), (x + rng.normal(0, 3), y + rng.uniform(20, 120))], fill=(*_amber(rng), 255), width=3
            )
        alpha = int(rng.integers(120, 240))
        layer.putalpha(layer.getchannel("A").point(lambda v, a=alpha: v * a // 255))
        img = Image.alpha_composite(img, layer)
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(20, 120))):  # splatters
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(1, 5)
        d.ellipse([x - r, y - r, x + r, y + r], fill=(*_amber(rng), 255))
    arr = np.asarray(img.convert("RGB"), dtype=np.float32)
    coarse = Image.fromarray(rng.normal(128, 40, (h // 8, w // 8)).clip(0, 255).astype(np.uint8))
    grain = np.asarray(coarse.resize((w, h), Image.BICUBIC), dtype=np.float32)
    arr *= (0.92 + 0.16 * grain / 255.0)[..., None]  # canvas texture
    arr += rng.normal(0, 3, arr.shape).astype(np.float32)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def draw_motif(img: Image.Image, name: str, box: tuple[int, int, int, int]) -> None:
    """Paint motif ``name`` filling ``box`` (x0, y0, x1, y1)."""
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if name == "protuberance":  # a dome on a short stalk, bulging to the left
        d.ellipse([x0, y0, x1 - 1, y0 + 0.8 * h], fill=LIGHT_BLUE)
        d.polygon(
            [
                (x0 + 0.35 * w, y0 + 0.6 * h),
                (x0 + 0.65 * w, y0 + 0.6 * h),
                (x0 + 0.6 * w, y1 - 1),
                (x0 + 0.4 * w, y1 - 1),
            ],
            fill=LIGHT_BLUE,
        )
        d.ellipse([x0, y0 + 0.25 * h, x0 + 0.35 * w, y0 + 0.55 * h], fill=(185, 225, 250))
    elif name == "diamond_stripe":  # an orange diamond above a blue stripe
        cx = x0 + w / 2
        d.polygon(
            [(cx, y0), (x1 - 1 - 0.2 * w, y0 + 0.33 * h), (cx, y0 + 0.66 * h), (x0 + 0.2 * w, y0 + 0.33 * h)],
            fill=ORANGE,
        )
        d.rectangle([x0, y0 + 0.76 * h, x1 - 1, y1 - 1], fill=STRIPE_BLUE)
    elif name == "block":
        d.rectangle([x0, y0, x1 - 1, y1 - 1], fill=DEEP_BLUE)
    else:
        raise SynthError(f"unknown motif {name!r}; the motifs are {', '.join(MOTIFS)}.")


def _overlaps(a: tuple[int, ...], b: tuple[int, ...], gap: int = 8) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


# Long on purpose: one painting loop whose random draws must keep their order (a seed decides every painting).
def generate_amber(
    out_dir: str | Path,
    *,
    count: int = 128,
    seed: int = 0,
    size: tuple[int, int] = (480, 640),
    progress: bool = False,
    callback: Callable[[int, int], None] | None = None,
) -> Path:
    """Paint ``count`` amber paintings, plant the motifs in known subsets, write ``motifs.json``.

    Each motif goes into its own random third of the paintings (independently, so some paintings
    carry two or three and about 30% none), at a random place that overlaps no other motif, at
    90-110% of its nominal size (scaled with ``size``).

    Args:
        out_dir: a new or empty folder, or an earlier output of this generator (replaced).
        count: paintings (paper: 128).
        seed: decides everything.
        size: (height, width) of a painting (paper: 480 x 640).
        progress: show a tqdm bar.
        callback: ``callback(done, total)`` after each painting.

    Returns:
        ``out_dir``.
    """
    if not isinstance(seed, int) or seed < 0 or count < 1:
        raise SynthError(f"need count >= 1 and a seed >= 0, got count={count}, seed={seed!r}.")
    h, w = (int(v) for v in size)
    if h < 64 or w < 64:
        raise SynthError(f"size {h}x{w} is too small for the motifs; use at least 64x64 (height x width).")
    out = _prepare(out_dir, ("motifs.json", "dataset.json"))
    for stale in out.glob("[0-9][0-9][0-9][0-9].jpg"):  # an earlier painting set in this folder
        stale.unlink()
    scale = min(h / 480, w / 640)
    carriers = {
        name: set(
            np.random.default_rng([seed, 7, k])
            .choice(count, size=round(share * count), replace=False)
            .tolist()
        )
        for k, (name, (_, share, _)) in enumerate(MOTIFS.items())
    }
    paintings: dict[str, list[dict]] = {}
    for i in tqdm(range(count), desc="amber", unit="painting", disable=not progress):
        rng = np.random.default_rng([seed, 6, i])
        img = paint_abstract(rng, (h, w))
        placed: list[dict] = []
        for name, (_, _, (mw, mh)) in MOTIFS.items():
            if i not in carriers[name]:
                continue
            f = rng.uniform(0.9, 1.1) * scale
            bw, bh = max(4, round(mw * f)), max(4, round(mh * f))
            for _ in range(100):
                x0, y0 = int(rng.integers(8, w - bw - 8)), int(rng.integers(8, h - bh - 8))
                box = (x0, y0, x0 + bw, y0 + bh)
                if not any(_overlaps(box, tuple(p["box"])) for p in placed):
                    break
            draw_motif(img, name, box)
            placed.append({"motif": name, "box": list(box)})
        fname = f"{i:04d}.jpg"
        img.save(out / fname, quality=93)
        paintings[fname] = placed
        if callback:
            callback(i + 1, count)
    motifs = {
        name: {"description": d, "paintings": len(carriers[name])} for name, (d, _, _) in MOTIFS.items()
    }
    meta = {"generator": "ssn3d.synth.amber", "version": 1, "size": [h, w], "seed": seed, "count": count}
    atomic_write_json(out / "motifs.json", {**meta, "motifs": motifs, "paintings": paintings})
    atomic_write_json(out / "dataset.json", meta)
    _logger.info("Painted %d paintings into %s", count, out)
    return out
