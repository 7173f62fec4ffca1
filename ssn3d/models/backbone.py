"""Truncated torchvision ResNets and MobileNetV2, the feature extractor in front of SSN.

Paper, "Implementation Details": ResNet50 keeps "the first four of five layers" (stem + layer1..3,
1024 channels, stride 16: 16 x 8 maps for 256 x 128 frames). "Pedestrian 128" uses "3 blocks of
ResNet34" (stem + layer1..2, 128 channels, stride 8: 8 x 15 maps for 60 x 120 crops). ``none``
passes the input through, for the random-data and Amber-Abstract studies.

``mobilenet_v2`` is NOT in the paper: torchvision's ``mobilenet_v2().features``, offered because its
ImageNet weights are the ones this project can obtain offline (converted with ``python -m ssn3d
weights convert``). ``stages`` counts stride halvings after the stem the way the ResNets do, so
stride and map size match the ResNet of the same ``stages``: 1 keeps ``features[:4]`` (24 channels,
stride 4), 2 ``features[:7]`` (32, stride 8, the Pedestrian-128 map size), 3 ``features[:14]``
(96, stride 16, the default, as ResNet50 to layer3), 4 ``features[:18]`` (320, stride 32).

Weights never come from the network: ``weights="imagenet"`` looks for torchvision's file in the
local torch hub cache (``$TORCH_HOME/hub/checkpoints``), a path loads that file, and with neither
the backbone stays randomly initialised and says so once. A file that fits too few of the
backbone's tensors is refused rather than "loaded" over a random network.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torchvision
from torch import nn

_logger = logging.getLogger(__name__)

# torchvision's ImageNet files, by the name torch.hub saves them under.
IMAGENET_FILES = {
    "resnet50": ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth"),
    "resnet34": ("resnet34-b627a593.pth",),
    "resnet18": ("resnet18-f37072fd.pth",),
    "mobilenet_v2": ("mobilenet_v2-b0353104.pth", "mobilenet_v2-7ebf99e0.pth"),
}
_CHANNELS = {
    "resnet50": (64, 256, 512, 1024, 2048),
    "resnet34": (64, 64, 128, 256, 512),
    "resnet18": (64, 64, 128, 256, 512),
}
# stages -> (blocks of mobilenet_v2().features kept, their channels): each cut ends a stride's last block
_MOBILENET_CUTS = {1: (4, 24), 2: (7, 32), 3: (14, 96), 4: (18, 320)}
# a file must fit at least this share of the backbone's tensors: below it, it is for another network
MIN_MATCH = 0.5


class WeightsError(ValueError):
    """A weights file that does not fit the backbone; the message names the file."""


def backbone_channels(name: str, stages: int, in_channels: int = 3) -> int:
    """Channels of the backbone's output feature map."""
    if name == "mobilenet_v2":
        return _mobilenet_cut(stages)[1]
    return in_channels if name == "none" else _CHANNELS[name][stages]


def backbone_stride(name: str, stages: int) -> int:
    """Pixels per feature-map cell (the stem halves twice; each later stage halves once)."""
    return 1 if name == "none" else 4 * 2 ** max(0, stages - 1)


def _mobilenet_cut(stages: int) -> tuple[int, int]:
    if stages not in _MOBILENET_CUTS:
        raise ValueError(f"mobilenet_v2 keeps 1..4 stages (stride 4..32), not {stages}.")
    return _MOBILENET_CUTS[stages]


def find_imagenet_file(name: str) -> Path | None:
    """The torchvision ImageNet file for ``name`` in the local torch hub cache, if it is there."""
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    for fname in IMAGENET_FILES.get(name, ()):
        if (cache / fname).is_file():
            return cache / fname
    return None


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict with ``weights_only=True`` and strip DDP/compile prefixes."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for pickles it refuses or bad files
        raise WeightsError(
            f"{path} cannot be loaded as plain tensors ({type(e).__name__}); use a state-dict file."
        ) from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if (
        isinstance(obj, dict)
        and obj.get("format") == "ssn3d-checkpoint"
        and isinstance(obj.get("model"), dict)
    ):
        # a run's checkpoint (engine.checkpoint): its backbone seeds another model, e.g. one trained for ReID
        obj = {k[len("backbone.") :]: v for k, v in obj["model"].items() if k.startswith("backbone.body.")}
        if not obj:
            raise WeightsError(f"{path} is an SSN3D checkpoint without a backbone; pass another file.")
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict.")
    out = {}
    for k, v in obj.items():
        for prefix in ("module.", "_orig_mod."):
            while k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


