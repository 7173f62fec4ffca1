"""Cameras, scenes and a detector's crop: the misalignment SSN is built to undo.

Paper, Introduction: "due to the imperfect person detection algorithm, the locations where a
person appears in the bounding boxes are inconsistent". A tracklet here is one walker crossing one
camera's scene; every frame is cropped by a simulated detector whose box jitters in position and
scale, now and then cuts off the head, the feet or a side, and sometimes has a pole, a low wall or
a sign board in front of the person. Each camera has its own look (light, colour cast, blur, noise,
resolution, background palette) and its own usual viewing direction.

Ground-truth keypoints follow the person through the crop: ``v = 2`` inside the frame and not
covered by an occluder, ``v = 1`` otherwise, with the point clamped onto the frame's border (it is
still labeled; the label store keeps coordinates inside the picture). Self-occlusion (the far arm
behind the torso) is not marked: the part is still where the labeler would put it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ssn3d.data.synth.render import RGB, Look, Painter, draw_person, keypoints_xy, walking_pose
from ssn3d.keypoints import NOT_VISIBLE, VISIBLE

SUPERSAMPLE = 2  # people are drawn at 2x and box-filtered down: anti-aliased edges at little cost
# Background palettes: a scene is painted from one of them (wall/sky, floor, details).
PALETTES: tuple[tuple[RGB, ...], ...] = (
    ((190, 185, 170), (120, 115, 110), (150, 90, 60), (90, 100, 120), (210, 200, 160)),  # street
    ((160, 190, 210), (100, 110, 90), (70, 120, 60), (140, 140, 130), (200, 200, 190)),  # park
    ((220, 215, 205), (170, 160, 150), (120, 130, 150), (180, 60, 50), (90, 90, 95)),  # mall
    ((95, 95, 105), (60, 60, 65), (140, 120, 80), (40, 70, 100), (170, 170, 175)),  # station at night
)


@dataclass(frozen=True)
class Camera:
    """One camera's look and viewpoint."""

    gain: float  # overall light
    cast: tuple[float, float, float]  # per-channel colour cast
    blur: float  # Gaussian blur radius in output pixels
    noise: float  # sensor noise (std, 0-255 scale)
    resolution: float  # < 1: the camera sees fewer pixels than the crop has (upsampled softness)
    yaw: float  # the usual walking direction relative to this camera (radians, 0: towards it)
    person_frac: float  # how much of the box height the detector gives the person
    palette: int  # index into PALETTES


def random_camera(rng: np.random.Generator, index: int) -> Camera:
    """A camera whose look differs from its neighbours'; ``index`` spreads their viewpoints."""
    return Camera(
        gain=float(rng.uniform(0.75, 1.2)),
        cast=tuple(float(v) for v in rng.uniform(0.86, 1.14, 3)),
        blur=float(rng.uniform(0.0, 0.9)),
        noise=float(rng.uniform(1.5, 6.0)),
        resolution=float(rng.uniform(0.6, 1.0)),
        yaw=float(index * math.pi * 0.62 + rng.uniform(-0.3, 0.3)),
        person_frac=float(rng.uniform(0.78, 0.9)),
        palette=int(rng.integers(len(PALETTES))),
    )


