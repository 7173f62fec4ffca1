"""SSN3D: backbone -> SSN per frame -> per-part 3D conv across frames -> fusion (paper, Figure 1).

Train mode returns ``SSN3DOutput(embedding, ssn_logits, attention, ...)`` (L_SSN of the logits is
``ssn3d.losses.ssn_loss``; the extra alignment losses, NOT in the paper, read the other fields, see
``ssn3d.alignment_losses.AlignmentTerms``); eval mode returns the embedding (B, D). A batch of clips is (B, T, C, H, W) throughout; keypoints, when given, are
(B, T, N, 3) rows of (x, y, v) in the clip's pixel coordinates (``ssn3d.keypoints``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ssn3d.keypoints import FLIP_PERMUTATION, CellGeometry, geometry_for
from ssn3d.models.aggregator import Fusion, PartConv3dBlocks
from ssn3d.models.cells import measure_geometry
from ssn3d.models.facing import (
    FacingHead,
    canonical_keypoints,
    canonical_labels,
    facing_targets,
    person_sides,
)
from ssn3d.models.position_prior import counted_log_prior
from ssn3d.models.ssn import SSN, SSNOutput


class AnchorOutput(NamedTuple):
    """The labeled frames fed beside the clips, through each of the G classifiers (training only)."""

    logits: (
        torch.Tensor
    )  # (M, G, N, N) 2nd-round p_{i,j}, labeled parts anchored; (M, G, N, N+1) with background
    map_logits: torch.Tensor  # (M, G, N, h, w) 1st-round A^i
    attention: torch.Tensor  # (M, G, N, h, w)
    cells: torch.Tensor  # (M, N, 2) long keypoint cells (col, row)
    mask: torch.Tensor  # (M, N) bool, True where keypoint i anchors part i
    background_logits: torch.Tensor | None = None  # (M, G, N, N+1) on background windows
    mirrored_attention: torch.Tensor | None = None  # (M, G, N, h, w) of the frames mirrored left to right
    facing_logits: torch.Tensor | None = None  # (M,) "faces the camera" (model.facing)
    facing_target: torch.Tensor | None = None  # (M,) the facing the labels show: 1, 0, NaN unknown


class SSN3DOutput(NamedTuple):
    embedding: torch.Tensor  # (B, D)
    ssn_logits: torch.Tensor | None  # (B, T, N, N) 2nd-round p_{i,j} per frame (N+1 classes with background)
    attention: torch.Tensor | None  # (B, T, N, h, w), None for the supervised strategy
    anchor_logits: torch.Tensor | None = None  # (M, G, N, N) of labeled frames fed beside the clips
    map_logits: torch.Tensor | None = None  # (B, T, N, h, w) 1st-round A^i of the clip frames
    cells: torch.Tensor | None = None  # (B, T, N, 2) keypoint cells of the clip frames (semi/supervised)
    mask: torch.Tensor | None = None  # (B, T, N) anchor mask of the clip frames
    background_logits: torch.Tensor | None = None  # (B, T, N, N+1) 2nd round on background windows
    anchors: AnchorOutput | None = None  # everything of the labeled frames beside the clips
    facing_logits: torch.Tensor | None = None  # (B, T) "faces the camera" of the clip frames (model.facing)
    facing_target: torch.Tensor | None = None  # (B, T) the facing their labels show: 1, 0, NaN unknown


class ClipFeatures(NamedTuple):
    """What SSN gives for a batch of clips, in clip order (B, T, ...); the last four in training only."""

    parts: torch.Tensor  # (B, T, N, C, k, k)
    logits: torch.Tensor | None  # (B, T, N, N[+1])
    attention: torch.Tensor | None  # (B, T, N, h, w)
    map_logits: torch.Tensor | None = None  # (B, T, N, h, w)
    background_logits: torch.Tensor | None = None  # (B, T, N, N+1)
    cells: torch.Tensor | None = None  # (B, T, N, 2)
    mask: torch.Tensor | None = None  # (B, T, N)
    facing_logits: torch.Tensor | None = None  # (B, T)
    facing_target: torch.Tensor | None = None  # (B, T)


def keypoints_to_cells(
    keypoints: torch.Tensor,
    image_size: tuple[int, int],
    feature_size: tuple[int, int],
    geometry: CellGeometry | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., N, 3) pixel keypoints -> (..., N, 2) long cells (col, row) and (..., N) anchor mask.

    The cell is the one whose receptive-field centre is nearest (``CellGeometry.cell_of``, the rule of
    ``ssn3d.keypoints.image_to_feature_cell``); ``geometry`` defaults to ``geometry_for`` the sizes.
    """
    geometry = geometry or geometry_for(image_size, feature_size)
    col, row = geometry.cell_of(keypoints[..., :2].float(), feature_size)
    return torch.stack([col, row], -1).long(), keypoints[..., 2] >= 2


