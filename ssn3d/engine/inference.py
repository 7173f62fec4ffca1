"""A trained model as a function: frames in, an embedding or attention maps out (for the app and scripts).

Paper, "Training and testing protocols": a tracklet's feature is the average over its 32-frame
clips; "Self-Separated Network", eq. (1)-(2): the N attention maps of a frame, each a softmax over
the feature map's cells. ``FeatureExtractor`` gives both for any list of frames, with the test-time
transform of training (resize to the config's H x W, ImageNet normalization).

One extractor can serve many threads (``st.cache_resource`` shares it between sessions): every
forward pass runs under a lock and in ``torch.inference_mode``, and nothing in the model changes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ssn3d.config import Config
from ssn3d.data.images import load_image
from ssn3d.data.transforms import ClipTransform
from ssn3d.data.video import chunk_bounds, pool_tracklet_features
from ssn3d.engine.checkpoint import load_checkpoint
from ssn3d.keypoints import NUM_PARTS, CellGeometry, register_geometry, resize_keypoints
from ssn3d.models.cells import measure_geometry

_logger = logging.getLogger(__name__)

Frame = str | os.PathLike | np.ndarray | Image.Image


class InferenceError(ValueError):
    """Frames or a request the model cannot serve; the message says what to pass instead."""


def to_pil(frame: Frame, size: tuple[int, int] | None = None) -> Image.Image:
    """A frame path, an (H, W, 3) / (H, W) uint8 array or a PIL image -> an RGB PIL image."""
    if isinstance(frame, Image.Image):
        return frame.convert("RGB")
    if isinstance(frame, np.ndarray):
        if (
            frame.dtype != np.uint8
            or frame.ndim not in (2, 3)
            or (frame.ndim == 3 and frame.shape[2] not in (3, 4))
        ):
            raise InferenceError(
                f"a frame array must be (H, W, 3) or (H, W) uint8, not {frame.shape} {frame.dtype}; convert it first."
            )
        return Image.fromarray(frame).convert("RGB")
    if isinstance(frame, str | os.PathLike):
        if not Path(frame).is_file():
            raise FileNotFoundError(f"frame {frame} does not exist; check the path.")
        return load_image(os.fspath(frame), size)[0]
    raise InferenceError(f"a frame must be a path, a uint8 array or a PIL image, not {type(frame).__name__}.")


class FeatureExtractor:
    """Embeddings and attention maps of a trained model.

    Args:
        model: the embedding model (switched to eval mode).
        cfg: its Config (frame size, chunk length, architecture).
        device: where it runs.
    """

    def __init__(self, model: nn.Module, cfg: Config, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.cfg = cfg
        self.transform = ClipTransform(cfg.data.height, cfg.data.width, train=False)
        self._lock = threading.Lock()
        self.meta: dict = {}
        backbone = getattr(model, "backbone", None)
        with torch.inference_mode():
            probe = torch.zeros(1, 3, cfg.data.height, cfg.data.width, device=self.device)
            fmap = backbone(probe) if backbone is not None else probe
        self._feature_size = (int(fmap.shape[-1]), int(fmap.shape[-2]))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> FeatureExtractor:
        """Rebuild the model a checkpoint describes (loaded with ``weights_only=True``)."""
        model, cfg, meta = load_checkpoint(path, device=device)
        extractor = cls(model, cfg, device)
        extractor.meta = meta
        return extractor

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) frames are resized to (the config's data.width, data.height)."""
        return self.cfg.data.width, self.cfg.data.height

    @property
    def feature_size(self) -> tuple[int, int]:
        """(w, h) of the backbone's feature map: the grid of the attention maps."""
        return self._feature_size

    @property
    def geometry(self) -> CellGeometry:
        """Where the model's feature cells look in its frames (measured once per backbone kind)."""
        backbone = getattr(self.model, "backbone", None)
        if backbone is None:
            return CellGeometry.uniform(self.image_size, self.feature_size)
        return measure_geometry(backbone)

    @property
    def embed_dim(self) -> int:
        return self.cfg.model.embed_dim

    @property
    def num_parts(self) -> int:
        return self.cfg.model.num_parts

    def _clip(self, frames: Sequence[Frame]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Frames -> (T, 3, H, W) normalized tensor and each frame's original (width, height)."""
        if len(frames) == 0:
            raise InferenceError("no frames given; pass at least one frame.")
        size = (self.cfg.data.width, self.cfg.data.height)
        images = [to_pil(f, size) for f in frames]
        return self.transform.to_tensor(images), [im.size for im in images]

    def _keypoints(self, keypoints: np.ndarray | None, sizes: list[tuple[int, int]]) -> torch.Tensor | None:
        """(T, 9, 3) keypoints in each frame's own pixels -> (1, T, 9, 3) in model pixels (supervised models)."""
        needs = self.cfg.model.arch == "ssn3d" and self.cfg.model.strategy == "supervised"
        if not needs:
            return None
        t = len(sizes)
        if keypoints is None:
            _logger.warning(
                "A supervised model without keypoints: every part falls back to the frame's mean window."
            )
            keypoints = np.zeros((t, NUM_PARTS, 3), np.float32)
        kps = np.asarray(keypoints, np.float32)
        if kps.shape != (t, NUM_PARTS, 3):
            raise InferenceError(f"keypoints must be ({t}, {NUM_PARTS}, 3) for {t} frames, not {kps.shape}.")
        moved = np.stack([resize_keypoints(k, s, self.image_size) for k, s in zip(kps, sizes)])
        return torch.from_numpy(moved)[None].to(self.device)

    def embed(self, frames: Sequence[Frame], keypoints: np.ndarray | None = None) -> np.ndarray:
        """One tracklet's embedding (D,): chunks of ``data.test_chunk`` frames, averaged over frames.

        Args:
            frames: the tracklet's frames in temporal order (paths, uint8 arrays or PIL images).
            keypoints: (T, 9, 3) per-frame keypoints, only used by the supervised strategy.
        """
        clip, sizes = self._clip(frames)
        kps = self._keypoints(keypoints, sizes)
        feats, lengths = [], []
        with self._lock, torch.inference_mode():
            for s, e in chunk_bounds(clip.shape[0], self.cfg.data.test_chunk):
                chunk = clip[s:e][None].to(self.device)  # (1, L, 3, H, W)
                feats.append(self.model(chunk, None if kps is None else kps[:, s:e]).float().cpu())
                lengths.append(e - s)
        return pool_tracklet_features(torch.cat(feats), lengths).numpy()

    def attention(self, frames: Sequence[Frame]) -> np.ndarray:
        """The N attention maps of every frame, (T, N, h, w), each map summing to 1 (eq. 2, no anchors).

        Raises:
            InferenceError: the model has no attention (a baseline, or the supervised strategy).
        """
        return self.attention_and_facing(frames)[0]

    def attention_and_facing(
        self, frames: Sequence[Frame]
    ) -> tuple[np.ndarray, list[tuple[int, int, float]] | None]:
        """``attention`` and, for a model with a facing head (``model.facing``, NOT in the paper), how sure it
        is that the person faces the camera, per chunk of frames as the maps were named: [(start, end, p in
        [0, 1])], above 0.5 named as a person facing the camera has them; None without a head.

        Raises:
            InferenceError: the model has no attention (a baseline, or the supervised strategy).
        """
        if not hasattr(self.model, "attention_and_facing") or self.cfg.model.strategy == "supervised":
            raise InferenceError(
                f"a {self.cfg.model.arch} model with the {self.cfg.model.strategy} strategy has no attention maps; "
                "use an SSN3D checkpoint trained unsupervised or semi-supervised."
            )
        clip, _ = self._clip(frames)
        # whoever draws these maps (the app's overlays) turns peaks into pixels by this model's geometry
        register_geometry(self.image_size, self.feature_size, self.geometry)
        maps, facing = [], []
        with self._lock, torch.inference_mode():
            for s, e in chunk_bounds(clip.shape[0], self.cfg.data.test_chunk):
                chunk_maps, sure = self.model.attention_and_facing(clip[s:e][None].to(self.device))
                maps.append(chunk_maps[0].float().cpu())
                if sure is not None:
                    facing.append((s, e, float(sure[0])))
        return torch.cat(maps).numpy(), facing or None
