"""Training clips, test chunks and loaders on a real folder-layout dataset with colour-coded frames."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ssn3d.data.datasets import DatasetError, build_dataset
from ssn3d.data.sampling import IdentitySampler
from ssn3d.data.transforms import ClipTransform, denormalize
from ssn3d.data.video import (
    TestFrames,
    TrainClips,
    build_test_loader,
    build_train_loader,
    collate_clips,
    iter_tracklet_chunks,
    pool_tracklet_features,
    sample_indices,
    scan_images,
)
from ssn3d.keypoints import NUM_PARTS

H, W = 16, 8
LENGTHS = {(1, 1): 40, (1, 2): 5, (2, 1): 3, (3, 1): 12, (4, 2): 25}  # (pid, cam): frames


def frame_value(f: int) -> int:
    return 5 + 6 * f  # the red value of frame f (exact in PNG)


def frame_of(clip: torch.Tensor) -> list[int]:
    """Which frame each clip position shows, read back from its colour."""
    return [round((float(denormalize(c)[..., 0].mean()) - 5) / 6) for c in clip]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("clips")
    for (pid, cam), n in LENGTHS.items():
        for f in range(n):
            path = root / "train" / f"{pid:04d}" / f"c{cam}_t0" / f"{f}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (W, H), (frame_value(f), 0, 0)).save(path)
    return build_dataset("folder", root)


def transform(flip: float = 0.0) -> ClipTransform:
    return ClipTransform(H, W, train=True, flip_prob=flip)


# --------------------------------------------------------------------------- frame sampling


def test_stride_grid_with_random_start() -> None:
    starts = set()
    for seed in range(200):
        idx = sample_indices(40, 4, 8, np.random.default_rng(seed))
        assert np.all(np.diff(idx) == 8) and 0 <= idx[0] and idx[-1] < 40
        starts.add(int(idx[0]))
    assert starts == set(range(0, 40 - 24))  # every start 0..15 occurs


def test_short_tracklets_sorted_random_frames_then_repetition() -> None:
    seen = set()
    for seed in range(30):
        idx = sample_indices(10, 4, 8, np.random.default_rng(seed))  # span 25 > 10 >= 4
        assert len(set(idx)) == 4 and np.all(np.diff(idx) > 0)
        seen.update(idx.tolist())
        rep = sample_indices(3, 4, 8, np.random.default_rng(seed))
        assert set(rep.tolist()) == {0, 1, 2} and np.all(np.diff(rep) >= 0) and len(rep) == 4
    assert seen == set(range(10))


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 60), st.integers(1, 5), st.integers(1, 9), st.integers(0, 999))
def test_clip_indices_are_sorted_and_inside_the_tracklet(n: int, t: int, stride: int, seed: int) -> None:
    idx = sample_indices(n, t, stride, np.random.default_rng(seed))
    assert len(idx) == t and idx.min() >= 0 and idx.max() < n and np.all(np.diff(idx) >= 0)
    if n >= (t - 1) * stride + 1:
        assert np.all(np.diff(idx) == stride)


# --------------------------------------------------------------------------- training clips


def test_train_clip_frames_pids_and_labels(dataset) -> None:
    long_t = next(i for i, t in enumerate(dataset.train) if len(t.paths) == 40)
    label = np.zeros((NUM_PARTS, 3), np.float32)
    label[0] = (2.5, 3.5, 2)
    labels = {dataset.relpath(dataset.train[long_t].paths[21]): label}
    clips = TrainClips(
        dataset.train, root=dataset.root, seq_len=4, stride=8, transform=transform(), labels=labels
    )
    assert clips.num_labeled_frames == 1 and len(clips) == len(dataset.train)
    starts = set()
    for epoch in range(40):
        clips.set_epoch(epoch)
        item = clips[long_t]
        assert item["clip"].shape == (4, 3, H, W) and item["keypoints"].shape == (4, NUM_PARTS, 3)
        frames = frame_of(item["clip"])
        assert np.all(np.diff(frames) == 8)
        starts.add(frames[0])
        # the labeled frame comes beside the clip, with its label, whatever the clip's start
        assert frame_of(item["anchor_frames"]) == [21]
        np.testing.assert_allclose(item["anchor_keypoints"][0, 0], [2.5, 3.5, 2])
        assert item["anchor_keypoints"].sum() == pytest.approx(8.0)
        # a clip frame keeps its label when it happens to be the labeled one, and only then
        if 21 in frames:
            np.testing.assert_allclose(item["keypoints"][frames.index(21), 0], [2.5, 3.5, 2])
        assert item["keypoints"].sum() == pytest.approx(8.0 if 21 in frames else 0.0)
        assert (item["pid"], item["camid"], item["index"]) == (dataset.train[long_t].pid, 0, long_t)
    # clip starts are not restricted to the ones that land on the labeled frame (21 - 8j: 5 and 13)
    assert len(starts) > 5 and not starts <= {5, 13}
    short = next(i for i, t in enumerate(dataset.train) if len(t.paths) == 3)
    assert sorted(set(frame_of(clips[short]["clip"]))) == [0, 1, 2]
    assert clips[short]["anchor_frames"].shape == (0, 3, H, W)  # no labels, no anchor frames


def test_anchor_frames_are_capped_and_collated_across_the_batch(dataset) -> None:
    long_t = next(i for i, t in enumerate(dataset.train) if len(t.paths) == 40)
    label = np.zeros((NUM_PARTS, 3), np.float32)
    label[1] = (4.0, 6.0, 2)
    labels = {dataset.relpath(dataset.train[long_t].paths[f]): label for f in (3, 17, 30)}
    clips = TrainClips(
        dataset.train,
        root=dataset.root,
        seq_len=4,
        stride=8,
        transform=transform(),
        labels=labels,
        anchor_frames=2,
    )
    item = clips[long_t]
    chosen = frame_of(item["anchor_frames"])
    assert len(chosen) == 2 and set(chosen) <= {3, 17, 30}
    other = next(i for i in range(len(dataset.train)) if i != long_t)
    batch = collate_clips(clips.__getitems__([long_t, other, long_t]))
    assert batch["anchor_frames"].shape == (4, 3, H, W) and batch["anchor_keypoints"].shape == (
        4,
        NUM_PARTS,
        3,
    )
    assert (batch["anchor_keypoints"][:, 1, 2] == 2).all()


def test_items_reproducible_per_seed_epoch_index_and_repeats_differ(dataset) -> None:
    def make(seed: int) -> TrainClips:
        return TrainClips(
            dataset.train, root=dataset.root, seq_len=4, stride=2, transform=transform(0.5), seed=seed
        )

    a, b = make(0), make(0)
    i = next(i for i, t in enumerate(dataset.train) if len(t.paths) == 40)
    assert torch.equal(a[i]["clip"], b[i]["clip"])
    per_epoch = set()
    for e in range(6):
        a.set_epoch(e)
        per_epoch.add(tuple(frame_of(a[i]["clip"])))
    assert len(per_epoch) > 1
    batch = a.__getitems__([i] * 6)
    assert len({tuple(frame_of(it["clip"])) for it in batch}) > 1
    assert torch.equal(batch[0]["clip"], a[i]["clip"])


def test_loader_batches_and_workers_match_in_process(dataset) -> None:
    def epochs(workers: int) -> list[list[torch.Tensor]]:
        clips = TrainClips(
            dataset.train, root=dataset.root, seq_len=4, stride=3, transform=transform(0.5), seed=7
        )
        sampler = IdentitySampler(dataset.train, 2, 2, seed=7)
        loader = build_train_loader(clips, sampler, workers=workers, pin_memory=False)
        out = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            clips.set_epoch(epoch)
            out.append([b["clip"] for b in loader])
        return out, next(iter(loader))

    (local, batch), (remote, _) = epochs(0), epochs(2)
    assert batch["clip"].shape == (4, 4, 3, H, W) and batch["keypoints"].shape == (4, 4, NUM_PARTS, 3)
    assert batch["pids"].shape == batch["camids"].shape == batch["indices"].shape == (4,)
    assert batch["pids"][0] == batch["pids"][1] != batch["pids"][2] == batch["pids"][3]
    assert len(local[0]) == 2  # 4 ids, P = 2: one pass
    for e in range(2):  # persistent workers saw set_epoch: same clips as in-process
        assert all(torch.equal(x, y) for x, y in zip(local[e], remote[e]))
    assert not all(torch.equal(x, y) for x, y in zip(local[0], local[1]))


# --------------------------------------------------------------------------- corrupt frames and decoding


def test_corrupt_frames_skipped_with_one_warning_or_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "train" / "0001" / "c1_t0"
    folder.mkdir(parents=True)
    for f in range(3):
        Image.new("RGB", (W, H), (frame_value(f), 0, 0)).save(folder / f"{f}.png")
    (folder / "1.png").write_bytes(b"\x89PNG broken")
    ds = build_dataset("folder", tmp_path)
    assert scan_images(ds.train) == [str(folder / "1.png")]
    clips = TrainClips(ds.train, root=ds.root, seq_len=3, stride=1, transform=transform())
    with caplog.at_level(logging.WARNING, logger="ssn3d.data.video"):
        assert frame_of(clips[0]["clip"]) == [0, 0, 2]  # frame 1 replaced by its nearest readable neighbour
        clips[0]
    warnings = [r for r in caplog.records if "1.png" in r.getMessage()]
    assert len(warnings) == 1
    strict = TrainClips(
        ds.train, root=ds.root, seq_len=3, stride=1, transform=transform(), skip_corrupt=False
    )
    with pytest.raises(DatasetError, match=r"1\.png cannot be decoded"):
        strict[0]


def test_drafted_jpeg_keeps_keypoints_on_the_marker(tmp_path: Path) -> None:
    folder = tmp_path / "train" / "0001" / "c1_t0"
    folder.mkdir(parents=True)
    img = np.zeros((256, 128, 3), np.uint8)
    img[150:182, 80:112] = 255  # a 32 x 32 white square, centre (96, 166)
    Image.fromarray(img).save(folder / "0.jpg", quality=95)
    ds = build_dataset("folder", tmp_path)
    label = np.zeros((NUM_PARTS, 3), np.float32)
    label[1] = (96.0, 166.0, 2)
    clips = TrainClips(
        ds.train,
        root=ds.root,
        seq_len=1,
        stride=1,
        transform=transform(),
        labels={"train/0001/c1_t0/0.jpg": label},
    )
    item = clips[0]
    x, y = item["keypoints"][0, 1, :2].tolist()
    assert (x, y) == pytest.approx((96 * W / 128, 166 * H / 256))
    assert denormalize(item["clip"][0])[int(y), int(x)].min() > 200


# --------------------------------------------------------------------------- test chunks and pooling


def test_chunks_cover_every_frame_in_order_and_pool_to_the_frame_mean(dataset) -> None:
    tf = ClipTransform(H, W, train=False)
    t40 = next(t for t in dataset.train if len(t.paths) == 40)
    chunks = list(iter_tracklet_chunks(t40, tf, chunk=16))
    assert [c.shape[0] for c in chunks] == [16, 16, 8]
    assert sum((frame_of(c) for c in chunks), []) == list(range(40))
    frames = TestFrames(dataset.train, tf, chunk=16)
    assert len(frames) == sum(-(-n // 16) for n in LENGTHS.values())
    feats, lengths, owners = [], [], []
    for item in build_test_loader(frames, workers=0, pin_memory=False):
        feats.append(torch.tensor([float(np.mean(frame_of(item["clip"])))]))
        lengths.append(item["length"])
        owners.append(item["tracklet"])
    pooled = pool_tracklet_features(torch.stack(feats), lengths, owners, len(dataset.train))
    expected = [(len(t.paths) - 1) / 2 for t in dataset.train]  # mean frame index over all frames
    np.testing.assert_allclose(pooled[:, 0].numpy(), expected, atol=1e-5)
    single = pool_tracklet_features(torch.tensor([[1.0], [4.0]]), [3, 1])
    assert single.tolist() == [pytest.approx(7 / 4)]


def test_uint8_items_normalized_on_the_device_equal_the_float_items(tiny_walkers: Path) -> None:
    """Real generated JPEG frames with labels: the uint8 batch after normalize_and_flip is the float
    batch (1e-6), flips and anchors included, and the keypoints and sampling are the same."""
    from ssn3d.data.synth.labels import pick_labeled_frames
    from ssn3d.data.transforms import normalize_and_flip
    from ssn3d.labels.store import AnnotationStore

    ds = build_dataset("folder", tiny_walkers)
    gt = AnnotationStore(ds.ground_truth_path).frames()
    labels = {path: np.asarray(kps) for path, kps in pick_labeled_frames(gt, ds.train, per_tracklet=2,
                                                                          root=ds.root).items()}  # fmt: skip
    clips = TrainClips(ds.train, root=ds.root, seq_len=4, stride=2, labels=labels, seed=3,
                       transform=ClipTransform(64, 32, train=True, flip_prob=0.5))  # fmt: skip
    indices = list(range(len(ds.train))) * 2  # each tracklet twice: two clips with their own draws
    want = collate_clips(clips.__getitems__(indices))
    clips.set_uint8(True)
    got = collate_clips(clips.__getitems__(indices))
    assert got["clip"].dtype == torch.uint8 and got["clip"].nbytes * 4 == want["clip"].nbytes
    assert got["flips"].any() and not got["flips"].all()  # both kinds in the batch
    assert got["anchor_frames"].shape[0] > 0 and got["anchor_flips"].shape == (got["anchor_frames"].shape[0],)
    torch.testing.assert_close(normalize_and_flip(got["clip"], got["flips"]), want["clip"], atol=1e-6, rtol=0)
    anchors = normalize_and_flip(got["anchor_frames"][:, None], got["anchor_flips"])[:, 0]
    torch.testing.assert_close(anchors, want["anchor_frames"], atol=1e-6, rtol=0)
    for key in ("keypoints", "anchor_keypoints", "pids", "camids", "indices"):
        assert torch.equal(got[key], want[key]), key
    clips.set_uint8(False)
    assert "flips" not in collate_clips(clips.__getitems__(indices[:2]))
