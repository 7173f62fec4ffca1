"""Synthetic data: walkers (folder layout, keypoints, misalignment), Pedestrian-128 crops, Amber
paintings with planted motifs, label picking and detector-like noise, and the ``synth`` command."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssn3d.data.synth.amber import DEEP_BLUE, LIGHT_BLUE, ORANGE, STRIPE_BLUE, generate_amber
from ssn3d.data.synth.labels import LR_PAIRS, noisy_keypoints, pick_labeled_frames
from ssn3d.data.synth.render import SIBLING_ATTRIBUTES
from ssn3d.data.synth.scene import random_camera, walk_tracklet
from ssn3d.data.synth.walkers import SynthError, generate_pedestrian128, generate_walkers, make_identities
from ssn3d.keypoints import PARTS, VISIBLE, resize_keypoints
from ssn3d.labels.store import AnnotationStore

HEAD, BODY, CROTCH, L_FOOT, R_FOOT = (
    PARTS.index(p) for p in ("head", "body", "crotch", "left_foot", "right_foot")
)


def frames_of(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.jpg"))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ssn3d", *args], capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------------- walkers


def test_walkers_folder_layout_and_split(tiny_walkers: Path) -> None:
    meta = json.loads((tiny_walkers / "dataset.json").read_text())
    assert meta["params"]["ids"] == 8 and meta["params"]["size"] == [64, 32]
    train = sorted(p.name for p in (tiny_walkers / "train").iterdir())
    query = sorted(p.name for p in (tiny_walkers / "query").iterdir())
    gallery = sorted(p.name for p in (tiny_walkers / "gallery").iterdir())
    assert train == ["0001", "0002", "0003", "0004"]
    assert query == gallery == ["0005", "0006", "0007", "0008"]
    for pid in query:  # one query tracklet per test identity, the other camera in the gallery
        (q,) = list((tiny_walkers / "query" / pid).iterdir())
        (g,) = list((tiny_walkers / "gallery" / pid).iterdir())
        assert q.name == f"c{1 + int(pid) % 2}_t00" and g.name[:2] != q.name[:2]
    frames = frames_of(tiny_walkers)
    assert len(frames) == 8 * 2 * 8
    assert [p.name for p in frames_of(tiny_walkers / "train" / "0001" / "c1_t00")] == [
        f"{i:06d}.jpg" for i in range(8)
    ]
    assert Image.open(frames[0]).size == (32, 64)
    truth = AnnotationStore(tiny_walkers / "keypoints.json").read()
    assert set(truth["frames"]) == {p.relative_to(tiny_walkers).as_posix() for p in frames}
    assert {e["source"] for e in truth["frames"].values()} == {"synthetic"}


def test_keypoints_stay_on_the_body(tiny_walkers: Path) -> None:
    gt = AnnotationStore(tiny_walkers / "keypoints.json").frames()
    kps = np.stack(list(gt.values()))  # (F, 9, 3)
    assert set(np.unique(kps[..., 2])) <= {1.0, 2.0}  # every part labeled; 1 = cut off or occluded
    vis = kps[..., 2] >= VISIBLE
    xs, ys = kps[..., 0], kps[..., 1]
    assert ((xs >= 0) & (xs <= 32) & (ys >= 0) & (ys <= 64)).all()  # in the frame (invisible ones clamped)
    assert (xs[vis] < 32).all() and (ys[vis] < 64).all()
    upright = vis[:, HEAD] & vis[:, L_FOOT] & vis[:, R_FOOT] & vis[:, BODY] & vis[:, CROTCH]
    assert upright.mean() > 0.5
    k = kps[upright]
    assert (k[:, HEAD, 1] < k[:, BODY, 1]).all() and (k[:, BODY, 1] < k[:, CROTCH, 1]).all()
    assert (k[:, CROTCH, 1] < k[:, L_FOOT, 1]).all() and (k[:, CROTCH, 1] < k[:, R_FOOT, 1]).all()
    height = np.maximum(k[:, L_FOOT, 1], k[:, R_FOOT, 1]) - k[:, HEAD, 1]
    assert (height > 0.5 * 64).all() and (height < 64).all()  # a person fills most of the box


def test_detector_misalignment_is_real(tiny_walkers: Path) -> None:
    gt = AnnotationStore(tiny_walkers / "keypoints.json").frames()
    by_tracklet: dict[str, list[np.ndarray]] = {}
    for key, k in gt.items():
        by_tracklet.setdefault(key.rsplit("/", 1)[0], []).append(k)
    spreads = []
    for ks in by_tracklet.values():
        k = np.stack(ks)
        ok = k[:, HEAD, 2] >= VISIBLE
        if ok.sum() >= 3:
            spreads.append(k[ok, HEAD, :2].std(0).max())
    assert np.median(spreads) > 0.5  # the head moves inside the box from frame to frame (pixels at 64x32)
    cut = np.stack(list(gt.values()))[..., 2] < VISIBLE
    assert cut.any(axis=1).mean() > 0.02  # some frames cut off or occlude a part


def test_keypoints_follow_resize() -> None:
    look = make_identities(1, 3, 1)[0][0]
    cam = random_camera(np.random.default_rng(1), 0)
    small = list(walk_tracklet(np.random.default_rng(5), look, cam, frames=4, size=(64, 32)))
    large = list(walk_tracklet(np.random.default_rng(5), look, cam, frames=4, size=(128, 64)))
    for a, b in zip(small, large):
        np.testing.assert_allclose(
            resize_keypoints(a.keypoints, (32, 64), (64, 128))[:, :2], b.keypoints[:, :2], atol=0.02
        )
        assert a.box == b.box


def test_walkers_are_deterministic(tmp_path: Path) -> None:
    kw = dict(ids=2, cameras=2, tracklets_per_camera=1, frames=2, size=(32, 16))
    a = generate_walkers(tmp_path / "a", seed=3, **kw)
    b = generate_walkers(tmp_path / "b", seed=3, **kw)
    c = generate_walkers(tmp_path / "c", seed=4, **kw)
    fa, fb, fc = frames_of(a), frames_of(b), frames_of(c)
    assert [p.relative_to(a) for p in fa] == [p.relative_to(b) for p in fb]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(fa, fb))
    assert any(x.read_bytes() != y.read_bytes() for x, y in zip(fa, fc))
    assert (
        AnnotationStore(a / "keypoints.json").frames().keys()
        == AnnotationStore(b / "keypoints.json").frames().keys()
    )
    # regenerating into the same folder replaces it; a foreign folder is refused
    calls: list[tuple[int, int]] = []
    generate_walkers(a, seed=3, callback=lambda d, t: calls.append((d, t)), **kw)
    assert [x.read_bytes() for x in frames_of(a)] == [y.read_bytes() for y in fb]
    assert calls[-1] == (8, 8) and len(calls) == 4
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(SynthError, match="not empty"):
        generate_walkers(tmp_path / "foreign", **kw)
    with pytest.raises(SynthError, match="cameras >= 2"):
        generate_walkers(tmp_path / "d", ids=4, cameras=1)


def test_siblings_differ_in_one_or_two_attributes() -> None:
    people = make_identities(24, 0, 12)
    siblings = [(look, info) for look, info in people if info["sibling_of"]]
    assert len(siblings) >= 3
    fields = {
        "shoes": {"shoes"},
        "bag": {"bag", "bag_color"},
        "pants": {"pants"},
        "hair": {"hair_style"},
        "logo": {"pattern"},
    }
    for look, info in siblings:
        base = people[int(info["sibling_of"]) - 1][0]
        assert 1 <= len(info["differs_in"]) <= 2 and set(info["differs_in"]) <= set(SIBLING_ATTRIBUTES)
        changed = {k for k, v in asdict(look).items() if v != asdict(base)[k]}
        allowed = set().union(*(fields[a] for a in info["differs_in"]))
        assert changed and changed <= allowed
        same_half = (int(info["sibling_of"]) <= 12) == (people.index((look, info)) < 12)
        assert same_half


def test_pedestrian128_single_crops(tmp_path: Path) -> None:
    out = generate_pedestrian128(tmp_path / "p", count=10, labeled=3, seed=1)
    images = sorted((out / "images").glob("*.jpg"))
    assert len(images) == 10 and Image.open(images[0]).size == (60, 120)
    truth = AnnotationStore(out / "keypoints.json").frames()
    labels = AnnotationStore(out / "labels.json").frames()
    assert len(truth) == 10 and len(labels) == 3 and set(labels) <= set(truth)
    for key, k in labels.items():
        np.testing.assert_array_equal(k, truth[key])
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labeled"] == sorted(labels)


# ---------------------------------------------------------------------------- regression: the same seed, the same data

# Recorded from the generator before its drawing and writing were split into smaller functions: a
# refactoring of ``generate_walkers``, ``generate_pedestrian128`` or ``draw_person`` must keep every
# pixel and keypoint. PNG frames are hashed as decoded pixels and the JSON files by content (the label
# store stamps each entry with the time it was written), so an encoder or format version cannot move them.
WALKERS_SEED5 = {
    "dataset.json": "50ffe498ecc7",
    "gallery/0004/c2_t00/000000.png": "39458732f0a5",
    "gallery/0004/c2_t00/000001.png": "4c6638e655b4",
    "gallery/0005/c1_t00/000000.png": "25c8aab0bc27",
    "gallery/0005/c1_t00/000001.png": "7fca15bae665",
    "gallery/0006/c2_t00/000000.png": "cb5803e47592",
    "gallery/0006/c2_t00/000001.png": "8a66f7fd8725",
    "keypoints.json": "4b1334d84001",
    "query/0004/c1_t00/000000.png": "2b32c2efd702",
    "query/0004/c1_t00/000001.png": "6c3d13577c5f",
    "query/0005/c2_t00/000000.png": "cbf62f7dc455",
    "query/0005/c2_t00/000001.png": "05b322dba402",
    "query/0006/c1_t00/000000.png": "e861d8d66053",
    "query/0006/c1_t00/000001.png": "d79ca6916759",
    "train/0001/c1_t00/000000.png": "cce373b12c96",
    "train/0001/c1_t00/000001.png": "1f18f9a8a765",
    "train/0001/c2_t00/000000.png": "10e6b21d3e22",
    "train/0001/c2_t00/000001.png": "920ed999fa8a",
    "train/0002/c1_t00/000000.png": "0bf590966974",
    "train/0002/c1_t00/000001.png": "5e37b75213d5",
    "train/0002/c2_t00/000000.png": "cdc8eeb87338",
    "train/0002/c2_t00/000001.png": "31f585b5b054",
    "train/0003/c1_t00/000000.png": "4fccc87ea207",
    "train/0003/c1_t00/000001.png": "37d69a028edb",
    "train/0003/c2_t00/000000.png": "41637f737eb5",
    "train/0003/c2_t00/000001.png": "12a6d1e4ec0b",
}

PEDESTRIAN128_SEED5 = {
    "dataset.json": "104c449bddff",
    "images/0000.png": "9894685c7d76",
    "images/0001.png": "5a825681d7e9",
    "images/0002.png": "e701a82a9957",
    "images/0003.png": "af6d18b3f007",
    "images/0004.png": "a4bd211afbe0",
    "images/0005.png": "96a76b4b9b4f",
    "keypoints.json": "5d2aecf46293",
    "labels.json": "63e3f389f560",
}


def _fingerprint(root: Path) -> dict[str, str]:
    """A short content hash of every generated file (lock files aside: the store's own business)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.suffix == ".png":
            data = np.asarray(Image.open(p)).tobytes()
        elif p.name in ("keypoints.json", "labels.json"):
            frames = AnnotationStore(p).frames()
            data = b"".join(k.encode() + frames[k].astype(np.float32).tobytes() for k in sorted(frames))
        elif p.name == "dataset.json":
            data = json.dumps(json.loads(p.read_text()), sort_keys=True).encode()
        else:
            continue
        out[p.relative_to(root).as_posix()] = hashlib.sha256(data).hexdigest()[:12]
    return out


def test_generators_reproduce_their_recorded_output(tmp_path: Path) -> None:
    # 6 identities at 64 x 32 draw shoulder bags, backpacks, logos, stripes, long hair, caps and bald heads
    kw = dict(size=(64, 32), seed=5, jpeg=False)
    walkers = generate_walkers(tmp_path / "w", ids=6, cameras=2, tracklets_per_camera=1, frames=2, **kw)
    crops = generate_pedestrian128(tmp_path / "p", count=6, labeled=2, **kw)
    assert _fingerprint(walkers) == WALKERS_SEED5
    assert _fingerprint(crops) == PEDESTRIAN128_SEED5


# ---------------------------------------------------------------------------- amber


def test_amber_motifs_are_where_motifs_json_says(tmp_path: Path) -> None:
    out = generate_amber(tmp_path / "amber", count=6, seed=2, size=(240, 320))
    meta = json.loads((out / "motifs.json").read_text())
    assert meta["size"] == [240, 320] and len(meta["paintings"]) == 6
    planted = [(n, o) for n, objs in meta["paintings"].items() for o in objs]
    assert {o["motif"] for _, o in planted} == {"protuberance", "diamond_stripe", "block"}
    for name, objs in meta["paintings"].items():
        img = np.asarray(Image.open(out / name).convert("RGB"), dtype=np.float32)
        assert img.shape == (240, 320, 3)
        blue = img[..., 2] > img[..., 0] + 40
        inside = np.zeros(blue.shape, dtype=bool)
        for o in objs:
            x0, y0, x1, y1 = o["box"]
            inside[max(0, y0 - 3) : y1 + 3, max(0, x0 - 3) : x1 + 3] = True
            patch = img[y0:y1, x0:x1]
            h, w = patch.shape[:2]
            if o["motif"] == "block":
                np.testing.assert_allclose(patch[2:-2, 2:-2].mean((0, 1)), DEEP_BLUE, atol=20)
            elif o["motif"] == "protuberance":
                np.testing.assert_allclose(patch[h // 3, w // 2], LIGHT_BLUE, atol=35)
            else:
                np.testing.assert_allclose(patch[int(0.9 * h), w // 2], STRIPE_BLUE, atol=35)
                np.testing.assert_allclose(patch[int(0.33 * h), w // 2], ORANGE, atol=40)
        assert not (blue & ~inside).any()  # the amber palette has no blue: only motifs are blue


# ---------------------------------------------------------------------------- labels


def test_pick_labeled_frames_prefers_visible_parts(tiny_walkers: Path) -> None:
    gt = AnnotationStore(tiny_walkers / "keypoints.json").frames()
    train = {k: v for k, v in gt.items() if k.startswith("train/")}
    picked = pick_labeled_frames(train, None, per_tracklet=2, seed=0)
    tracklets = {k.rsplit("/", 1)[0] for k in train}
    assert len(picked) == 2 * len(tracklets) == 16

    def visible(k: np.ndarray) -> int:
        return int((k[:, 2] >= VISIBLE).sum())

    for folder in tracklets:  # the chosen frames show the most parts the tracklet has to offer
        counts = sorted((visible(v) for k, v in train.items() if k.startswith(folder + "/")), reverse=True)
        chosen = sorted((visible(v) for k, v in picked.items() if k.startswith(folder + "/")), reverse=True)
        assert chosen == counts[:2]
    assert pick_labeled_frames(train, None, 2, seed=0).keys() == picked.keys()
    folders = sorted(tracklets)[:2]
    by_folder = pick_labeled_frames(gt, folders, per_tracklet=1, seed=0)
    assert sorted(k.rsplit("/", 1)[0] for k in by_folder) == folders
    absolute = pick_labeled_frames(gt, [str(tiny_walkers / f) for f in folders], 1, seed=0, root=tiny_walkers)
    assert absolute.keys() == by_folder.keys()


def test_noisy_keypoints_jitter_drop_and_swap(tiny_walkers: Path) -> None:
    gt = {
        k: v
        for k, v in AnnotationStore(tiny_walkers / "keypoints.json").frames().items()
        if k.startswith("train/")
    }
    jitter = noisy_keypoints(gt, sigma_px=2.0, dropout=0.0, swap_prob=0.0, seed=1)
    vis = np.stack([gt[k][:, 2] >= VISIBLE for k in sorted(gt)])
    d = np.stack([jitter[k][:, :2] - gt[k][:, :2] for k in sorted(gt)])[vis]
    assert 1.0 < np.abs(d).mean() < 3.0  # E|N(0, 2)| = 1.6, a little less where clamped at 0
    assert all((jitter[k][:, 2] == np.where(gt[k][:, 2] >= VISIBLE, VISIBLE, 0)).all() for k in gt)
    dropped = noisy_keypoints(gt, sigma_px=0.0, dropout=1.0, swap_prob=0.0, seed=1)
    assert all((v == 0).all() for v in dropped.values())
    swapped = noisy_keypoints(gt, sigma_px=0.0, dropout=0.0, swap_prob=1.0, seed=1)
    key = next(k for k in sorted(gt) if (gt[k][:, 2] >= VISIBLE).all())
    for i, j in LR_PAIRS:
        np.testing.assert_allclose(swapped[key][i, :2], gt[key][j, :2])
    again = noisy_keypoints(gt, sigma_px=2.0, dropout=0.0, swap_prob=0.0, seed=1)
    assert all(np.array_equal(again[k], jitter[k]) for k in gt)


# ---------------------------------------------------------------------------- CLI


def test_cli_synth_labels_writes_a_label_store(tiny_walkers: Path, tmp_path: Path) -> None:
    target = tmp_path / "labels.json"
    r = run_cli("synth", "labels", str(tiny_walkers), "--per-tracklet", "2", "--to", str(target))
    assert r.returncode == 0, r.stderr
    frames = AnnotationStore(target).read()["frames"]
    assert len(frames) == 16 and all(k.startswith("train/") for k in frames)
    again = run_cli("synth", "labels", str(tiny_walkers), "--to", str(target))
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr
    noisy = run_cli(
        "synth", "labels", str(tiny_walkers), "--to", str(target), "--noisy", "--per-tracklet", "0", "--force"
    )
    assert noisy.returncode == 0, noisy.stderr
    doc = AnnotationStore(target).read()["frames"]
    assert len(doc) == 64 and {e["source"] for e in doc.values()} == {"synthetic-noisy"}


def test_cli_synth_pedestrians_and_errors(tmp_path: Path) -> None:
    out = tmp_path / "w"
    r = run_cli(
        "synth",
        "pedestrians",
        str(out),
        "--ids",
        "2",
        "--frames",
        "2",
        "--tracklets-per-camera",
        "1",
        "--size",
        "32x16",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    assert len(frames_of(out)) == 2 * 2 * 2 and "wrote 8 frames" in r.stdout
    bad = run_cli("synth", "pedestrians", str(tmp_path / "x"), "--size", "big")
    assert bad.returncode == 2 and "HEIGHTxWIDTH" in bad.stderr
    shutil.rmtree(out)
    missing = run_cli("synth", "labels", str(out), "--to", str(tmp_path / "l.json"))
    assert missing.returncode == 2 and "keypoints.json" in missing.stderr
