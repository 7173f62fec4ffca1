"""Articulated synthetic pedestrians: looks, a walking gait, and the drawing of one person.

The paper's SSN study (section "Study on SSN", "Pedestrian 128", Figure 4) and its ReID
experiments run on people whose parts move inside the detector's box. This module draws such
people from nothing (no external assets): a 3D stick-and-capsule body whose joints follow a
walking gait, seen from any yaw, projected orthographically and painted back to front with PIL.
``ssn3d.data.synth.scene`` places the person in a scene and crops it like a detector would.

Body units: the person stands on ``y = 0`` with ``y`` up, ``x`` towards the person's left and
``z`` the way they face; a person of height 1.0 has the head top at about ``y = 1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar

import numpy as np
from PIL import ImageDraw

RGB = tuple[int, int, int]
T = TypeVar("T")

# Clothing colours a shop would sell (RGB); each look varies them a little.
CLOTHES: tuple[RGB, ...] = (
    (30, 30, 35),
    (235, 235, 230),
    (40, 60, 120),
    (150, 30, 35),
    (35, 95, 55),
    (200, 160, 40),
    (120, 120, 125),
    (90, 60, 40),
    (200, 90, 40),
    (110, 50, 130),
    (60, 140, 170),
    (210, 120, 150),
    (170, 190, 90),
    (20, 40, 70),
    (180, 170, 140),
)
SKIN: tuple[RGB, ...] = ((250, 215, 190), (225, 180, 140), (190, 140, 100), (140, 95, 65), (95, 65, 45))
HAIR: tuple[RGB, ...] = (
    (20, 15, 10),
    (70, 45, 25),
    (130, 90, 50),
    (200, 170, 110),
    (150, 150, 150),
    (110, 35, 20),
)
PATTERNS = ("solid", "stripes", "two_tone", "logo")
BAGS = ("none", "backpack", "shoulder")
HAIR_STYLES = ("short", "long", "bald", "cap")
# Attributes a "sibling" identity may change while keeping the rest (see ``sibling_look``).
SIBLING_ATTRIBUTES = ("shoes", "bag", "pants", "hair", "logo")


@dataclass(frozen=True)
class Look:
    """How one identity looks: colours, clothes, accessories and proportions."""

    skin: RGB
    hair: RGB
    hair_style: str
    cap: RGB
    shirt: RGB
    shirt2: RGB  # second colour of stripes, two-tone tops and logos
    pattern: str
    long_sleeves: bool
    pants: RGB
    shorts: bool
    shoes: RGB
    bag: str
    bag_color: RGB
    bag_side: int  # +1: on the person's left, -1: right
    height: float  # relative body height
    width: float  # relative shoulder/hip width


def _vary(rng: np.random.Generator, color: RGB, amount: float = 18) -> RGB:
    c = np.clip(np.asarray(color, dtype=np.float64) + rng.normal(0, amount, 3), 0, 255)
    return tuple(int(v) for v in c)


def _pick(rng: np.random.Generator, options: tuple[T, ...], *, avoid: T | None = None) -> T:
    while True:
        out = options[int(rng.integers(len(options)))]
        if out != avoid:
            return out


def random_look(rng: np.random.Generator) -> Look:
    """A fresh identity."""
    shirt = _vary(rng, _pick(rng, CLOTHES))
    return Look(
        skin=_vary(rng, _pick(rng, SKIN), 8),
        hair=_vary(rng, _pick(rng, HAIR), 10),
        hair_style=str(_pick(rng, HAIR_STYLES)),
        cap=_vary(rng, _pick(rng, CLOTHES)),
        shirt=shirt,
        shirt2=_vary(rng, _pick(rng, CLOTHES, avoid=shirt)),
        pattern=str(_pick(rng, PATTERNS)),
        long_sleeves=bool(rng.random() < 0.5),
        pants=_vary(rng, _pick(rng, CLOTHES)),
        shorts=bool(rng.random() < 0.2),
        shoes=_vary(rng, _pick(rng, CLOTHES)),
        bag=str(_pick(rng, BAGS)),
        bag_color=_vary(rng, _pick(rng, CLOTHES)),
        bag_side=1 if rng.random() < 0.5 else -1,
        height=float(rng.uniform(0.93, 1.05)),
        width=float(rng.uniform(0.85, 1.2)),
    )


def sibling_look(rng: np.random.Generator, base: Look) -> tuple[Look, list[str]]:
    """A different identity that shares all but one or two attributes with ``base``.

    Returns:
        The new look and the names of the changed attributes (from ``SIBLING_ATTRIBUTES``).
    """
    k = 1 + int(rng.random() < 0.4)
    changed = sorted(rng.choice(len(SIBLING_ATTRIBUTES), size=k, replace=False).tolist())
    names = [SIBLING_ATTRIBUTES[i] for i in changed]
    look = base
    for name in names:
        if name == "shoes":
            look = replace(look, shoes=_vary(rng, _pick(rng, CLOTHES), 5))
            while _dist(look.shoes, base.shoes) < 90:
                look = replace(look, shoes=_vary(rng, _pick(rng, CLOTHES), 5))
        elif name == "bag":
            bag = str(_pick(rng, BAGS, avoid=base.bag))
            look = replace(look, bag=bag, bag_color=_vary(rng, _pick(rng, CLOTHES)))
        elif name == "pants":
            look = replace(look, pants=_vary(rng, _pick(rng, CLOTHES), 5))
            while _dist(look.pants, base.pants) < 90:
                look = replace(look, pants=_vary(rng, _pick(rng, CLOTHES), 5))
        elif name == "hair":
            look = replace(look, hair_style=str(_pick(rng, HAIR_STYLES, avoid=base.hair_style)))
        elif name == "logo":  # same shirt, a print on it (or a plain one instead of the print)
            look = replace(look, pattern="solid" if base.pattern == "logo" else "logo")
    return look, names


def _dist(a: RGB, b: RGB) -> float:
    return float(np.linalg.norm(np.subtract(a, b, dtype=np.float64)))


# ---------------------------------------------------------------------------- gait

# Joint names of the stick body; KEYPOINT_JOINTS maps ssn3d.keypoints.PARTS order onto them.
KEYPOINT_JOINTS = ("head", "body", "crotch", "l_elbow", "r_elbow", "l_knee", "r_knee", "l_foot", "r_foot")


def walking_pose(phase: float, look: Look, stride: float = 0.45) -> dict[str, np.ndarray]:
    """3D joints of a walker at gait ``phase`` (radians; one step cycle is 2 pi).

    Legs swing in the walking direction (z), arms swing against the legs, the pelvis bobs, and the
    lower foot touches the ground.

    Returns:
        {joint: (3,) xyz in body units}.
    """
    h, w = look.height, look.width
    s = math.sin(phase)
    j: dict[str, np.ndarray] = {}
    pelvis_y = 0.53 * h + 0.008 * math.cos(2 * phase)
    thigh, shin, upper, fore = 0.25 * h, 0.245 * h, 0.165 * h, 0.15 * h
    for side, sign in (("l", 1.0), ("r", -1.0)):
        swing = sign * stride * s  # hip flexion; positive = leg forward
        # the knee bends most while the leg swings forward (phase where swing increases)
        bend = 0.08 + 0.55 * max(0.0, sign * math.cos(phase))
        hip = np.array([sign * 0.085 * w, pelvis_y, 0.0])
        knee = hip + thigh * np.array([0.0, -math.cos(swing), math.sin(swing)])
        ankle = knee + shin * np.array([0.0, -math.cos(swing - bend), math.sin(swing - bend)])
        j[f"{side}_hip"], j[f"{side}_knee"], j[f"{side}_ankle"] = hip, knee, ankle
        j[f"{side}_foot"] = ankle + np.array([0.0, -0.015, 0.035])
        arm = -0.6 * swing  # the arm swings against the leg on its side
        shoulder = np.array([sign * 0.135 * w, 0.815 * h, 0.0])
        elbow = shoulder + upper * np.array([sign * 0.2, -math.cos(arm), math.sin(arm)])
        wrist = elbow + fore * np.array([sign * 0.05, -math.cos(arm + 0.35), math.sin(arm + 0.35)])
        j[f"{side}_shoulder"], j[f"{side}_elbow"], j[f"{side}_wrist"] = shoulder, elbow, wrist
    lift = min(j["l_foot"][1], j["r_foot"][1]) - 0.02 * h
    for k in j:
        j[k] = j[k] - np.array([0.0, lift, 0.0])
    pelvis = 0.5 * (j["l_hip"] + j["r_hip"])
    shoulders = 0.5 * (j["l_shoulder"] + j["r_shoulder"])
    j["neck"] = shoulders + np.array([0.0, 0.035 * h, 0.0])
    j["head"] = shoulders + np.array([0.0, 0.115 * h, 0.01])
    j["body"] = shoulders + 0.4 * (pelvis - shoulders)  # the chest: the torso's upper middle
    j["crotch"] = pelvis - np.array([0.0, 0.035 * h, 0.0])
    return j


def project(joints: dict[str, np.ndarray], yaw: float) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Orthographic view of a body turned by ``yaw`` (0: facing the camera, pi/2: walking right).

    Returns:
        {joint: (2,) image-plane (x right, y up) in body units} and {joint: depth, larger = nearer}.
    """
    c, s = math.cos(yaw), math.sin(yaw)
    xy = {k: np.array([v[0] * c + v[2] * s, v[1]]) for k, v in joints.items()}
    depth = {k: float(v[2] * c - v[0] * s) for k, v in joints.items()}
    return xy, depth


