"""Typed configuration: a YAML file, then ``key=value`` overrides, then validation.

Every field carries the paper's value (section "Implementation Details") where the paper gives one,
and a trailing comment on why where it does not. ``load_config("configs/mars.yaml", ["model.num_parts=6"])``
is the whole API; errors are ``ConfigError`` with a message naming the key and the allowed values.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ssn3d.keypoints import NUM_PARTS, PARTS


class ConfigError(ValueError):
    """A config that cannot be used; the message names the bad key and what is allowed."""


@dataclass
class ModelConfig:
    arch: Literal["ssn3d", "temporal_pooling", "conv3d"] = (
        "ssn3d"  # the paper's model and the two ablation baselines
    )
    backbone: Literal["resnet50", "resnet34", "resnet18", "mobilenet_v2", "none"] = (
        "resnet50"  # paper: ResNet50
    )
    backbone_stages: int = (
        0  # ResNet stages kept after the stem; 0 = the paper's (r50: 3 -> 1024 ch, r34/r18: 2 -> 128 ch)
    )
    weights: str = (
        "imagenet"  # "imagenet" (local torch cache only), a .pth state dict or a run's checkpoint, or "none"
    )
    in_channels: int = 3  # input channels when backbone == "none" (random-data study: 128)
    num_parts: int = 9  # N, paper: head, body, crotch, elbows, knees, feet
    window: int = 3  # k, the sliding window (paper: 3x3 on features, 19x19 on raw paintings)
    attn_channels: int = 512  # K, paper: 512
    strategy: Literal["unsupervised", "semi", "supervised"] = "semi"  # paper's best (Table 1)
    shared_classifier: bool = True  # Table 2: sharing wins by a wide margin
    part_channels: int = 256  # per-part 3D block width (paper silent; see docs/DESIGN.md)
    embed_dim: int = (
        1024  # paper: "fusion layer casts the nine concatenated features to a 1024-dimension vector"
    )
    num_frames: int = 4  # T of a training clip; the non-shared variant keeps one classifier per frame index
    background_class: bool = (
        False  # NOT in the paper: an (N+1)-th "no part" output of the attention classifier (loss.background)
    )
    position_prior: float = (
        0.0  # NOT in the paper: weight of the labels' part-position prior on the attention logits; 0 = off
    )
    attn_context: bool = (
        False  # NOT in the paper: the attention classifier also reads each frame's mean feature (left/right)
    )
    facing: bool = False  # NOT in the paper: canonical left/right parts, named person-side by a facing head (loss.facing)


@dataclass
class LossConfig:
    margin: float = (
        0.3  # triplet margin m of eq. (5) on distances / sqrt(d) (paper silent; the field's usual 0.3)
    )
    ssn_lambda: float = 0.1  # eq. (6); paper: 0.1 iLIDS/MARS, 0.05 DukeMTMC
    ssn_reduction: Literal["mean", "sum"] = (
        "mean"  # mean over parts: chance level is log N for any N; "sum" is eq. (4) verbatim (the recipes)
    )
    triplet_reduction: Literal["mean", "sum"] = (
        "mean"  # mean over anchors: scale independent of the batch; "sum" is eq. (5) verbatim (the recipes)
    )
    # Extra alignment terms, each NOT in the paper and 0 (off) by default (ssn3d.alignment_losses, docs/DESIGN.md)
    position_ce: float = 0.0  # weight: labeled frames' 1st-round maps pulled onto the keypoint cell
    position_sigma: float = 0.0  # PositionCE target width in cells; 0 = one-hot
    temporal_stability: float = 0.0  # weight: a part's peak moves little between neighbouring clip frames
    flip_consistency: float = (
        0.0  # weight: mirrored labeled frames give the mirrored maps, left/right swapped
    )
    background: float = 0.0  # weight: (N+1)-way CE with "no part" windows; needs model.background_class
    facing: float = 0.0  # weight: the facing head's CE on labeled frames; needs model.facing


@dataclass
class DataConfig:
    dataset: str = "folder"  # mars | ilidsvid | dukev | prid2011 | folder
    root: str = ""  # the dataset's root directory
    options: dict[str, Any] = field(
        default_factory=dict
    )  # loader options, e.g. {gallery: query+rest, split: 0}
    height: int = 256  # paper: 256 x 128
    width: int = 128
    seq_len: int = 4  # T, paper: 4 frames
    stride: int = 8  # paper: stride 8 with a random start
    num_ids: int = 8  # P, paper: 8 individuals per batch
    num_instances: int = 4  # K, paper: 4 snippets per individual
    test_chunk: int = 32  # paper: 32-frame test clips, features averaged per tracklet
    flip_prob: float = 0.5  # the field's usual horizontal flip
    anchor_frames: int = (
        2  # labeled frames of a tracklet fed beside each of its clips (paper: 2 labeled per tracklet)
    )
    annotations: str = ""  # label store for semi/supervised anchors; "" = annotations/<dataset id>.json
    propagate_labels: float = 0.0  # not in the paper: min cosine to carry labels to frames +-3; 0 = off
    workers: int = 4  # DataLoader worker processes
    uint8_batches: bool | None = (
        None  # workers send uint8 frames, the device normalizes and flips; None = on CUDA only (faster there)
    )
    skip_corrupt: bool = True  # skip unreadable frames with a warning instead of dying mid-epoch


@dataclass
class TrainConfig:
    epochs: int = 150  # paper: 150
    lr: float = 3e-4  # paper: Adam 3e-4
    weight_decay: float = 5e-4  # paper: 5e-4
    lr_step: int = 50  # paper: x0.1 after 50 epochs, once (MultiStepLR at this one epoch, not every lr_step)
    lr_gamma: float = 0.1
    iters_per_epoch: int = 0  # 0 = one pass over the training identities
    max_steps: int = 0  # 0 = no cap; small values make tiny test runs
    eval_every: int = 10  # epochs between query/gallery evaluations (0 = only at the end)
    log_every: int = 10  # steps between metrics.jsonl lines
    ckpt_every: int = 1  # epochs between `last` checkpoints
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True  # faster convolutions on CUDA
    compile: bool = False  # torch.compile the model (CUDA only)
    seed: int = 0
    labeled_warmup: float = (
        0.0  # NOT in the paper: fraction of steps whose L_SSN comes from labeled frames only
    )
    attn_lr_mult: float = 1.0  # NOT in the paper: lr multiplier of the attention classifier's parameters


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- loading


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise a ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(
                f"{key}={value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}."
            )
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}={value!r} must be true or false.")
    if tp is int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | str)
            or (isinstance(value, str) and not _is_int(value))
        ):
            raise ConfigError(f"{key}={value!r} must be a whole number.")
        return int(value)
    if tp is float:
        try:
            if isinstance(value, bool):
                raise TypeError
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{key}={value!r} must be a number.") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key}={value!r} must be a finite number.")
        return number
    if tp is str:
        if isinstance(value, dict | list):
            raise ConfigError(f"{key} must be a string, not {type(value).__name__}.")
        return "" if value is None else str(value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping (key: value pairs).")
        return dict(value)
    return value


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


def _from_dict(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(
            f"{prefix.rstrip('.') or 'the config'} must be a mapping, not {type(data).__name__}."
        )
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        bad = sorted(unknown, key=str)[0]
        shown = bad if isinstance(bad, str) and bad.isidentifier() else repr(bad)
        raise ConfigError(f"unknown key {prefix}{shown}; known keys here: {', '.join(sorted(names))}.")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _from_dict(tp, value or {}, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, tp, f"{prefix}{name}")
    return cls(**kwargs)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. train.epochs=10.")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def config_from_dict(data: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Build and validate a Config from a nested dict plus ``key=value`` overrides."""
    if data is not None and not isinstance(data, dict):
        kind = type(data).__name__
        raise ConfigError(f"the config must be a mapping of sections (model, loss, data, train), not {kind}.")
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in (data or {}).items()}
    for text in overrides:
        path, value = _parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section.")
        node[path[-1]] = value
    cfg = _from_dict(Config, data, "")
    validate(cfg)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None), apply overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass one of the files in configs/.")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not UTF-8 text; save the config as UTF-8 YAML.") from None
        except yaml.YAMLError as e:  # one line: where and what, not the parser's multi-line excerpt
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(
                f"{path} is not valid YAML{where}: {getattr(e, 'problem', None) or e}."
            ) from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of sections (model, loss, data, train).")
    try:
        return config_from_dict(data, overrides)
    except ConfigError as e:
        if path is not None and not str(e).startswith(str(path)):
            raise ConfigError(f"{path}: {e}") from None
        raise


