"""Tracklets -> tensors: training clips, test chunks, and the loaders that feed a GPU.

Paper, "Implementation Details / Training and testing protocols":

* training: "for each video tracklet, we randomly sample 4 frames with a stride of 8 frames"
  (``sample_indices``: a random start on the stride grid; a tracklet shorter than the grid's span
  gives sorted random frames, and one shorter than T repeats frames, still in temporal order);
* semi-supervised labels: "if a snippet is selected, their corresponding labeled images, along
  with their labels, will also be selected". The clip is sampled as for any tracklet, and the
  tracklet's labeled frames (up to ``anchor_frames`` of them) come *alongside* it as
  ``anchor_frames``/``anchor_keypoints``: they go through the backbone and SSN with their labels as
  anchors, for L_SSN, not through the 3D blocks. The clip's own frames keep their labels as
  keypoints when they happen to be labeled (zeros elsewhere). Forcing a labeled frame into every
  clip instead would leave two-label tracklets a handful of clip starts;
* testing: "each video tracklet is split into multiple 32-frame video clips ... use their average":
  ``iter_tracklet_chunks``/``TestFrames`` give consecutive chunks of up to 32 frames (no padding) and
  ``pool_tracklet_features`` averages chunk features weighted by chunk length, i.e. the mean over frames.

Randomness of a training item comes from ``(seed, epoch, index, k)`` (k counts repeats of an index
within one batch), so it is reproducible with any number of DataLoader workers. The epoch lives in
shared memory: ``TrainClips.set_epoch`` in the main process reaches persistent workers.

Unreadable frames: with ``skip_corrupt`` a frame that cannot be decoded is replaced by the nearest
readable frame of its tracklet and named once in a warning; otherwise a ``DatasetError`` names it.
``scan_images`` lists all unreadable frames up front (``python -m ssn3d datasets info ... --check``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ssn3d.data.datasets.base import DatasetError
from ssn3d.data.images import load_image
from ssn3d.data.sampling import IdentitySampler
from ssn3d.data.tracklet import Tracklet
from ssn3d.keypoints import NUM_PARTS, resize_keypoints

log = logging.getLogger(__name__)

_UNREADABLE: set[str] = set()  # per process: frames already reported


# --------------------------------------------------------------------------- decoding


def _is_readable(path: str) -> bool:
    try:
        load_image(path, (1, 1))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False
    return True


def scan_images(
    tracklets: Sequence[Tracklet], progress: Callable[[int, int], None] | None = None
) -> list[str]:
    """Every frame of ``tracklets`` that cannot be decoded (each path once, in order).

    Args:
        tracklets: the tracklets to check.
        progress: called as ``progress(done, total)`` after each frame.
    """
    paths = list(dict.fromkeys(p for t in tracklets for p in t.paths))
    bad = []
    for i, path in enumerate(paths):
        if not _is_readable(path):
            bad.append(path)
        if progress is not None:
            progress(i + 1, len(paths))
    return bad


def _nearest_first(i: int, n: int) -> Iterator[int]:
    """i, i-1, i+1, i-2, i+2, ... within 0..n-1."""
    yield i
    for d in range(1, n):
        for j in (i - d, i + d):
            if 0 <= j < n:
                yield j


def read_frames(
    paths: Sequence[str], indices: Sequence[int], size: tuple[int, int] | None, skip_corrupt: bool
) -> tuple[list[Image.Image], list[tuple[int, int]], list[int]]:
    """Decode ``paths[i]`` for i in ``indices``; an unreadable frame is replaced by its nearest readable one.

    Returns:
        the images, their original sizes, and the frame index actually used for each position.
    """
    images, sizes, used = [], [], []
    for i in indices:
        for j in _nearest_first(i, len(paths)):
            path = paths[j]
            if path in _UNREADABLE and skip_corrupt:
                continue
            try:
                img, original = load_image(path, size)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
                if not skip_corrupt:
                    raise DatasetError(
                        f"{path} cannot be decoded ({e}); replace the file, "
                        "or set data.skip_corrupt=true to skip it."
                    ) from None
                _UNREADABLE.add(path)
                log.warning("skipping unreadable frame %s (%s); using a neighbouring frame instead", path, e)
                continue
            images.append(img)
            sizes.append(original)
            used.append(j)
            break
        else:
            raise DatasetError(
                f"no frame of the tracklet starting at {paths[0]} can be decoded; remove the tracklet."
            )
    return images, sizes, used


# --------------------------------------------------------------------------- training clips


def sample_indices(num_frames: int, seq_len: int, stride: int, rng: np.random.Generator) -> np.ndarray:
    """Frame indices of one training clip (see the module docstring); (seq_len,) sorted int64."""
    if num_frames < 1:
        raise ValueError("a tracklet needs at least one frame.")
    steps = stride * np.arange(seq_len)
    span = int(steps[-1]) + 1
    if num_frames >= span:
        return int(rng.integers(0, num_frames - span + 1)) + steps
    if num_frames >= seq_len:
        return np.sort(rng.choice(num_frames, seq_len, replace=False))
    extra = rng.choice(num_frames, seq_len - num_frames, replace=True)
    return np.sort(np.concatenate([np.arange(num_frames), extra]))


class TrainClips(Dataset):
    """Training clips of T frames at a stride, with the keypoints of their labeled frames.

    ``__getitem__(index)`` returns ``dict(clip (T, 3, H, W) float, keypoints (T, 9, 3) float (zeros
    where unlabeled), anchor_frames (L, 3, H, W), anchor_keypoints (L, 9, 3), pid int, camid int,
    index int)``, L <= ``anchor_frames`` the tracklet's labeled frames (0 without labels).

    With ``set_uint8(True)`` the clip and anchor frames are uint8, resized but not mirrored
    (``ClipTransform.to_uint8``: a quarter of the bytes a worker sends), and the item adds ``flip``
    (bool) and ``anchor_flips`` (L,) bool for ``normalize_and_flip`` to finish on the device; the
    keypoints are already mirrored, and the random stream is the float path's, so both give the same
    numbers.

    Args:
        dataset_tracklets: the training tracklets.
        root: the dataset root; frame paths relative to it are the keys of ``labels``.
        seq_len: T (paper: 4).
        stride: frames between clip frames (paper: 8).
        transform: a ``ClipTransform`` (train mode).
        labels: {relative frame path: (9, 3) keypoints in the frame's pixels} from the label store.
        seed: base seed of the clip sampling and augmentation.
        anchor_frames: labeled frames of the tracklet that come with each clip (a random subset when it
            has more; paper: two labeled frames per tracklet).
        skip_corrupt: replace unreadable frames (with a warning) instead of raising ``DatasetError``.
    """

    def __init__(
        self,
        dataset_tracklets: list[Tracklet],
        *,
        root: str | os.PathLike,
        seq_len: int,
        stride: int,
        transform: Callable,
        labels: dict[str, np.ndarray] | None = None,
        seed: int = 0,
        anchor_frames: int = 2,
        skip_corrupt: bool = True,
    ) -> None:
        if seq_len < 1 or stride < 1:
            raise ValueError(f"seq_len={seq_len} and stride={stride} must be >= 1.")
        self.tracklets = list(dataset_tracklets)
        self.root = os.path.abspath(os.fspath(root))
        self.seq_len, self.stride, self.transform = seq_len, stride, transform
        self.seed, self.skip_corrupt, self.anchor_frames = seed, skip_corrupt, anchor_frames
        self.size = (transform.width, transform.height) if hasattr(transform, "width") else None
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._uint8 = torch.zeros((), dtype=torch.bool).share_memory_()
        self.labeled: list[dict[int, np.ndarray]] = [{} for _ in self.tracklets]
        if labels:
            prefix = self.root.rstrip(os.sep) + os.sep
            for ti, t in enumerate(self.tracklets):
                for fi, path in enumerate(t.paths):
                    rel = path[len(prefix) :] if path.startswith(prefix) else os.path.relpath(path, self.root)
                    kps = labels.get(rel.replace(os.sep, "/"))
                    if kps is not None:
                        self.labeled[ti][fi] = np.asarray(kps, dtype=np.float32).reshape(NUM_PARTS, 3)

    @property
    def num_labeled_frames(self) -> int:
        return sum(len(d) for d in self.labeled)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's random stream (reaches DataLoader workers, persistent ones included)."""
        self._epoch.fill_(int(epoch))

    def set_uint8(self, on: bool) -> None:
        """Send uint8 frames and flip decisions (reaches DataLoader workers, persistent ones included)."""
        if on and not hasattr(self.transform, "to_uint8"):
            raise ValueError(
                f"uint8 items need a transform with to_uint8 (a ClipTransform), not {self.transform!r}."
            )
        self._uint8.fill_(bool(on))

    @property
    def uint8(self) -> bool:
        return bool(self._uint8)

    def __len__(self) -> int:
        return len(self.tracklets)

    def _item(self, index: int, repeat: int) -> dict:
        tracklet = self.tracklets[index]
        rng = np.random.default_rng([self.seed, int(self._epoch), index, repeat])
        labeled = self.labeled[index]
        idx = sample_indices(len(tracklet.paths), self.seq_len, self.stride, rng)
        uint8 = self.uint8
        clip, kps, flip = self._frames(tracklet, idx.tolist(), labeled, rng, uint8)
        chosen = sorted(labeled)
        if len(chosen) > self.anchor_frames:
            chosen = sorted(rng.choice(chosen, self.anchor_frames, replace=False).tolist())
        if chosen:
            anchors, anchor_kps, anchor_flip = self._frames(tracklet, chosen, labeled, rng, uint8)
        else:
            anchors, anchor_kps = clip.new_zeros(0, *clip.shape[1:]), torch.zeros(0, NUM_PARTS, 3)
            anchor_flip = False
        item = {
            "clip": clip,
            "keypoints": kps,
            "anchor_frames": anchors,
            "anchor_keypoints": anchor_kps,
            "pid": int(tracklet.pid),
            "camid": int(tracklet.camid),
            "index": int(index),
        }
        if uint8:  # one decision per clip, and one for the tracklet's labeled frames (they are one call)
            item["flip"] = flip
            item["anchor_flips"] = torch.full((anchors.shape[0],), anchor_flip, dtype=torch.bool)
        return item

    def _frames(
        self,
        tracklet: Tracklet,
        indices: list[int],
        labeled: dict[int, np.ndarray],
        rng: np.random.Generator,
        uint8: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Frames ``indices`` -> transformed (L, 3, H, W), their keypoints (L, 9, 3) (zeros where
        unlabeled) and, for uint8 frames, whether the device is to mirror them (False otherwise)."""
        images, originals, used = read_frames(tracklet.paths, indices, self.size, self.skip_corrupt)
        kps = np.zeros((len(used), NUM_PARTS, 3), np.float32)
        for k, (j, original, img) in enumerate(zip(used, originals, images)):
            if j in labeled:  # labels are in original pixels; a drafted JPEG decoded smaller
                kps[k] = resize_keypoints(labeled[j], original, img.size)
        flip = False
        if uint8:
            frames, kps, flip = self.transform.to_uint8(images, kps, rng)
        else:
            frames, kps = self.transform(images, kps, rng)
        return frames, torch.from_numpy(np.ascontiguousarray(kps, dtype=np.float32)), flip

    def __getitem__(self, index: int) -> dict:
        return self._item(int(index), 0)

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        """A whole batch: a tracklet drawn twice in one batch gets two different clips."""
        seen: dict[int, int] = {}
        out = []
        for i in indices:
            i = int(i)
            out.append(self._item(i, seen.get(i, 0)))
            seen[i] = seen.get(i, 0) + 1
        return out


def collate_clips(items: list[dict]) -> dict[str, torch.Tensor]:
    """Stack items: clip (B, T, 3, H, W), keypoints (B, T, 9, 3), pids (B,), camids (B,), indices (B,),
    and the batch's labeled frames concatenated: anchor_frames (M, 3, H, W), anchor_keypoints (M, 9, 3).

    uint8 items (``TrainClips.set_uint8``) add flips (B,) and anchor_flips (M,) bool."""
    batch = {
        "clip": torch.stack([it["clip"] for it in items]),
        "keypoints": torch.stack([it["keypoints"] for it in items]),
        "anchor_frames": torch.cat([it["anchor_frames"] for it in items]),
        "anchor_keypoints": torch.cat([it["anchor_keypoints"] for it in items]),
        "pids": torch.tensor([it["pid"] for it in items], dtype=torch.long),
        "camids": torch.tensor([it["camid"] for it in items], dtype=torch.long),
        "indices": torch.tensor([it["index"] for it in items], dtype=torch.long),
    }
    if "flip" in items[0]:
        batch["flips"] = torch.tensor([it["flip"] for it in items], dtype=torch.bool)
        batch["anchor_flips"] = torch.cat([it["anchor_flips"] for it in items])
    return batch


def build_train_loader(
    clips: TrainClips, sampler: IdentitySampler, workers: int, pin_memory: bool
) -> DataLoader:
    """A DataLoader of P x K batches (see ``collate_clips``); persistent workers when ``workers > 0``.

    Call ``sampler.set_epoch(e)`` and ``clips.set_epoch(e)`` before iterating epoch ``e``.
    """
    return DataLoader(
        clips,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        collate_fn=collate_clips,
        prefetch_factor=4 if workers > 0 else None,
    )


# --------------------------------------------------------------------------- test chunks


def chunk_bounds(num_frames: int, chunk: int) -> list[tuple[int, int]]:
    """Consecutive [start, end) ranges of up to ``chunk`` frames covering a tracklet."""
    if chunk < 1:
        raise ValueError(f"chunk={chunk} must be >= 1.")
    return [(s, min(s + chunk, num_frames)) for s in range(0, num_frames, chunk)]


def _chunk_tensor(
    tracklet: Tracklet, start: int, end: int, transform: Callable, skip_corrupt: bool
) -> torch.Tensor:
    size = (transform.width, transform.height) if hasattr(transform, "width") else None
    images, _, _ = read_frames(tracklet.paths, range(start, end), size, skip_corrupt)
    return transform(images, None, None)[0]


def iter_tracklet_chunks(
    tracklet: Tracklet, transform: Callable, chunk: int = 32, *, skip_corrupt: bool = True
) -> Iterator[torch.Tensor]:
    """Every frame of a tracklet, as consecutive (chunk_len, 3, H, W) tensors (paper: 32-frame clips)."""
    for start, end in chunk_bounds(len(tracklet.paths), chunk):
        yield _chunk_tensor(tracklet, start, end, transform, skip_corrupt)


class TestFrames(Dataset):
    """All test chunks of a list of tracklets, for a parallel DataLoader (``build_test_loader``).

    ``__getitem__(i)`` returns ``dict(clip (L, 3, H, W), tracklet int, length L)``; chunks come in
    tracklet order, so features can be pooled with ``pool_tracklet_features``.

    Args:
        tracklets: query or gallery tracklets.
        transform: a ``ClipTransform`` in test mode.
        chunk: frames per chunk (paper: 32).
        skip_corrupt: replace unreadable frames instead of raising.
    """

    __test__ = False  # not a pytest class

    def __init__(
        self,
        tracklets: Sequence[Tracklet],
        transform: Callable,
        chunk: int = 32,
        *,
        skip_corrupt: bool = True,
    ) -> None:
        self.tracklets, self.transform, self.skip_corrupt = list(tracklets), transform, skip_corrupt
        self.chunks = [
            (ti, s, e) for ti, t in enumerate(self.tracklets) for s, e in chunk_bounds(len(t.paths), chunk)
        ]

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> dict:
        ti, s, e = self.chunks[i]
        clip = _chunk_tensor(self.tracklets[ti], s, e, self.transform, self.skip_corrupt)
        return {"clip": clip, "tracklet": ti, "length": e - s}


def build_test_loader(frames: TestFrames, workers: int, pin_memory: bool) -> DataLoader:
    """One chunk per step (chunks differ in length), decoded by ``workers`` processes."""
    return DataLoader(frames, batch_size=None, shuffle=False, num_workers=workers, pin_memory=pin_memory)


def pool_tracklet_features(
    features: torch.Tensor,
    lengths: Sequence[int] | torch.Tensor,
    owners: Sequence[int] | torch.Tensor | None = None,
    num_tracklets: int | None = None,
) -> torch.Tensor:
    """Tracklet features = chunk features averaged with chunk-length weights (the mean over frames).

    Args:
        features: (M, D) one row per chunk.
        lengths: (M,) frames per chunk.
        owners: (M,) tracklet index of each chunk; None means all chunks belong to one tracklet.
        num_tracklets: number of output rows (default: max owner + 1).

    Returns:
        (num_tracklets, D), or (D,) when ``owners`` is None.
    """
    w = torch.as_tensor(lengths, dtype=features.dtype, device=features.device)
    if features.dim() != 2 or w.shape != features.shape[:1]:
        raise ValueError(
            f"features {tuple(features.shape)} and lengths {tuple(w.shape)} must be (M, D) and (M,)."
        )
    if owners is None:
        return (features * w[:, None]).sum(0) / w.sum()
    own = torch.as_tensor(owners, dtype=torch.long, device=features.device)
    n = int(num_tracklets if num_tracklets is not None else int(own.max()) + 1)
    total = torch.zeros(n, features.shape[1], dtype=features.dtype, device=features.device)
    total.index_add_(0, own, features * w[:, None])
    weight = torch.zeros(n, dtype=features.dtype, device=features.device).index_add_(0, own, w)
    if bool((weight == 0).any()):
        raise ValueError(f"tracklet {int(torch.nonzero(weight == 0)[0])} has no chunk features.")
    return total / weight[:, None]