# ---------------------------------------------------------------------------- drawing


class Painter:
    """Draws body-unit shapes onto a PIL image through ``px = (x - x0) * scale, py = (y0 - y) * scale``."""

    def __init__(self, draw: ImageDraw.ImageDraw, x0: float, y0: float, scale: float) -> None:
        self.draw, self.x0, self.y0, self.scale = draw, x0, y0, scale

    def pt(self, p: np.ndarray) -> tuple[float, float]:
        return ((p[0] - self.x0) * self.scale, (self.y0 - p[1]) * self.scale)

    def capsule(self, a: np.ndarray, b: np.ndarray, width: float, color: RGB) -> None:
        pa, pb, r = self.pt(a), self.pt(b), 0.5 * width * self.scale
        self.draw.line([pa, pb], fill=color, width=max(1, round(2 * r)))
        for x, y in (pa, pb):
            self.draw.ellipse([x - r, y - r, x + r, y + r], fill=color)

    def ellipse(self, c: np.ndarray, rx: float, ry: float, color: RGB) -> None:
        x, y = self.pt(c)
        self.draw.ellipse(
            [x - rx * self.scale, y - ry * self.scale, x + rx * self.scale, y + ry * self.scale], fill=color
        )

    def polygon(self, pts: list[np.ndarray], color: RGB) -> None:
        self.draw.polygon([self.pt(p) for p in pts], fill=color)


