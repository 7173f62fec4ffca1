"""Synthetic walkers: a video-ReID dataset and a Pedestrian-128-style crop set, with true keypoints.

The paper studies SSN on "Pedestrian 128" (128 crops of 60 x 120 from the Internet, 16 labeled by
hand; section "Study on SSN", Figure 4) and trains SSN3D on real tracklets whose detector boxes
are misaligned (Introduction). Neither can be shipped, so this module draws both (see
``ssn3d.data.synth.render`` and ``ssn3d.data.synth.scene``), with the ground truth the paper never
had: the 9 keypoints of every frame, in the label-store format.

``generate_walkers`` writes the ``folder`` dataset layout::

    OUT/{train,query,gallery}/<pid 0001...>/c<camera 1...>_t<tracklet 00...>/<frame 000000>.jpg
    OUT/keypoints.json   every frame's 9 keypoints (ssn3d.labels.schema format, source "synthetic")
    OUT/dataset.json     the generator's parameters, the split and who resembles whom

Split: the first half of the identities (``ids // 2``) is for training, all their tracklets in
``train/``. For every other identity one tracklet is the query (tracklet 00 of camera
``1 + pid % cameras``) and all its other tracklets go to the gallery; gallery tracklets from the
query's own camera are there too and are ignored by the usual evaluation rule (same person, same
camera), as in MARS and DukeMTMC-VideoReID. With ``split=False`` every tracklet goes to ``train/``.

Identities: about a third are "siblings" of an earlier identity of the same half, sharing
everything but one or two attributes (shoes, bag, trousers, hair, a shirt print), so that part
level detail is needed to tell them apart. Everything is decided by ``seed``: the same call gives
the same files, and adding identities or frames keeps the earlier ones.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from ssn3d.data.synth.render import Look, random_look, sibling_look
from ssn3d.data.synth.scene import Camera, Frame, random_camera, walk_tracklet
from ssn3d.io import atomic_write_json
from ssn3d.keypoints import PARTS, VISIBLE
from ssn3d.labels.store import AnnotationStore

_logger = logging.getLogger(__name__)

GENERATOR = "ssn3d.synth.walkers"
# The app's built-in dataset; about 1000 frames, a few seconds on 2 CPU cores (benchmarks/RESULTS-studies.md).
DEMO = dict(ids=16, cameras=2, tracklets_per_camera=2, frames=16, size=(128, 64))
SIBLING_PROB = 0.35  # share of identities drawn as a near-copy of an earlier one
_KIND_LOOK, _KIND_CAMERA, _KIND_TRACKLET, _KIND_CROP, _KIND_PICK = 1, 2, 3, 4, 5  # independent random streams


class SynthError(ValueError):
    """Generator arguments or an output folder that cannot be used; the message says what to change."""


ProgressCallback = Callable[[int, int], None]


def _prepare(out_dir: str | Path, owned: tuple[str, ...], *, force: bool = True) -> Path:
    """Make ``out_dir`` ready: new or empty, or an earlier output of a generator here (replaced).

    With ``force=False`` an earlier output is refused instead: label stores and runs may refer to its
    frames, and regenerating it in place would change what they point at.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SynthError(f"{out} is a file; pass a folder to write the dataset into.")
    if out.exists() and any(out.iterdir()):
        meta = out / "dataset.json"
        try:
            ours = json.loads(meta.read_text()).get("generator", "").startswith("ssn3d.synth")
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise SynthError(
                f"{out} is not empty and holds no generated dataset; choose an empty or new folder."
            )
        if not force:
            raise SynthError(
                f"{out} already holds a generated dataset that label stores and runs may refer to; pass --force "
                "to regenerate it in place or choose a new folder."
            )
        for name in owned:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def make_identities(ids: int, seed: int, train_ids: int) -> list[tuple[Look, dict]]:
    """``ids`` looks; some are siblings of an earlier identity of the same split half.

    Returns:
        [(look, {"sibling_of": pid or None, "differs_in": [attribute, ...]})], index k is pid k + 1.
    """
    out: list[tuple[Look, dict]] = []
    for k in range(ids):
        rng = np.random.default_rng([seed, _KIND_LOOK, k])
        first = 0 if k < train_ids else train_ids  # siblings stay within their half
        if k > first and rng.random() < SIBLING_PROB:
            base = int(rng.integers(first, k))
            look, changed = sibling_look(rng, out[base][0])
            out.append((look, {"sibling_of": f"{base + 1:04d}", "differs_in": changed}))
        else:
            out.append((random_look(rng), {"sibling_of": None, "differs_in": []}))
    return out