class SSN3D(nn.Module):
    """The SSN3D embedding model.

    Args:
        backbone: a ``Backbone`` (or any module with ``out_channels`` and ``stride``).
        num_parts: N.
        window: k.
        attn_channels: K.
        part_channels: R, width of each part's 3D block.
        embed_dim: D.
        strategy: unsupervised | semi | supervised.
        shared_classifier: one attention classifier for all frames (paper) or one per frame index.
        num_frames: T, the number of classifiers when not shared.
        background_class: an (N+1)-th "no part" output of the attention classifier (NOT in the paper;
            ``ssn3d.models.ssn.SSN``).
        position_prior: weight of the labels' part-position prior on the attention logits (NOT in the
            paper; ``ssn3d.models.position_prior``), set by ``set_position_prior``; 0 = none.
        attn_context: the attention classifier also reads each frame's mean feature (NOT in the paper;
            ``ssn3d.models.ssn.AttentionClassifier``).
        facing: a ``FacingHead``: canonical left/right parts named by it (NOT in the paper;
            ``ssn3d.models.facing``, built by ``facing_head_for``); semi-supervised only, it learns from the
            labeled frames. None: person-side parts, the paper's.
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        num_parts: int = 9,
        window: int = 3,
        attn_channels: int = 512,
        part_channels: int = 256,
        embed_dim: int = 1024,
        strategy: str = "semi",
        shared_classifier: bool = True,
        num_frames: int = 4,
        background_class: bool = False,
        position_prior: float = 0.0,
        attn_context: bool = False,
        facing: FacingHead | None = None,
    ) -> None:
        super().__init__()
        if strategy not in ("unsupervised", "semi", "supervised"):
            raise ValueError(f"strategy must be unsupervised, semi or supervised, not {strategy!r}")
        self.backbone = backbone
        self.strategy, self.shared, self.num_parts = strategy, shared_classifier, num_parts
        c = backbone.out_channels
        n_ssn = 1 if shared_classifier else num_frames
        self.ssn = nn.ModuleList(
            SSN(
                in_channels=c,
                num_parts=num_parts,
                window=window,
                hidden=attn_channels,
                background=background_class,
                position_prior=position_prior,
                context=attn_context,
            )
            for _ in range(n_ssn)
        )
        self.parts3d = PartConv3dBlocks(
            num_parts=num_parts, in_channels=c, channels=part_channels, window=window
        )
        self.fusion = Fusion(in_features=num_parts * part_channels, embed_dim=embed_dim)
        self.embed_dim = embed_dim
        if facing is not None and num_parts != len(FLIP_PERMUTATION):
            raise ValueError(
                f"facing names the {len(FLIP_PERMUTATION)} keypoint parts; this model has {num_parts}"
            )
        self.facing = facing

    def forward_features(
        self, clips: torch.Tensor, keypoints: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """clips (B, T, 3, H, W) -> part windows (B, T, N, C, k, k), 2nd-round logits (B, T, N, N) in
        training (else None), attention (B, T, N, h, w)."""
        out = self.clip_features(clips, keypoints)
        return out.parts, out.logits, out.attention

    def clip_features(self, clips: torch.Tensor, keypoints: torch.Tensor | None = None) -> ClipFeatures:
        """``forward_features`` with the inputs of the extra alignment losses (1st-round logits,
        background logits, keypoint cells and mask) beside it."""
        b, t = clips.shape[:2]
        feats = self.backbone(clips.flatten(0, 1))  # (B*T, C, h, w)
        fh, fw = feats.shape[-2:]
        cells = mask = facing_logits = facing_target = None
        if self.facing is not None and self.training:
            facing_logits = self.facing(feats).unflatten(0, (b, t))  # (B, T)
        if self.facing is not None and keypoints is not None:  # labels into the parts' canonical order
            facing_target = facing_targets(keypoints)  # (B, T)
            keypoints = canonical_keypoints(keypoints, facing_target)
        if keypoints is not None and self.strategy != "unsupervised":
            cells, mask = keypoints_to_cells(
                keypoints, (clips.shape[-1], clips.shape[-2]), (fw, fh), self.cell_geometry()
            )  # (B, T, N, 2)
        feats = feats.unflatten(0, (b, t))  # (B, T, C, h, w)
        # non-shared: classifier g sees frames g, g+G, ... (one per frame index); slices, not index lists,
        # so no index tensor is copied to the device on every call
        g_count = len(self.ssn)
        outs: list[tuple[slice, SSNOutput]] = []
        for g in range(min(g_count, t)):
            frames = slice(None) if self.shared else slice(g, t, g_count)
            out = self.ssn[g](
                feats[:, frames].flatten(0, 1),
                None if cells is None else cells[:, frames].flatten(0, 1),
                None if mask is None else mask[:, frames].flatten(0, 1),
                supervised=self.strategy == "supervised",
            )
            outs.append((frames, out))
        parts, attn, logits, map_logits, background = self._assemble(outs, b, t)
        return ClipFeatures(
            parts, logits, attn, map_logits, background, cells, mask, facing_logits, facing_target
        )

    def _assemble(self, outs: list[tuple[slice, SSNOutput]], b: int, t: int) -> list[torch.Tensor | None]:
        """Put each classifier's frames back in clip order: every field of ``SSNOutput`` as (B, T, ...)."""
        if len(outs) == 1:  # one classifier saw every frame in order: a view, no copy
            return [None if x is None else x.unflatten(0, (b, t)) for x in outs[0][1]]
        first = outs[0][1]
        assembled: list[torch.Tensor | None] = []
        for field, x in enumerate(first):
            whole = None if x is None else x.new_empty(b, t, *x.shape[1:])
            if whole is not None:
                for frames, o in outs:
                    part = o[field]
                    whole[:, frames] = part.unflatten(0, (b, part.shape[0] // b))
            assembled.append(whole)
        return assembled

    def cell_geometry(self) -> CellGeometry:
        """Where the backbone's cells look in the image (measured once per backbone kind)."""
        return measure_geometry(self.backbone)

    def set_position_prior(self, keypoints: np.ndarray, image_size: tuple[int, int]) -> None:
        """Count the part-position prior of every classifier from labels (F, N, 3) in model pixels of
        ``image_size`` (W, H) (``ssn3d.models.position_prior``; a model built without one refuses)."""
        if any(s.prior is None for s in self.ssn):
            raise ValueError("this model was built without a position prior (model.position_prior=0)")
        probe = next(self.backbone.parameters(), None)
        device = probe.device if probe is not None else torch.device("cpu")
        was_training = self.backbone.training
        with (
            torch.no_grad()
        ):  # the map size, read off a forward in eval mode (BatchNorm statistics untouched)
            zeros = torch.zeros(1, 3, image_size[1], image_size[0], device=device)
            h, w = self.backbone.eval()(zeros).shape[-2:]
        self.backbone.train(was_training)
        if self.facing is not None:  # the maps' parts are in canonical order, so is their prior
            keypoints = canonical_labels(keypoints)
        log_prior = counted_log_prior(keypoints, self.cell_geometry(), (w, h))  # (N, h, w)
        for s in self.ssn:
            s.prior.set_prior(log_prior)

    def forward_head(self, parts: torch.Tensor) -> torch.Tensor:
        """(B, T, N, C, k, k) -> (B, D)."""
        return self.fusion(self.parts3d(parts))

    def forward_anchors(
        self, frames: torch.Tensor, keypoints: torch.Tensor, *, mirror: bool = False
    ) -> AnchorOutput | None:
        """Labeled frames (M, 3, H, W) + keypoints (M, N, 3) through each of the G classifiers, labeled
        parts anchored (paper, "Semi-supervised Training"): the labeled images that come with a
        selected snippet, for L_SSN only (and the extra alignment losses).

        Args:
            frames: (M, 3, H, W).
            keypoints: (M, N, 3) pixel keypoints.
            mirror: also run the frames mirrored left to right (one backbone pass with the frames) and
                return their attention, for ``FlipConsistency`` (NOT in the paper).
        """
        if self.strategy != "semi" or not self.training:
            return None
        m = frames.shape[0]
        feats = self.backbone(
            torch.cat([frames, frames.flip(-1)]) if mirror else frames
        )  # (M or 2M, C, h, w)
        feats, mirrored = (feats[:m], feats[m:]) if mirror else (feats, None)
        facing_logits = facing_target = None
        if self.facing is not None:  # labels into the parts' canonical order (ssn3d.models.facing)
            facing_logits, facing_target = self.facing(feats), facing_targets(keypoints)  # (M,), (M,)
            keypoints = canonical_keypoints(keypoints, facing_target)
        cells, mask = keypoints_to_cells(
            keypoints,
            (frames.shape[-1], frames.shape[-2]),
            (feats.shape[-1], feats.shape[-2]),
            self.cell_geometry(),
        )
        outs = [ssn(feats, cells, mask) for ssn in self.ssn]

        def stack(field: str) -> torch.Tensor | None:
            values = [getattr(o, field) for o in outs]
            if values[0] is None:
                return None
            # (M, G, ...); a view for one shared classifier
            return values[0].unsqueeze(1) if len(values) == 1 else torch.stack(values, 1)

        mirrored_attn = None
        if mirrored is not None:
            mirrored_attn = torch.stack([ssn.attention(mirrored) for ssn in self.ssn], 1)  # (M, G, N, h, w)
        return AnchorOutput(
            stack("logits"),
            stack("map_logits"),
            stack("attention"),
            cells,
            mask,
            stack("background_logits"),
            mirrored_attn,
            facing_logits,
            facing_target,
        )

    def forward(
        self,
        clips: torch.Tensor,
        keypoints: torch.Tensor | None = None,
        anchor_frames: torch.Tensor | None = None,
        anchor_keypoints: torch.Tensor | None = None,
        *,
        mirror_anchors: bool = False,
    ) -> SSN3DOutput | torch.Tensor:
        """clips (B, T, 3, H, W), keypoints (B, T, N, 3); in training also the batch's labeled frames
        (M, 3, H, W) with keypoints (M, N, 3), and ``mirror_anchors`` to run their mirrored copies too.
        Train: ``SSN3DOutput``; eval: the embedding (B, D)."""
        feats = self.clip_features(clips, keypoints)
        emb = self.forward_head(feats.parts)
        if not self.training:
            return emb
        anchors = None
        if anchor_frames is not None and anchor_keypoints is not None and anchor_frames.shape[0]:
            anchors = self.forward_anchors(anchor_frames, anchor_keypoints, mirror=mirror_anchors)
        return SSN3DOutput(
            emb,
            feats.logits,
            feats.attention,
            None if anchors is None else anchors.logits,
            feats.map_logits,
            feats.cells,
            feats.mask,
            feats.background_logits,
            anchors,
            feats.facing_logits,
            feats.facing_target,
        )

    @torch.no_grad()
    def attention_maps(self, clips: torch.Tensor) -> torch.Tensor:
        """The N attention maps of every frame, (B, T, N, h, w), each summing to 1 (no anchors), their
        parts named person-side (``attention_and_facing``)."""
        return self.attention_and_facing(clips)[0]

    @torch.no_grad()
    def attention_and_facing(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``attention_maps`` and, with ``facing``, how sure the head is that each clip faces the camera.

        Returns:
            maps (B, T, N, h, w) named person-side (with ``facing``: the canonical maps, each clip's pairs
            swapped by its head's answer), and (B,) in [0, 1], the sigmoid of the clip's mean logit that
            answer was decided by (None without ``facing``); one backbone pass for both.
        """
        b, t = clips.shape[:2]
        flat = self.backbone(clips.flatten(0, 1))  # (B*T, C, h, w)
        feats = flat.unflatten(0, (b, t))
        maps = torch.stack([self.ssn[i % len(self.ssn)].attention(feats[:, i]) for i in range(t)], 1)
        if self.facing is None:
            return maps, None
        logits = self.facing(flat).unflatten(0, (b, t))  # (B, T)
        return person_sides(maps, logits), torch.sigmoid(logits.float().mean(1))