def _torso_outline(
    xy: dict[str, np.ndarray], yaw: float, look: Look
) -> tuple[float, float, float, float, float, float]:
    """(center x at shoulders, half width there, y there, and the same at the hips) of the torso."""
    c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
    top = 0.5 * (xy["l_shoulder"] + xy["r_shoulder"])
    bottom = 0.5 * (xy["l_hip"] + xy["r_hip"])
    half_top = 0.12 * look.width * c + 0.07 * s
    half_bottom = 0.095 * look.width * c + 0.065 * s
    return (
        float(top[0]),
        half_top,
        float(top[1]) + 0.02,
        float(bottom[0]),
        half_bottom,
        float(bottom[1]) - 0.03,
    )


def _band(outline: tuple[float, ...], t0: float, t1: float) -> list[np.ndarray]:
    """The torso's quadrilateral between fractions t0 and t1 (0 = shoulders, 1 = hips)."""
    xt, ht, yt, xb, hb, yb = outline

    def at(t: float) -> tuple[float, float, float]:
        return xt + t * (xb - xt), ht + t * (hb - ht), yt + t * (yb - yt)

    (x0, h0, y0), (x1, h1, y1) = at(t0), at(t1)
    return [np.array(p) for p in ((x0 - h0, y0), (x0 + h0, y0), (x1 + h1, y1), (x1 - h1, y1))]