def _save(image: np.ndarray, path: Path, jpeg: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if jpeg:
        Image.fromarray(image).save(path, quality=92)
    else:
        Image.fromarray(image).save(path)


def _check_size(size: tuple[int, int], seed: int) -> tuple[int, int]:
    if not isinstance(seed, int) or seed < 0:
        raise SynthError(f"seed {seed!r} must be a whole number >= 0.")
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise SynthError(f"size {size!r} must be (height, width), e.g. (128, 64).") from None
    if h < 16 or w < 8:
        raise SynthError(f"size {h}x{w} is too small to draw a person; use at least 16x8 (height x width).")
    return h, w


# Long on purpose: its docstring lists every option; the loop's random draws must keep their order (hash-pinned).
def generate_walkers(
    out_dir: str | Path,
    *,
    ids: int = 8,
    cameras: int = 2,
    tracklets_per_camera: int = 1,
    frames: int = 8,
    size: tuple[int, int] = (128, 64),
    seed: int = 0,
    progress: bool = False,
    split: bool = True,
    jpeg: bool = True,
    callback: ProgressCallback | None = None,
    force: bool = True,
) -> Path:
    """Render a synthetic video-ReID dataset in the ``folder`` layout (see the module docstring).

    Args:
        out_dir: a new or empty folder, or an earlier output of this generator (replaced).
        ids: identities.
        cameras: cameras; every identity walks past every camera.
        tracklets_per_camera: tracklets of each identity in each camera.
        frames: frames per tracklet.
        size: (height, width) of a frame.
        seed: decides everything.
        progress: show a tqdm bar.
        split: train/query/gallery split; False puts every tracklet in ``train/``.
        jpeg: JPEG frames (``.jpg``); False writes PNG.
        callback: called as ``callback(frames_done, frames_total)`` after each tracklet.
        force: replace an earlier generated dataset in ``out_dir`` (False: refuse it, as the CLI does
            without ``--force``).

    Returns:
        ``out_dir``.
    """
    h, w = _check_size(size, seed)
    if ids < (2 if split else 1) or cameras < (2 if split else 1) or tracklets_per_camera < 1 or frames < 1:
        raise SynthError(
            "the split needs ids >= 2 and cameras >= 2 (tracklets, frames >= 1); pass more or split=False."
        )
    out = _prepare(
        out_dir,
        ("train", "query", "gallery", "keypoints.json", "keypoints.json.lock", "dataset.json"),
        force=force,
    )
    train_ids = ids // 2 if split else ids
    people = make_identities(ids, seed, train_ids)
    cams = [random_camera(np.random.default_rng([seed, _KIND_CAMERA, c]), c) for c in range(cameras)]
    total = ids * cameras * tracklets_per_camera * frames
    labels: dict[str, np.ndarray] = {}
    counts = {s: {"ids": set(), "tracklets": 0, "frames": 0} for s in ("train", "query", "gallery")}
    bar = tqdm(total=total, desc="walkers", unit="frame", disable=not progress)
    done = 0
    for k, (look, _) in enumerate(people):
        pid = f"{k + 1:04d}"
        for c, cam in enumerate(cams):
            for t in range(tracklets_per_camera):
                part = _split_of(k, c, t, train_ids, cameras)
                rng = np.random.default_rng([seed, _KIND_TRACKLET, k, c, t])
                tracklet = walk_tracklet(rng, look, cam, frames=frames, size=(h, w))
                labels.update(_write_tracklet(out, out / part / pid / f"c{c + 1}_t{t:02d}", tracklet, jpeg))
                counts[part]["ids"].add(pid)
                counts[part]["tracklets"] += 1
                counts[part]["frames"] += frames
                done += frames
                bar.update(frames)
                if callback:
                    callback(done, total)
    bar.close()
    AnnotationStore(out / "keypoints.json").update(labels, source="synthetic")
    params = dict(
        ids=ids,
        cameras=cameras,
        tracklets_per_camera=tracklets_per_camera,
        frames=frames,
        size=[h, w],
        seed=seed,
        split=split,
        jpeg=jpeg,
    )
    atomic_write_json(out / "dataset.json", _walkers_meta(params, counts, people, train_ids, cams))
    _logger.info("Wrote %d frames of %d identities to %s", total, ids, out)
    return out


def _split_of(k: int, c: int, t: int, train_ids: int, cameras: int) -> str:
    """The split of identity ``k``'s tracklet ``t`` in camera ``c`` (the rule in the module docstring)."""
    if k < train_ids:
        return "train"
    return "query" if (c == (k + 1) % cameras and t == 0) else "gallery"


def _write_tracklet(out: Path, folder: Path, tracklet: Iterable[Frame], jpeg: bool) -> dict[str, np.ndarray]:
    """Save a tracklet's frames into ``folder``; return their keypoints by path relative to ``out``."""
    ext = "jpg" if jpeg else "png"
    labels = {}
    for f, frame in enumerate(tracklet):
        path = folder / f"{f:06d}.{ext}"
        _save(frame.image, path, jpeg)
        labels[path.relative_to(out).as_posix()] = frame.keypoints
    return labels


def _walkers_meta(
    params: dict[str, Any],
    counts: dict[str, dict[str, Any]],
    people: list[tuple[Look, dict]],
    train_ids: int,
    cams: list[Camera],
) -> dict[str, Any]:
    """The ``dataset.json`` of a walkers dataset: parameters, split sizes, identities and cameras."""
    return {
        "generator": GENERATOR,
        "version": 1,
        "layout": "folder",
        "params": params,
        "parts": list(PARTS),
        "keypoints": "keypoints.json",
        "splits": {
            s: {"ids": len(v["ids"]), "tracklets": v["tracklets"], "frames": v["frames"]}
            for s, v in counts.items()
        },
        "split_rule": "train: pids 1..ids//2; others: query = c<1 + pid % cameras>_t00, gallery = the rest",
        "identities": {
            f"{k + 1:04d}": dict(info, split="train" if k < train_ids else "test", look=_look_json(look))
            for k, (look, info) in enumerate(people)
        },
        "cameras": [asdict(c) for c in cams],
    }


def generate_demo(
    out_dir: str | Path, *, seed: int = 0, progress: bool = False, callback: ProgressCallback | None = None
) -> Path:
    """The app's built-in dataset: ``generate_walkers`` at the ``DEMO`` size."""
    return generate_walkers(out_dir, seed=seed, progress=progress, callback=callback, **DEMO)


def _look_json(look: Look) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(look).items()}


