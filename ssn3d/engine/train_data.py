"""Training data for the loop: the dataset, its labels for anchored SSN, the P x K loader that can resume.

Paper, "Semi-supervised Training" and "Different Learning Strategy": the semi-supervised strategy
mixes a few labeled frames (two per tracklet in the paper) into the batches as anchors; the
supervised strategy uses labels (OpenPose's in the paper) on every frame. Both read the label store
of the dataset being trained (``ssn3d.labels.store``); a batch carries its tracklets' labeled frames
beside the clips (``ssn3d.data.video.TrainClips``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssn3d.config import Config, ConfigError, resolved_backbone_stages
from ssn3d.data.datasets import VideoReIDDataset, build_dataset
from ssn3d.data.sampling import IdentitySampler
from ssn3d.data.transforms import ClipTransform
from ssn3d.data.video import TrainClips, build_train_loader
from ssn3d.engine.distributed import DistInfo
from ssn3d.io import file_lock
from ssn3d.labels.propagated import labels_digest, params_record, read_propagated, write_propagated
from ssn3d.labels.propagation import PropagationParams, propagate_labels
from ssn3d.labels.schema import AnnotationError
from ssn3d.labels.store import AnnotationStore, default_store_path
from ssn3d.models.backbone import Backbone
from ssn3d.serving.workspace import Workspace

_logger = logging.getLogger(__name__)

PROPAGATED_FILE = "propagated-labels.json"  # in the run folder: labels propagated for this run


def load_dataset(cfg: Config) -> VideoReIDDataset:
    """The dataset of ``cfg.data`` (``data.root`` is required)."""
    if not cfg.data.root:
        raise ConfigError(
            f"data.root is empty; set it to the {cfg.data.dataset} dataset's folder (data.root=PATH)."
        )
    return build_dataset(cfg.data.dataset, cfg.data.root, **cfg.data.options)


def label_store_path(cfg: Config, dataset: VideoReIDDataset, workspace: Workspace | None = None) -> Path:
    """``data.annotations`` when set, else ``<workspace>/annotations/<dataset id>.json``."""
    if cfg.data.annotations:
        return Path(cfg.data.annotations).expanduser()
    return default_store_path(workspace or Workspace.from_env(), dataset.dataset_id)


# Long on purpose: long only by its docstring (the strategies' rules for which labels count).
def load_labels(
    cfg: Config,
    dataset: VideoReIDDataset,
    workspace: Workspace | None = None,
    *,
    run_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """Keypoint labels of the training frames, for the semi and supervised strategies.

    Returns {} for the unsupervised strategy and the baselines. ``semi`` with no labels for the
    training frames says so once and trains unsupervised; ``supervised`` without labels is refused.

    With ``data.propagate_labels`` > 0 (not in the paper; ``ssn3d.labels.propagation``) the labels are
    also carried to the frames within 3 of each labeled frame of its tracklet, by the initial model's
    backbone (the one ``build_model`` makes after ``torch.manual_seed(train.seed)``), and those frames
    join the labeled ones. They are never written into the label store: ``RUN/propagated-labels.json``
    keeps them, and a resume (or another rank) with the same labels and parameters reads them back.

    Args:
        cfg: the run's config.
        dataset: its dataset.
        workspace: where ``annotations/`` lives when ``data.annotations`` is empty.
        run_dir: the run folder, where propagated labels are cached (None: not cached).
        device: where the backbone runs for propagation.
    """
    m = cfg.model
    if m.arch != "ssn3d" or m.strategy == "unsupervised":
        return {}
    path = label_store_path(cfg, dataset, workspace)
    frames = AnnotationStore(path).frames() if path.is_file() else {}
    train = {dataset.relpath(p) for t in dataset.train for p in t.paths}
    labels = {k: v for k, v in frames.items() if k in train}
    if not labels:
        where = (
            f"{path} holds no labels for its training frames"
            if path.is_file()
            else f"there is no label file {path}"
        )
        if m.strategy == "supervised":
            raise ConfigError(
                f"model.strategy=supervised needs keypoints on the training frames but {where}; label them or set "
                "data.annotations=FILE."
            )
        _logger.warning("Semi-supervised SSN without anchors: %s, so this run trains unsupervised.", where)
        return {}
    where = str(path)
    if cfg.data.propagate_labels > 0:
        propagated = propagated_labels(cfg, dataset, labels, run_dir=run_dir, device=device)
        where = (
            f"{path} ({len(labels)}) and propagation at similarity >= {cfg.data.propagate_labels:g} "
            f"({len(propagated)})"
        )
        labels = {**propagated, **labels}  # a manual label always wins
    tracklets = sum(any(dataset.relpath(p) in labels for p in t.paths) for t in dataset.train)
    _logger.info(
        "%d labeled frames from %s anchor %s SSN (%d of %d training tracklets have labels).",
        len(labels),
        where,
        m.strategy,
        tracklets,
        len(dataset.train),
    )
    return labels


# Long on purpose: cache check, backbone and propagation under one lock that must span all of them.
def propagated_labels(
    cfg: Config,
    dataset: VideoReIDDataset,
    labels: dict[str, np.ndarray],
    *,
    run_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """{frame key: (9, 3) keypoints} propagated from ``labels`` within the training tracklets (see ``load_labels``).

    Computed with the initial model's backbone, or read from ``RUN/propagated-labels.json`` when that
    file was written for the same labels, parameters, backbone, weights, frame size and seed.
    """
    m, d = cfg.model, cfg.data
    params = PropagationParams(threshold=d.propagate_labels)
    meta = params_record(
        params,
        labels=labels_digest(labels),
        backbone=m.backbone,
        backbone_stages=resolved_backbone_stages(m),
        in_channels=m.in_channels,
        weights=m.weights,
        height=d.height,
        width=d.width,
        seed=cfg.train.seed,
    )
    cache = Path(run_dir) / PROPAGATED_FILE if run_dir is not None else None
    with file_lock(cache) if cache is not None else contextlib.nullcontext():
        if cache is not None and cache.is_file():  # one process computes, the others (ranks, resumes) read
            try:
                frames, stored = read_propagated(cache)
            except AnnotationError as e:
                _logger.warning("Propagated labels %s are not readable (%s); propagating again.", cache, e)
            else:
                if stored == meta:
                    _logger.info("Propagated labels of %d frames read from %s.", len(frames), cache)
                    return {k: f.keypoints for k, f in frames.items()}
                _logger.info(
                    "Propagated labels in %s were made for other labels or settings; propagating again.",
                    cache,
                )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.train.seed)  # what build_model draws first: the initial model's backbone
            backbone = Backbone(
                name=m.backbone,
                stages=resolved_backbone_stages(m),
                in_channels=m.in_channels,
                weights=m.weights,
            )
        if m.weights in ("none", ""):
            _logger.warning(
                "data.propagate_labels matches features of a random-init backbone; it is meant with "
                "model.weights=imagenet or a checkpoint."
            )

        def progress(done: int, total: int) -> None:
            if done % max(1, total // 10) == 0 and done < total:
                _logger.info("Propagating labels: %d of %d labeled tracklets.", done, total)

        frames = propagate_labels(
            backbone.to(device),
            dataset.train,
            labels,
            dataset.relpath,
            height=d.height,
            width=d.width,
            params=params,
            progress=progress,
        )
        if cache is not None:
            write_propagated(cache, frames, meta=meta)
    return {k: f.keypoints for k, f in frames.items()}


class ResumableBatches:
    """The identity sampler's batches, minus the first ``skip`` of the epoch when a run resumes mid-epoch.

    Batches depend only on (seed, epoch) (``IdentitySampler``), so skipping the ones already trained
    continues the epoch exactly where the checkpoint stopped, without reading their frames.
    """

    def __init__(self, sampler: IdentitySampler) -> None:
        self.sampler = sampler
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.sampler.set_epoch(epoch)
        self.skip = skip

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)

    def __iter__(self) -> Iterator[list[int]]:
        skip, self.skip = self.skip, 0
        return islice(iter(self.sampler), skip, None)

    def state(self) -> dict[str, Any]:
        s = self.sampler
        return {
            "seed": s.seed,
            "epoch": s.epoch,
            "world_size": s.world_size,
            "num_ids": s.num_ids,
            "num_instances": s.num_instances,
            "iters_per_epoch": s.iters_per_epoch,
        }


class TrainData:
    """What the loop iterates: ``clips`` (dataset), ``batches`` (sampler), ``loader`` and its epoch length."""

    def __init__(
        self,
        cfg: Config,
        dataset: VideoReIDDataset,
        labels: dict[str, np.ndarray],
        info: DistInfo,
        *,
        pin_memory: bool,
    ) -> None:
        d, t = cfg.data, cfg.train
        if d.num_ids % info.world_size:
            raise ConfigError(
                f"data.num_ids={d.num_ids} must be a multiple of the {info.world_size} processes so each gets whole "
                "identities; change data.num_ids or --nproc_per_node."
            )
        try:
            sampler = IdentitySampler(
                dataset.train,
                d.num_ids,
                d.num_instances,
                seed=t.seed,
                rank=info.rank,
                world_size=info.world_size,
                iters_per_epoch=t.iters_per_epoch,
            )
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.batches = ResumableBatches(sampler)
        transform = ClipTransform(d.height, d.width, train=True, flip_prob=d.flip_prob)
        self.clips = TrainClips(
            dataset.train,
            root=dataset.root,
            seq_len=d.seq_len,
            stride=d.stride,
            transform=transform,
            labels=labels,
            seed=t.seed,
            anchor_frames=d.anchor_frames,
            skip_corrupt=d.skip_corrupt,
        )
        self.loader = build_train_loader(self.clips, self.batches, d.workers, pin_memory)
        self.steps_per_epoch = len(sampler)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.batches.set_epoch(epoch, skip)
        self.clips.set_epoch(epoch)