def _arm(painter: Painter, look: Look, sh: np.ndarray, el: np.ndarray, wr: np.ndarray) -> None:
    painter.capsule(sh, el, 0.05, look.shirt)
    painter.capsule(el, wr, 0.042, look.shirt if look.long_sleeves else look.skin)
    painter.ellipse(wr, 0.024, 0.024, look.skin)


def _leg(
    painter: Painter, look: Look, s: float, hip: np.ndarray, kn: np.ndarray, an: np.ndarray, ft: np.ndarray
) -> None:
    painter.capsule(hip, kn, 0.078, look.pants)
    painter.capsule(kn, an, 0.06, look.skin if look.shorts else look.pants)
    painter.ellipse(ft + np.array([0.02 * s, 0.0]), 0.03 + 0.025 * abs(s), 0.026, look.shoes)


def _torso(
    painter: Painter, xy: dict[str, np.ndarray], look: Look, outline: tuple[float, ...], c: float, s: float
) -> None:
    painter.capsule(xy["neck"], xy["neck"] - np.array([0.0, 0.04]), 0.05, look.skin)
    painter.polygon(_band(outline, 0.0, 1.0), look.shirt)
    if look.pattern == "stripes":
        for t in np.arange(0.08, 0.95, 0.18):
            painter.polygon(_band(outline, float(t), float(t) + 0.08), look.shirt2)
    elif look.pattern == "two_tone":
        painter.polygon(_band(outline, 0.0, 0.38), look.shirt2)
    elif look.pattern == "logo" and c > 0.2:  # a chest print, seen from the front only
        painter.ellipse(xy["body"] + np.array([0.015 * s, 0.02]), 0.045 * c, 0.04, look.shirt2)
    painter.polygon(_band(outline, 0.93, 1.0), look.pants)  # waistband


def _head(painter: Painter, hc: np.ndarray, look: Look, c: float, s: float) -> None:
    r = 0.062 * look.height
    if look.hair_style == "long":
        painter.polygon(
            [
                hc + np.array([-0.07, 0.0]),
                hc + np.array([0.07, 0.0]),
                hc + np.array([0.06 - 0.03 * s, -0.13]),
                hc + np.array([-0.06 - 0.03 * s, -0.13]),
            ],
            look.hair,
        )
    painter.ellipse(hc, r * 0.92, r, look.hair if look.hair_style != "bald" else look.skin)
    face = 0.5 + 0.5 * c  # how much of the face is seen
    if face > 0.15:
        painter.ellipse(
            hc + np.array([0.45 * r * s, -0.18 * r]), 0.8 * r * (0.4 + 0.6 * face), 0.78 * r, look.skin
        )
    if c > 0.3:
        for e in (-1, 1):
            painter.ellipse(
                hc + np.array([0.32 * r * s + e * 0.35 * r * c, -0.1 * r]), 0.1 * r, 0.1 * r, (30, 25, 25)
            )
    if look.hair_style == "cap":
        painter.ellipse(hc + np.array([0.0, 0.45 * r]), r * 0.98, 0.55 * r, look.cap)
        painter.ellipse(hc + np.array([0.7 * r * s, 0.35 * r]), r * (0.3 + 0.5 * abs(s)), 0.18 * r, look.cap)


