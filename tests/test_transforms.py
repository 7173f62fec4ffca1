"""ClipTransform: shared random decisions per clip; keypoints follow resize, translation, flip and erasing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ssn3d.data.transforms import IMAGENET_MEAN, ClipTransform, denormalize, normalize_and_flip
from ssn3d.keypoints import FLIP_PERMUTATION, NUM_PARTS, PARTS

H, W = 32, 16


def marker_frame(size: tuple[int, int], xy: tuple[int, int]) -> Image.Image:
    """A black frame with a 2x2 white square whose top-left pixel is ``xy``."""
    img = np.zeros((size[1], size[0], 3), np.uint8)
    img[xy[1] : xy[1] + 2, xy[0] : xy[0] + 2] = 255
    return Image.fromarray(img)


def marker_keypoints(xy: tuple[int, int], part: int) -> np.ndarray:
    kps = np.zeros((NUM_PARTS, 3), np.float32)
    kps[part] = (xy[0] + 1.0, xy[1] + 1.0, 2)  # the centre of the 2x2 square
    return kps


def brightness_at(clip: torch.Tensor, t: int, x: float, y: float) -> int:
    img = denormalize(clip[t])
    return int(img[int(y), int(x)].min())


def test_shapes_normalization_and_denormalize_round_trip() -> None:
    mean = tuple(int(round(m * 255)) for m in IMAGENET_MEAN)
    frames = [Image.new("RGB", (8, 16), mean), Image.new("L", (20, 40), 255)]
    clip, kps = ClipTransform(H, W, train=False)(frames)
    assert clip.shape == (2, 3, H, W) and clip.dtype == torch.float32
    assert kps.shape == (2, NUM_PARTS, 3) and not kps.any()
    assert clip[0].abs().max() < 0.02  # the ImageNet mean colour normalizes to ~0
    assert (denormalize(clip[1]) == 255).all()
    assert denormalize(clip).shape == (2, H, W, 3)
    with pytest.raises(ValueError, match=r"\(3, H, W\) or \(T, 3, H, W\)"):
        denormalize(torch.zeros(4, H, W))


def test_keypoints_follow_resize_per_frame_size() -> None:
    sizes, spots = [(8, 16), (24, 48)], [(2, 4), (12, 30)]  # frames of different sizes
    frames = [marker_frame(s, xy) for s, xy in zip(sizes, spots)]
    kps = np.stack([marker_keypoints(xy, 0) for xy in spots])
    clip, out = ClipTransform(H, W, train=False)(frames, kps)
    np.testing.assert_allclose(out[0, 0, :2], [3 * W / 8, 5 * H / 16])
    for t in range(2):
        assert brightness_at(clip, t, *out[t, 0, :2]) > 100
    assert (out[:, 1:] == 0).all()  # unlabeled parts stay zero


def test_forced_flip_swaps_left_and_right_parts_and_moves_the_point() -> None:
    part = PARTS.index("left_elbow")
    frame = marker_frame((W, H), (3, 10))
    clip, out = ClipTransform(H, W, train=True, flip_prob=1.0)([frame], marker_keypoints((3, 10), part)[None])
    flipped = FLIP_PERMUTATION[part]
    assert PARTS[flipped] == "right_elbow"
    assert out[0, part, 2] == 0 and out[0, flipped, 2] == 2
    np.testing.assert_allclose(out[0, flipped, :2], [W - 4.0, 11.0])
    assert brightness_at(clip, 0, *out[0, flipped, :2]) > 200
    assert brightness_at(clip, 0, 4.0, 11.0) < 50  # the original spot is dark now


def test_random_decisions_are_shared_by_all_frames_and_reproducible() -> None:
    frames = [marker_frame((W, H), (2, 5)) for _ in range(4)]
    kps = np.stack([marker_keypoints((2, 5), 3)] * 4)
    tf = ClipTransform(H, W, train=True, flip_prob=0.5, pad=3, erase_prob=0.5)
    flips = set()
    for seed in range(12):
        clip, out = tf(frames, kps, np.random.default_rng(seed))
        assert all(torch.equal(clip[0], clip[t]) for t in range(1, 4))
        assert (out == out[0]).all()
        flips.add(bool(out[0, FLIP_PERMUTATION[3], 2] > 0))
        if out[0, :, 2].max() == 2:  # visible: the marker is under the moved keypoint
            x, y = out[0, out[0, :, 2].argmax(), :2]
            assert brightness_at(clip, 0, x, y) > 200
        again, out2 = tf(frames, kps, np.random.default_rng(seed))
        assert torch.equal(clip, again) and (out == out2).all()
    assert flips == {True, False}


def test_translation_moves_keypoints_with_pixels() -> None:
    tf = ClipTransform(H, W, train=True, flip_prob=0.0, pad=4)
    frame = marker_frame((W, H), (7, 14))
    for seed in range(6):
        clip, out = tf([frame], marker_keypoints((7, 14), 1)[None], np.random.default_rng(seed))
        assert brightness_at(clip, 0, *out[0, 1, :2]) > 200


def test_erasing_hides_keypoints_inside_the_box() -> None:
    tf = ClipTransform(H, W, train=True, flip_prob=0.0, erase_prob=1.0)
    kps = np.zeros((1, NUM_PARTS, 3), np.float32)
    kps[0, :, 0] = np.linspace(1, W - 1, NUM_PARTS)
    kps[0, :, 1] = np.linspace(1, H - 1, NUM_PARTS)
    kps[0, :, 2] = 2
    frame = Image.new("RGB", (W, H), (255, 255, 255))
    hidden = 0
    for seed in range(10):
        clip, out = tf([frame], kps, np.random.default_rng(seed))
        erased = clip[0].abs().sum(0) == 0  # (H, W) pixels set to the mean colour
        assert erased.any()
        for x, y, v in out[0]:
            assert v == (1 if erased[int(y), int(x)] else 2)
            hidden += v == 1
    assert hidden > 0


def test_uint8_clips_normalized_on_the_device_equal_the_float_worker_path(tiny_walkers) -> None:
    """Real generated JPEG frames, resized; the same rng gives the same flips, keypoints and pixels."""
    from ssn3d.data.images import load_image

    paths = sorted(tiny_walkers.rglob("*.jpg"))[:4]
    frames = [load_image(str(p))[0] for p in paths]
    kps = np.stack([marker_keypoints((5 + t, 9), PARTS.index("left_knee")) for t in range(4)])
    tf = ClipTransform(48, 20, train=True, flip_prob=0.5)
    floats, items = [], []
    for seed in range(8):
        floats.append(tf(frames, kps, np.random.default_rng(seed)))
        items.append(tf.to_uint8(frames, kps, np.random.default_rng(seed)))
    assert {it.flip for it in items} == {True, False}
    for (_, out), it in zip(floats, items):
        assert it.clip.dtype == torch.uint8 and it.clip.shape == (4, 3, 48, 20) and it.clip.is_contiguous()
        np.testing.assert_array_equal(it.keypoints, out)  # mirrored in the worker when the pixels will be
    batch = torch.stack([it.clip for it in items])  # (B, T, 3, H, W) uint8: a quarter of the float bytes
    flips = torch.tensor([it.flip for it in items])
    assert batch.nbytes * 4 == torch.stack([c for c, _ in floats]).nbytes
    expected = torch.stack([c for c, _ in floats])
    torch.testing.assert_close(normalize_and_flip(batch, flips), expected, atol=1e-6, rtol=0)
    half = normalize_and_flip(batch, flips, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half, expected.to(torch.bfloat16), atol=0, rtol=0)


def test_uint8_path_refuses_what_it_cannot_do() -> None:
    frame = marker_frame((W, H), (2, 5))
    with pytest.raises(ValueError, match="pad and erase_prob"):
        ClipTransform(H, W, train=True, pad=2).to_uint8([frame])
    with pytest.raises(ValueError, match="uint8"):
        normalize_and_flip(torch.zeros(1, 1, 3, H, W), torch.zeros(1, dtype=torch.bool))
    with pytest.raises(ValueError, match="one decision per clip"):
        normalize_and_flip(torch.zeros(2, 1, 3, H, W, dtype=torch.uint8), torch.zeros(1, dtype=torch.bool))
    test = ClipTransform(H, W, train=False).to_uint8([frame])
    assert not test.flip and test.clip.shape == (1, 3, H, W)