def _examples(keys: object, n: int = 3) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "") if keys else "(no keys)"


_HEADS = {"mobilenet_v2": "classifier"}  # the classification head of each torchvision network
_KEY_EXAMPLES = {"mobilenet_v2": "features.0.0.weight, features.1.conv.0.0.weight"}


def convert_by_position(state: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """Torchvision's keys for a state dict of the same network saved under other names.

    The i-th tensor of ``state`` becomes torchvision's i-th ``arch`` tensor, counting either all of
    them or all but the classification head (files made for feature extraction drop it). Names are
    not trusted, only the order, so every shape and kind (float or integer) is checked.

    Args:
        state: tensors in the network's module order (``state_dict()`` order).
        arch: a torchvision model name, e.g. ``mobilenet_v2``.

    Returns:
        An ordered state dict with torchvision's keys.

    Raises:
        WeightsError: a count, shape or kind that does not fit; the file is then not that network.
    """
    if arch not in IMAGENET_FILES:
        raise WeightsError(f"arch {arch} is not one of {', '.join(IMAGENET_FILES)}.")
    target = getattr(torchvision.models, arch)(weights=None).state_dict()
    head = _HEADS.get(arch, "fc")
    trunk = [k for k in target if k.split(".")[0] != head]
    if len(state) == len(target):
        keys = list(target)
    elif len(state) == len(trunk):
        keys = trunk
    else:
        raise WeightsError(
            f"the file holds {len(state)} entries but torchvision's {arch} has {len(target)} "
            f"({len(trunk)} without its {head}), so they cannot be matched by position."
        )
    out = {}
    for i, ((src, value), dst) in enumerate(zip(state.items(), keys, strict=True)):
        want = target[dst]
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"entry {i} ({src}) is a {type(value).__name__}, not a tensor.")
        if value.shape != want.shape or value.is_floating_point() != want.is_floating_point():
            raise WeightsError(
                f"tensor {i} ({src}, {value.dtype} {tuple(value.shape)}) does not fit torchvision's {dst} "
                f"({want.dtype} {tuple(want.shape)}); the file is not a {arch} in torchvision's order."
            )
        out[dst] = value.to(want.dtype)
    return out


