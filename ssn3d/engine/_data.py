"""Training data for the loop: the dataset, its labels for anchored SSN, the P x K loader that can resume.

Paper, "Semi-supervised Training" and "Different Learning Strategy": the semi-supervised strategy
mixes a few labeled frames (two per tracklet in the paper) into the batches as anchors; the
supervised strategy uses labels (OpenPose's in the paper) on every frame. Both read the label store
of the dataset being trained (``ssn3d.annotations``); a batch carries its tracklets' labeled frames
beside the clips (``ssn3d.data.video.TrainClips``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from ssn3d.annotations import AnnotationStore
from ssn3d.config import Config, ConfigError
from ssn3d.data.datasets import VideoReIDDataset, build_dataset
from ssn3d.data.sampling import IdentitySampler
from ssn3d.data.transforms import ClipTransform
from ssn3d.data.video import TrainClips, build_train_loader
from ssn3d.engine.distributed import DistInfo
from ssn3d.serving.workspace import Workspace

_logger = logging.getLogger(__name__)


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
    return (workspace or Workspace.from_env()).annotations / f"{dataset.dataset_id}.json"


def load_labels(
    cfg: Config, dataset: VideoReIDDataset, workspace: Workspace | None = None
) -> dict[str, np.ndarray]:
    """Keypoint labels of the training frames, for the semi and supervised strategies.

    Returns {} for the unsupervised strategy and the baselines. ``semi`` with no labels for the
    training frames says so once and trains unsupervised; ``supervised`` without labels is refused.
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
    tracklets = sum(any(dataset.relpath(p) in labels for p in t.paths) for t in dataset.train)
    _logger.info(
        "%d labeled frames from %s anchor %s SSN (%d of %d training tracklets have labels).",
        len(labels),
        path,
        m.strategy,
        tracklets,
        len(dataset.train),
    )
    return labels


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