@dataclass(frozen=True)
class Occluder:
    """A rectangle in world (body) units in front of the walker."""

    x0: float
    x1: float
    y0: float
    y1: float
    color: RGB

    def covers(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) world points -> (...) bool."""
        return (
            (xy[..., 0] >= self.x0)
            & (xy[..., 0] <= self.x1)
            & (xy[..., 1] >= self.y0)
            & (xy[..., 1] <= self.y1)
        )


def _color(rng: np.random.Generator, palette: tuple[RGB, ...], amount: float = 14) -> RGB:
    c = np.asarray(palette[int(rng.integers(len(palette)))], dtype=np.float64) + rng.normal(0, amount, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def paint_background(
    rng: np.random.Generator, palette: tuple[RGB, ...], extent: tuple[float, float, float, float], ppu: float
) -> Image.Image:
    """A wall-and-floor scene over world ``extent = (x0, x1, y0, y1)`` at ``ppu`` pixels per unit."""
    x0, x1, y0, y1 = extent
    w, h = max(2, int(math.ceil((x1 - x0) * ppu))), max(2, int(math.ceil((y1 - y0) * ppu)))
    img = Image.new("RGB", (w, h), _color(rng, palette))
    d = ImageDraw.Draw(img)
    horizon = float(rng.uniform(0.25, 1.1))  # where the floor meets the wall, world y
    hy = (y1 - horizon) * ppu
    for _ in range(int(rng.integers(3, 8))):  # windows, doors, shop fronts, posters
        bx = rng.uniform(0, w)
        bw, bh = rng.uniform(0.1, 0.6) * ppu, rng.uniform(0.15, 0.9) * ppu
        by = rng.uniform(0, max(1.0, hy - bh * 0.3))
        d.rectangle([bx, by, bx + bw, by + bh], fill=_color(rng, palette, 22))
    floor = _color(rng, palette)
    d.rectangle([0, hy, w, h], fill=floor)
    line = tuple(int(v * 0.82) for v in floor)
    for k in range(1, 12):  # paving lines, denser towards the horizon
        yy = hy + (h - hy) * (k / 12) ** 1.6
        d.line([0, yy, w, yy], fill=line, width=1)
    arr = np.asarray(img, dtype=np.float32)
    shade = np.linspace(1.06, 0.94, h, dtype=np.float32)[:, None, None]  # soft light falloff
    return Image.fromarray(np.clip(arr * shade, 0, 255).astype(np.uint8))


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # (H, W, 3) uint8
    keypoints: np.ndarray  # (9, 3) float32: x, y in output pixels, v in {1, 2}
    box: tuple[float, float, float, float]  # the detector box in world units: left, top, width, height
    cut: str  # "" or which side the detector cut off: top, bottom, side


def _boxes(
    rng: np.random.Generator, centres: np.ndarray, look: Look, camera: Camera, aspect: float, cut_prob: float
) -> tuple[np.ndarray, list[str]]:
    """Detector boxes (left, top, width, height) around walker centres (F, 2), with jitter and cuts."""
    n = len(centres)
    bias = rng.normal(0, 0.03, 2)  # this tracklet's detector is a little off throughout
    height = look.height / camera.person_frac * np.exp(rng.normal(0, 0.06, n))
    width = height * aspect
    cx = centres[:, 0] + (bias[0] + rng.normal(0, 0.05, n)) * width
    cy = centres[:, 1] + (bias[1] + rng.normal(0, 0.035, n)) * height
    cuts = []
    for i in range(n):
        kind = "" if rng.random() >= cut_prob else str(rng.choice(["top", "bottom", "side"]))
        amount = rng.uniform(0.12, 0.22)
        if kind == "top":
            cy[i] -= amount * height[i]  # the box slides down: the head leaves it
        elif kind == "bottom":
            cy[i] += amount * height[i]
        elif kind == "side":
            cx[i] += (1 if rng.random() < 0.5 else -1) * 1.6 * amount * width[i]
        cuts.append(kind)
    return np.stack([cx - width / 2, cy + height / 2, width, height], 1), cuts


def _occluders(
    rng: np.random.Generator, palette: tuple[RGB, ...], xs: np.ndarray, prob: float
) -> list[Occluder]:
    if rng.random() >= prob:
        return []
    kind = str(rng.choice(["pole", "low", "sign"]))
    x = float(xs[int(rng.integers(len(xs)))] + rng.normal(0, 0.12))  # somewhere on the walker's path
    color = _color(rng, palette, 30)
    if kind == "pole":
        w = rng.uniform(0.05, 0.12)
        return [Occluder(x - w / 2, x + w / 2, -1.0, 3.0, color)]
    if kind == "low":  # a bench, a hedge, a car bonnet
        w, top = rng.uniform(0.6, 1.6), rng.uniform(0.22, 0.5)
        return [Occluder(x - w / 2, x + w / 2, -1.0, top, color)]
    w, y = rng.uniform(0.18, 0.35), rng.uniform(0.45, 0.9)  # a board someone carries past
    return [Occluder(x - w / 2, x + w / 2, y, y + rng.uniform(0.15, 0.3), color)]


def camera_look(img: Image.Image, camera: Camera, rng: np.random.Generator) -> np.ndarray:
    """Apply the camera's resolution, blur, light, colour cast and noise: PIL image -> (H, W, 3) uint8."""
    w, h = img.size
    if camera.resolution < 0.98:
        small = (max(4, round(w * camera.resolution)), max(4, round(h * camera.resolution)))
        img = img.resize(small, Image.BILINEAR).resize((w, h), Image.BILINEAR)
    if camera.blur > 0.2:
        img = img.filter(ImageFilter.GaussianBlur(camera.blur))
    arr = np.asarray(img, dtype=np.float32) * (camera.gain * np.asarray(camera.cast, dtype=np.float32))
    arr += rng.normal(0.0, camera.noise, arr.shape).astype(np.float32)
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