def _backpack(
    painter: Painter, xy: dict[str, np.ndarray], look: Look, outline: tuple[float, ...], c: float, s: float
) -> None:
    if c < -0.3:  # seen from behind: the pack covers the back
        painter.polygon(_band(outline, 0.1, 0.72), look.bag_color)
    else:  # from the side it sticks out behind the back
        centre = 0.5 * (xy["body"] + xy["crotch"]) + np.array([-0.08 * s, 0.05])
        painter.ellipse(centre, 0.05 + 0.02 * abs(s), 0.13, look.bag_color)


def _shoulder_bag(painter: Painter, strap_from: np.ndarray, centre: np.ndarray, look: Look) -> None:
    painter.capsule(strap_from, centre + np.array([0.0, 0.06]), 0.018, look.bag_color)
    corners = ((-0.06, 0.06), (0.06, 0.06), (0.055, -0.06), (-0.055, -0.06))
    painter.polygon([centre + np.array(p) for p in corners], look.bag_color)


def _pieces(
    painter: Painter, xy: dict[str, np.ndarray], depth: dict[str, float], look: Look, yaw: float
) -> list[tuple[float, Callable[[], None]]]:
    """Every piece of the person as (depth, draw), in a fixed order that breaks depth ties."""
    c, s = math.cos(yaw), math.sin(yaw)
    items: list[tuple[float, Callable[[], None]]] = []
    for side in ("l", "r"):
        sh, el, wr = xy[f"{side}_shoulder"], xy[f"{side}_elbow"], xy[f"{side}_wrist"]
        hip, kn, an, ft = xy[f"{side}_hip"], xy[f"{side}_knee"], xy[f"{side}_ankle"], xy[f"{side}_foot"]
        # arms hang beside the torso: in front of it unless they are on its far side
        d_arm = np.mean([depth[f"{side}_{k}"] for k in ("shoulder", "elbow", "wrist")]) + 0.03
        d_leg = np.mean([depth[f"{side}_{k}"] for k in ("hip", "knee", "ankle")])
        items.append((d_arm, partial(_arm, painter, look, sh, el, wr)))
        items.append((d_leg, partial(_leg, painter, look, s, hip, kn, an, ft)))
    outline = _torso_outline(xy, yaw, look)
    items.append((depth["body"], partial(_torso, painter, xy, look, outline, c, s)))
    items.append((depth["head"] + 0.01, partial(_head, painter, xy["head"], look, c, s)))
    if look.bag == "backpack":
        items.append((depth["body"] - 0.09 * c, partial(_backpack, painter, xy, look, outline, c, s)))
    elif look.bag == "shoulder":
        side, other = ("l", "r") if look.bag_side > 0 else ("r", "l")
        outward = float(np.sign(xy[f"{side}_hip"][0] - xy[f"{other}_hip"][0]))
        centre = xy[f"{side}_hip"] + np.array([0.05 * outward, 0.02])
        items.append(
            (
                depth[f"{side}_hip"] + 0.07,
                partial(_shoulder_bag, painter, xy[f"{other}_shoulder"], centre, look),
            )
        )
    return items


def draw_person(painter: Painter, joints: dict[str, np.ndarray], look: Look, yaw: float) -> None:
    """Paint one person, farthest pieces first (painter's algorithm)."""
    xy, depth = project(joints, yaw)
    items = _pieces(painter, xy, depth, look, yaw)
    order = sorted(range(len(items)), key=lambda i: (items[i][0], i))
    for i in order:
        items[i][1]()


def keypoints_xy(joints: dict[str, np.ndarray], yaw: float) -> np.ndarray:
    """The 9 keypoints (``ssn3d.keypoints.PARTS`` order) on the image plane, (9, 2) body units, y up."""
    xy, _ = project(joints, yaw)
    return np.stack([xy[k] for k in KEYPOINT_JOINTS])
