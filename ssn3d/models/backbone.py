"""Truncated torchvision ResNets, the feature extractor in front of SSN.

Paper, "Implementation Details": ResNet50 keeps "the first four of five layers" (stem + layer1..3,
1024 channels, stride 16: 16 x 8 maps for 256 x 128 frames). "Pedestrian 128" uses "3 blocks of
ResNet34" (stem + layer1..2, 128 channels, stride 8: 8 x 15 maps for 60 x 120 crops). ``none``
passes the input through, for the random-data and Amber-Abstract studies.

Weights never come from the network: ``weights="imagenet"`` looks for torchvision's file in the
local torch hub cache (``$TORCH_HOME/hub/checkpoints``), a path loads that file, and with neither
the backbone stays randomly initialised and says so once.
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
}
_CHANNELS = {
    "resnet50": (64, 256, 512, 1024, 2048),
    "resnet34": (64, 64, 128, 256, 512),
    "resnet18": (64, 64, 128, 256, 512),
}


class WeightsError(ValueError):
    """A weights file that does not fit the backbone; the message names the file."""


def backbone_channels(name: str, stages: int, in_channels: int = 3) -> int:
    """Channels of the backbone's output feature map."""
    return in_channels if name == "none" else _CHANNELS[name][stages]


def backbone_stride(name: str, stages: int) -> int:
    """Pixels per feature-map cell (the stem halves twice; layer2..4 halve once each)."""
    return 1 if name == "none" else 4 * 2 ** max(0, stages - 1)


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
            raise WeightsError(f"{path} is an SSN3D checkpoint without a ResNet backbone; pass another file.")
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict.")
    out = {}
    for k, v in obj.items():
        for prefix in ("module.", "_orig_mod."):
            while k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


class Backbone(nn.Module):
    """ResNet stem + the first ``stages`` layers, or the identity.

    Args:
        name: resnet50 | resnet34 | resnet18 | none.
        stages: layers kept after the stem (1..4).
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
        layers = [net.conv1, net.bn1, net.relu, net.maxpool] + [
            getattr(net, f"layer{i}") for i in range(1, stages + 1)
        ]
        self.body = nn.Sequential(*layers)
        self._load(weights)

    def _keymap(self) -> dict[str, str]:
        """torchvision key -> our key (body.<index>.*)."""
        names = ["conv1", "bn1", "relu", "maxpool"] + [f"layer{i}" for i in range(1, self.stages + 1)]
        return {n: str(i) for i, n in enumerate(names)}

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
        keymap = self._keymap()
        mapped, unexpected = {}, []
        for k, v in state.items():
            head, _, rest = k.partition(".")
            if k.startswith("body."):
                mapped[k[5:]] = v
            elif head in keymap:
                mapped[f"{keymap[head]}.{rest}"] = v
            elif not (head.startswith("layer") or head == "fc"):  # deeper layers and fc are cut on purpose
                unexpected.append(k)
        own = self.body.state_dict()
        mismatched = [k for k, v in mapped.items() if k in own and own[k].shape != v.shape]
        if mismatched:
            raise WeightsError(
                f"{path} does not fit {self.name}: shape mismatch at {', '.join(mismatched[:5])}."
            )
        result = self.body.load_state_dict(mapped, strict=False)
        _logger.info("Loaded %s weights from %s", self.name, path)
        if result.missing_keys:
            _logger.warning("Missing keys from %s: %s", path, ", ".join(result.missing_keys[:10]))
        if unexpected or result.unexpected_keys:
            _logger.warning(
                "Unexpected keys in %s: %s", path, ", ".join((unexpected + result.unexpected_keys)[:10])
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C, H / stride, W / stride)."""
        return self.body(x)