# Long on purpose: one frame loop whose random draws must keep their order (the output is hash-pinned).
def walk_tracklet(
    rng: np.random.Generator,
    look: Look,
    camera: Camera,
    *,
    frames: int,
    size: tuple[int, int],
    cut_prob: float = 0.1,
    occluder_prob: float = 0.35,
) -> Iterator[Frame]:
    """Frames of one walker crossing one camera's scene, each cropped by a jittery detector.

    Args:
        rng: this tracklet's random generator (its seed decides everything here).
        look: who walks.
        camera: whose scene and look.
        frames: F.
        size: (height, width) of the output frames.
        cut_prob: chance per frame that the box cuts off the head, the feet or a side.
        occluder_prob: chance that something stands between the camera and the walker.

    Yields:
        ``Frame`` objects, in time order.
    """
    out_h, out_w = size
    # sensor noise draws its own stream: how many values it takes depends on the size, the geometry must not
    pixel_rng = np.random.default_rng(rng.integers(2**63))
    yaw = camera.yaw + float(rng.normal(0, 0.35)) + (math.pi if rng.random() < 0.5 else 0.0)
    phase0, dphase = float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0.32, 0.5))
    speed = 0.055 * dphase / 0.4
    t = np.arange(frames)
    xs = t * speed * math.sin(yaw)
    centres = np.stack([xs, np.full(frames, 0.5 * look.height)], 1)
    boxes, cuts = _boxes(rng, centres, look, camera, out_w / out_h, cut_prob)
    palette = PALETTES[camera.palette]
    occluders = _occluders(rng, palette, xs, occluder_prob)
    ppu = SUPERSAMPLE * out_h / float(boxes[:, 3].min())
    margin = 0.05
    extent = (
        float(boxes[:, 0].min() - margin),
        float((boxes[:, 0] + boxes[:, 2]).max() + margin),
        float((boxes[:, 1] - boxes[:, 3]).min() - margin),
        float(boxes[:, 1].max() + margin),
    )
    background = paint_background(rng, palette, extent, ppu)
    rw, rh = SUPERSAMPLE * out_w, SUPERSAMPLE * out_h
    for i in range(frames):
        left, top, bw, bh = (float(v) for v in boxes[i])
        crop = (
            (left - extent[0]) * ppu,
            (extent[3] - top) * ppu,
            (left + bw - extent[0]) * ppu,
            (extent[3] - top + bh) * ppu,
        )
        canvas = background.resize((rw, rh), Image.BILINEAR, box=crop)
        draw = ImageDraw.Draw(canvas)
        joints = walking_pose(phase0 + i * dphase, look)  # body units, around the walker's own origin
        frame_yaw = yaw + float(rng.normal(0, 0.04))
        draw_person(Painter(draw, left - xs[i], top, rh / bh), joints, look, frame_yaw)
        world = keypoints_xy(joints, frame_yaw) + np.array([xs[i], 0.0])  # (9, 2) world units, y up
        covered = np.zeros(len(world), dtype=bool)
        scene_painter = Painter(draw, left, top, rh / bh)
        for occ in occluders:
            corners = ((occ.x0, occ.y1), (occ.x1, occ.y1), (occ.x1, occ.y0), (occ.x0, occ.y0))
            scene_painter.polygon([np.array(p) for p in corners], occ.color)
            covered |= occ.covers(world)
        image = camera_look(canvas.resize((out_w, out_h), Image.BOX), camera, pixel_rng)
        kps = np.zeros((len(world), 3), dtype=np.float32)
        kps[:, 0] = (world[:, 0] - left) * out_w / bw
        kps[:, 1] = (top - world[:, 1]) * out_h / bh
        inside = (kps[:, 0] >= 0) & (kps[:, 0] < out_w) & (kps[:, 1] >= 0) & (kps[:, 1] < out_h)
        kps[:, 2] = np.where(inside & ~covered, VISIBLE, NOT_VISIBLE)
        kps[:, 0] = np.clip(kps[:, 0], 0, out_w)
        kps[:, 1] = np.clip(kps[:, 1], 0, out_h)
        yield Frame(image, kps, (left, top, bw, bh), cuts[i])