# Long on purpose: long only by its docstring; the random draws must keep their order (hash-pinned).
def generate_pedestrian128(
    out_dir: str | Path,
    *,
    count: int = 128,
    labeled: int = 16,
    size: tuple[int, int] = (120, 60),
    seed: int = 0,
    progress: bool = False,
    jpeg: bool = True,
    callback: ProgressCallback | None = None,
    force: bool = True,
) -> Path:
    """A Pedestrian-128-style set: ``count`` single crops of different people, ``labeled`` of them labeled.

    Each crop is a new identity seen by a new camera at a random moment of its gait, boxed by the
    same jittery detector as the walkers (``ssn3d.data.synth.scene``). Writes::

        OUT/images/<index 0000...>.jpg
        OUT/keypoints.json   the true keypoints of every crop (for measuring PCK)
        OUT/labels.json      only the ``labeled`` crops: what a person would have labeled by hand
        OUT/dataset.json     parameters and the list of labeled crops

    The labeled crops are drawn at random (by ``seed``) among the crops whose 9 parts are all
    visible, as someone labeling by hand picks clear examples.

    Returns:
        ``out_dir``.
    """
    h, w = _check_size(size, seed)
    if count < 2 or not 1 <= labeled < count:
        raise SynthError(f"need count >= 2 and 1 <= labeled < count, got count={count}, labeled={labeled}.")
    out = _prepare(
        out_dir,
        (
            "images",
            "keypoints.json",
            "keypoints.json.lock",
            "labels.json",
            "labels.json.lock",
            "dataset.json",
        ),
        force=force,
    )
    ext = "jpg" if jpeg else "png"
    truth: dict[str, np.ndarray] = {}
    for i in tqdm(range(count), desc="pedestrians", unit="crop", disable=not progress):
        frame = _single_crop(seed, i, (h, w))
        path = out / "images" / f"{i:04d}.{ext}"
        _save(frame.image, path, jpeg)
        truth[path.relative_to(out).as_posix()] = frame.keypoints
        if callback:
            callback(i + 1, count)
    keys = sorted(truth)
    chosen = _pick_clear(truth, labeled, seed)
    AnnotationStore(out / "keypoints.json").update(truth, source="synthetic")
    AnnotationStore(out / "labels.json").update({k: truth[k] for k in chosen}, source="synthetic")
    atomic_write_json(
        out / "dataset.json",
        {
            "generator": "ssn3d.synth.pedestrian128",
            "version": 1,
            "params": dict(count=count, labeled=labeled, size=[h, w], seed=seed, jpeg=jpeg),
            "parts": list(PARTS),
            "images": keys,
            "labeled": chosen,
            "keypoints": "keypoints.json",
            "labels": "labels.json",
        },
    )
    return out


def _single_crop(seed: int, i: int, size: tuple[int, int]) -> Frame:
    """Crop ``i``: a new identity seen by a new camera at a random moment of its gait."""
    rng = np.random.default_rng([seed, _KIND_CROP, i])
    look, cam = random_look(rng), random_camera(rng, int(rng.integers(4)))
    return next(walk_tracklet(rng, look, cam, frames=1, size=size, occluder_prob=0.15))


def _pick_clear(truth: dict[str, np.ndarray], labeled: int, seed: int) -> list[str]:
    """``labeled`` crops drawn by ``seed`` among those with all 9 parts visible (all crops if too few)."""
    keys = sorted(truth)
    clear = [k for k in keys if (truth[k][:, 2] >= VISIBLE).all()]
    pool = clear if len(clear) >= labeled else keys
    rng = np.random.default_rng([seed, _KIND_PICK])
    return sorted(pool[i] for i in rng.choice(len(pool), size=labeled, replace=False))