class Backbone(nn.Module):
    """A truncated torchvision network (ResNet stem + ``stages`` layers, MobileNetV2 features), or the identity.

    Args:
        name: resnet50 | resnet34 | resnet18 | mobilenet_v2 | none.
        stages: stride halvings kept after the stem (1..4; ResNets also 0, the stem alone).
        in_channels: input channels for ``none``.
        weights: "imagenet", a path (a torchvision state dict, or a run's checkpoint, whose backbone is
            taken), or "none".
    """

    def __init__(
        self, *, name: str = "resnet50", stages: int = 3, in_channels: int = 3, weights: str = "none"
    ) -> None:
        super().__init__()
        self.name, self.stages = name, stages
        self.out_channels = backbone_channels(name, stages, in_channels)
        self.stride = backbone_stride(name, stages)
        if name == "none":
            self.body = nn.Identity()
            return
        net = getattr(torchvision.models, name)(weights=None)
        if name == "mobilenet_v2":
            layers = list(net.features[: _mobilenet_cut(stages)[0]])
        else:
            layers = [net.conv1, net.bn1, net.relu, net.maxpool] + [
                getattr(net, f"layer{i}") for i in range(1, stages + 1)
            ]
        self.body = nn.Sequential(*layers)
        self._load(weights)

    def _layer_names(self) -> list[str]:
        """Torchvision's name of each module in ``body``, by index."""
        if self.name == "mobilenet_v2":
            return [f"features.{i}" for i in range(len(self.body))]
        return ["conv1", "bn1", "relu", "maxpool"] + [f"layer{i}" for i in range(1, self.stages + 1)]

    def _body_key(self, key: str) -> str | None:
        """Our key (``<index>.*`` in ``body``) for a torchvision key; "" for a layer cut on purpose; None if
        the key belongs to no part of this network."""
        if key.startswith("body."):
            return key[len("body.") :]
        head, _, rest = key.partition(".")
        if self.name == "mobilenet_v2":
            block, _, tail = rest.partition(".")
            if head == "features" and block.isdigit():
                return f"{block}.{tail}" if int(block) < len(self.body) else ""
            return "" if head == "classifier" else None
        names = ["conv1", "bn1", "relu", "maxpool"] + [f"layer{i}" for i in range(1, 5)]
        if head in names:
            i = names.index(head)
            return f"{i}.{rest}" if i < len(self.body) else ""
        return "" if head == "fc" else None

    # Long on purpose: one sequence of checks on a weights file, each refusal a sentence naming what to fix.
    def _load(self, weights: str) -> None:
        if weights in ("none", ""):
            return
        path = find_imagenet_file(self.name) if weights == "imagenet" else Path(weights)
        if path is None:
            _logger.warning(
                "No ImageNet weights for %s in the torch cache (%s); the backbone starts from random init. "
                "Place %s there, or pass model.weights=PATH.",
                self.name,
                Path(torch.hub.get_dir()) / "checkpoints",
                IMAGENET_FILES[self.name][0],
            )
            return
        if not path.is_file():
            raise WeightsError(
                f"weights file {path} does not exist; pass an existing .pth file or model.weights=none."
            )
        state = load_state_dict_file(path)
        full = self.body.state_dict()
        # BatchNorm's step counter is absent from many published files and carries no feature
        own = [k for k in full if not k.endswith("num_batches_tracked")]
        mapped, unexpected = {}, []
        for k, v in state.items():
            ours = self._body_key(k)
            if ours is None:
                unexpected.append(k)
            elif ours:
                mapped[ours] = v
        mismatched = [
            k
            for k, v in mapped.items()
            if k in full and (not hasattr(v, "shape") or full[k].shape != v.shape)
        ]
        if mismatched:
            raise WeightsError(
                f"{path} does not fit {self.name}: shape mismatch at {', '.join(mismatched[:5])} (a file for "
                "another network, or in another naming: python -m ssn3d weights convert)."
            )
        matched = [k for k in own if k in mapped]
        if len(matched) < MIN_MATCH * len(own):
            expected = _KEY_EXAMPLES.get(self.name, "conv1.weight, layer1.0.conv1.weight")
            raise WeightsError(
                f"{path} fits {len(matched)} of the {len(own)} tensors of {self.name} with {self.stages} "
                f"stages (at least {MIN_MATCH:.0%} needed); its keys look like {_examples(state)} where "
                f"torchvision's are {expected} (a file in another naming: python -m ssn3d weights convert)."
            )
        unexpected += [k for k in mapped if k not in full]
        self.body.load_state_dict({k: v for k, v in mapped.items() if k in full}, strict=False)
        _logger.info("Loaded %s weights from %s (%d of %d tensors)", self.name, path, len(matched), len(own))
        missing = [k for k in own if k not in mapped]
        if missing:
            names = self._layer_names()
            layers = dict.fromkeys(f"{names[int(k.split('.')[0])]}" for k in missing)
            _logger.warning(
                "%s lacks %d of the %d tensors of %s; these layers keep their random init: %s",
                path,
                len(missing),
                len(own),
                self.name,
                ", ".join(layers),
            )
        if unexpected:
            _logger.warning("Unexpected keys in %s: %s", path, _examples(unexpected, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C, H / stride, W / stride)."""
        return self.body(x)

    def next_stage(self, weights: str = "none") -> tuple[nn.Module, int] | None:
        """The network's stage after this cut (one more stride halving) and its output channels, with the
        weights ``weights`` names; None when there is none (no backbone, or the last stage is kept).

        A weights file that does not reach that far (a run's checkpoint of this cut) leaves the stage at
        random init, logged, rather than refused: the stage is an extra, not the backbone."""
        deepest = 4
        if self.name == "none" or self.stages >= deepest:
            return None
        try:
            deeper = Backbone(name=self.name, stages=self.stages + 1, weights=weights)
        except WeightsError as e:
            _logger.info("The next %s stage starts from random init: %s", self.name, e)
            deeper = Backbone(name=self.name, stages=self.stages + 1)
        return nn.Sequential(*list(deeper.body)[len(self.body) :]), deeper.out_channels