def save_config(cfg: Config, path: str | Path) -> None:
    from ssn3d.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


# --------------------------------------------------------------------------- validation

_DEFAULT_STAGES = {"resnet50": 3, "resnet34": 2, "resnet18": 2, "mobilenet_v2": 3, "none": 0}
# the torchvision networks, each with an ImageNet file (``ssn3d.models.backbone.IMAGENET_FILES``); named
# here too so that the command line can offer them without importing torch
NETWORKS = tuple(name for name in _DEFAULT_STAGES if name != "none")


def resolved_backbone_stages(m: ModelConfig) -> int:
    """The number of ResNet stages after the stem (0 in the config means the paper's choice)."""
    return m.backbone_stages or _DEFAULT_STAGES[m.backbone]


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{key}={value} must be positive.")


# Long on purpose: a flat list of independent checks, one per setting, in the order of the config.
def validate(cfg: Config) -> None:
    m, lo, d, t = cfg.model, cfg.loss, cfg.data, cfg.train
    for key in (
        "num_parts",
        "window",
        "attn_channels",
        "part_channels",
        "embed_dim",
        "num_frames",
        "in_channels",
    ):
        _positive(f"model.{key}", getattr(m, key))
    if m.num_parts < 2:
        raise ConfigError(f"model.num_parts={m.num_parts}: SSN separates at least 2 parts.")
    if m.window % 2 == 0:
        raise ConfigError(f"model.window={m.window} must be odd so that a window has a centre cell.")
    if m.backbone != "none" and not 0 <= m.backbone_stages <= 4:
        raise ConfigError(f"model.backbone_stages={m.backbone_stages} must be 0 (paper) or 1..4.")
    if m.arch == "ssn3d" and m.strategy != "unsupervised" and m.num_parts != NUM_PARTS:
        raise ConfigError(
            f"model.num_parts={m.num_parts} does not fit model.strategy={m.strategy}: its keypoint anchors name "
            f"{NUM_PARTS} parts ({', '.join(PARTS)}), so set model.num_parts={NUM_PARTS} or strategy=unsupervised."
        )
    if m.strategy == "supervised" and not m.shared_classifier:
        raise ConfigError("model.shared_classifier=false needs attention; the supervised strategy has none.")
    if m.arch != "ssn3d" and m.backbone == "none":
        raise ConfigError(f"model.arch={m.arch} pools backbone features; choose a backbone other than none.")
    if not m.shared_classifier and d.seq_len != m.num_frames:
        raise ConfigError(
            f"model.num_frames={m.num_frames} must equal data.seq_len={d.seq_len} with non-shared classifiers "
            "(one classifier per frame index)."
        )
    if lo.margin < 0 or lo.ssn_lambda < 0:
        raise ConfigError("loss.margin and loss.ssn_lambda must be >= 0.")
    _validate_alignment(cfg)
    for key in ("height", "width", "seq_len", "stride", "num_ids", "num_instances", "test_chunk"):
        _positive(f"data.{key}", getattr(d, key))
    if d.num_ids < 2:
        raise ConfigError(f"data.num_ids={d.num_ids}: a triplet needs at least 2 identities per batch.")
    if not 0.0 <= d.flip_prob <= 1.0:
        raise ConfigError(f"data.flip_prob={d.flip_prob} must lie in [0, 1].")
    if d.anchor_frames < 0:
        raise ConfigError(
            f"data.anchor_frames={d.anchor_frames} must be >= 0 (0: labeled frames only inside clips)."
        )
    if d.workers < 0:
        raise ConfigError(f"data.workers={d.workers} must be >= 0.")
    if not 0.0 <= d.propagate_labels <= 1.0:
        raise ConfigError(
            f"data.propagate_labels={d.propagate_labels} must lie in [0, 1]: the least cosine similarity of a "
            "propagated keypoint's match (0 turns propagation off)."
        )
    for key in ("epochs", "lr", "lr_step"):
        _positive(f"train.{key}", getattr(t, key))
    for key in ("weight_decay", "iters_per_epoch", "max_steps", "eval_every", "ckpt_every"):
        if getattr(t, key) < 0:
            raise ConfigError(f"train.{key}={getattr(t, key)} must be >= 0.")
    _positive("train.log_every", t.log_every)
    if not 0.0 < t.lr_gamma <= 1.0:  # 0 stops learning at the first step; above 1 the lr grows
        raise ConfigError(f"train.lr_gamma={t.lr_gamma} must lie in (0, 1] (paper: 0.1, a tenth per step).")
    if not 0 <= t.seed < 2**32:  # numpy's seeding range (the samplers and the data use numpy)
        raise ConfigError(f"train.seed={t.seed} must be a whole number from 0 to 2**32 - 1.")
    if not (t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:")):
        raise ConfigError(f"train.device={t.device!r}; choose auto, cpu, cuda or cuda:N.")


def _validate_alignment(cfg: Config) -> None:
    """The extra alignment levers (NOT in the paper): each needs the model part it trains."""
    m, lo, d, t = cfg.model, cfg.loss, cfg.data, cfg.train
    keys = ("position_ce", "position_sigma", "temporal_stability", "flip_consistency", "background", "facing")
    for key in keys:
        if getattr(lo, key) < 0:
            raise ConfigError(f"loss.{key}={getattr(lo, key)} must be >= 0 (0 switches it off).")
    if m.position_prior < 0:
        raise ConfigError(f"model.position_prior={m.position_prior} must be >= 0 (0 switches it off).")
    attention = m.arch == "ssn3d" and m.strategy != "supervised"
    semi = m.arch == "ssn3d" and m.strategy == "semi"
    needs = {
        "loss.position_ce": (
            lo.position_ce > 0,
            semi,
            "model.strategy=semi (it pulls attention onto labeled keypoints)",
        ),
        "loss.flip_consistency": (
            lo.flip_consistency > 0,
            semi,
            "model.strategy=semi (it mirrors the labeled frames and swaps left and right parts)",
        ),
        "train.labeled_warmup": (t.labeled_warmup > 0, semi, "model.strategy=semi (L_SSN of labeled frames)"),
        "loss.temporal_stability": (
            lo.temporal_stability > 0,
            attention,
            "SSN attention (model.arch=ssn3d, strategy unsupervised or semi)",
        ),
        "model.position_prior": (
            m.position_prior > 0,
            semi,
            "model.strategy=semi (the prior is counted from the labeled keypoints)",
        ),
        "model.facing": (
            m.facing,
            semi and lo.facing > 0,
            "model.strategy=semi and loss.facing > 0 (the facing head learns from the labeled frames)",
        ),
        "loss.facing": (lo.facing > 0, m.facing, "model.facing=true (the head that the term trains)"),
        "model.attn_context": (
            m.attn_context,
            attention,
            "SSN attention (model.arch=ssn3d, strategy unsupervised or semi)",
        ),
        "model.background_class": (
            m.background_class,
            attention,
            "SSN attention (model.arch=ssn3d, strategy unsupervised or semi)",
        ),
        "train.attn_lr_mult": (
            t.attn_lr_mult != 1.0,
            attention,
            "an attention classifier (model.arch=ssn3d, strategy unsupervised or semi)",
        ),
    }
    for key, (on, ok, what) in needs.items():
        if on and not ok:
            value = getattr({"loss": lo, "model": m, "train": t}[key.split(".")[0]], key.split(".")[1])
            raise ConfigError(f"{key}={value} needs {what}; set it back to its default or change the model.")
    if lo.background > 0 and not m.background_class:
        raise ConfigError(
            f'loss.background={lo.background} trains the "no part" class, so set model.background_class=true too.'
        )
    if not 0.0 <= t.labeled_warmup < 1.0:
        raise ConfigError(
            f"train.labeled_warmup={t.labeled_warmup} must lie in [0, 1) (a fraction of the steps)."
        )
    if t.labeled_warmup > 0 and d.anchor_frames == 0:
        raise ConfigError(
            "train.labeled_warmup needs data.anchor_frames > 0: the warm-up's L_SSN comes from the labeled frames "
            "fed beside the clips."
        )
    if t.attn_lr_mult <= 0:
        raise ConfigError(
            f"train.attn_lr_mult={t.attn_lr_mult} must be positive (1 = the model's learning rate)."
        )
