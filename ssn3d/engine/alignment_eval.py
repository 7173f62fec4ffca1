"""Part alignment of a trained model: part PCK of its attention maps on test frames with keypoints.

Keypoints are the synthetic walkers' ground truth, or the label store's labels. The paper shows
attention maps but measures no alignment; PCK is ours (``ssn3d.part_pck.maps_pck``). It is taken on
a bounded, seeded sample of clips of T = ``data.seq_len`` consecutive test frames (at most
``PCK_MAX_FRAMES``), since a part's classifier sees the clip position it was trained on (the
non-shared variant), and the same sample at every evaluation of a run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ssn3d.config import Config
from ssn3d.data.datasets import VideoReIDDataset
from ssn3d.data.images import load_image
from ssn3d.data.tracklet import Tracklet
from ssn3d.data.transforms import ClipTransform
from ssn3d.engine.train_data import label_store_path
from ssn3d.keypoints import NUM_PARTS, VISIBLE, resize_keypoints
from ssn3d.labels.store import AnnotationStore
from ssn3d.part_pck import maps_pck, merge_keypoints, pck_summary

_logger = logging.getLogger(__name__)

PCK_MAX_FRAMES = 256  # test frames of the PCK sample: bounds its cost to 256 frames through the backbone
PCK_MAX_PRIOR = 1024  # training labels averaged for the mean-position baseline
PCK_SEED = 0  # the same sample at every evaluation of a run, so its PCK curve compares like with like


def _frame_keypoints(paths: list[str], keys: list[str], known: dict[str, np.ndarray], size: tuple[int, int]):
    """Keypoints of frames in model pixels ``size`` (W, H): (L, 9, 3), zeros where a frame has none."""
    kps = np.zeros((len(paths), NUM_PARTS, 3), np.float32)
    for k, (p, key) in enumerate(zip(paths, keys)):
        if key in known:
            with Image.open(p) as im:  # the header only: keypoints are in the original frame's pixels
                kps[k] = resize_keypoints(known[key], im.size, size)
    return kps


def alignment_clips(
    tracklets: list[Tracklet],
    has_keypoints: Callable[[str], bool],
    length: int,
    *,
    max_frames: int = PCK_MAX_FRAMES,
    seed: int = PCK_SEED,
) -> list[tuple[Tracklet, int, int]]:
    """A seeded sample of clips (tracklet, start, end) of ``length`` frames that hold keypoints.

    Each tracklet is cut into consecutive clips of ``length`` frames (the last may be shorter); those
    with at least one frame ``has_keypoints`` are candidates, and at most ``max_frames // length`` of
    them are drawn without replacement, in their original order.
    """
    candidates = []
    for t in tracklets:
        for s in range(0, len(t.paths), length):
            if any(has_keypoints(p) for p in t.paths[s : s + length]):
                candidates.append((t, s, min(s + length, len(t.paths))))
    want = max(1, max_frames // length)
    if len(candidates) > want:
        keep = np.sort(np.random.default_rng(seed).choice(len(candidates), want, replace=False))
        candidates = [candidates[i] for i in keep]
    return candidates


def training_keypoints(
    dataset: VideoReIDDataset, labels: dict[str, np.ndarray], size: tuple[int, int]
) -> np.ndarray | None:
    """Labels of training frames in model pixels, (F, 9, 3) (a seeded sample of at most PCK_MAX_PRIOR)."""
    frames = [(p, k) for t in dataset.train for p in t.paths if (k := dataset.relpath(p)) in labels]
    if not frames:
        return None
    if len(frames) > PCK_MAX_PRIOR:
        keep = np.random.default_rng(PCK_SEED).choice(len(frames), PCK_MAX_PRIOR, replace=False)
        frames = [frames[i] for i in sorted(keep)]
    return _frame_keypoints([p for p, _ in frames], [k for _, k in frames], labels, size)


@torch.inference_mode()
def evaluate_alignment(
    model: nn.Module,
    dataset: VideoReIDDataset,
    cfg: Config,
    *,
    device: torch.device,
    max_frames: int = PCK_MAX_FRAMES,
) -> dict[str, Any] | None:
    """Part PCK of the model's attention maps on test frames with keypoints (None: no maps or no keypoints).

    Keypoints: the dataset's ground truth where it has one, else the label store's labels. The
    mean-position baseline averages the store's labels of training frames (what the run could learn
    from), else the evaluated frames. Parts are matched to keypoints (``ssn3d.part_pck.match_parts``)
    unless the run was anchored: an unsupervised run, a semi-supervised one without training labels
    (it trained unsupervised) or N != 9 parts have no part names.
    """
    m = cfg.model
    if not hasattr(model, "attention_maps") or m.strategy == "supervised":
        return None
    try:
        truth, labels = _keypoint_sources(cfg, dataset)
    except (OSError, ValueError) as e:  # PCK is an extra: a damaged label file must not stop an evaluation
        _logger.warning("No part PCK: %s", e)
        return None
    known = {k: v for k, v in merge_keypoints(truth, labels).items() if (v[:, 2] >= VISIBLE).any()}
    if not known:
        return None
    size = (cfg.data.width, cfg.data.height)
    length = max(1, cfg.data.seq_len)
    clips = alignment_clips(
        dataset.query + dataset.gallery, lambda p: dataset.relpath(p) in known, length, max_frames=max_frames
    )
    if not clips:
        return None
    maps, kps = _clip_maps(model, dataset, cfg, clips, known, device=device)
    prior = training_keypoints(dataset, labels, size)
    anchored = m.strategy == "semi" and prior is not None and m.num_parts == NUM_PARTS
    report = maps_pck(
        maps,
        kps,
        size,
        prior=prior,
        prior_source=(
            f"training labels ({len(prior)} frames)" if prior is not None else "the evaluated frames"
        ),
        match=not anchored,
        geometry=model.cell_geometry() if hasattr(model, "cell_geometry") else None,
    )
    report["clips"] = len(clips)
    report["clip_length"] = length
    _logger.info(
        "Part PCK on %d test frames (%d clips): %s",
        report["frames"],
        len(clips),
        " ".join(f"{k} {v:.3f}" for k, v in pck_summary(report).items()),
    )
    return report


def _keypoint_sources(
    cfg: Config, dataset: VideoReIDDataset
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the dataset's ground truth, the label store's labels), each {frame key: (9, 3)}, {} when absent.

    Raises:
        OSError, ValueError: a label file that cannot be read.
    """
    store = label_store_path(cfg, dataset)
    truth = AnnotationStore(dataset.ground_truth_path).frames() if dataset.ground_truth_path else {}
    labels = AnnotationStore(store).frames() if store.is_file() else {}
    return truth, labels


def _clip_maps(
    model: nn.Module,
    dataset: VideoReIDDataset,
    cfg: Config,
    clips: list[tuple[Tracklet, int, int]],
    known: dict[str, np.ndarray],
    *,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """The model's attention maps of every clip frame (F, N, h, w) and their keypoints (F, 9, 3), model pixels."""
    size = (cfg.data.width, cfg.data.height)
    model.eval()
    transform = ClipTransform(cfg.data.height, cfg.data.width, train=False)
    cuda = device.type == "cuda"
    maps, kps = [], []
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and cfg.train.amp):
        for t, s, e in clips:
            paths = list(t.paths[s:e])
            x = transform.to_tensor([load_image(p, size)[0] for p in paths])[None].to(
                device
            )  # (1, L, 3, H, W)
            maps.append(model.attention_maps(x)[0].float().cpu().numpy())  # (L, N, h, w)
            kps.append(_frame_keypoints(paths, [dataset.relpath(p) for p in paths], known, size))
    return np.concatenate(maps), np.concatenate(kps)
