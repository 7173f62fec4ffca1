"""The paper's random-data study (section "Random Generation", Figure 5).

SSN alone (no backbone) is trained on fresh random 128 x 16 x 16 samples with a 3 x 3 window,
batch 128, Adam with weight decay 5e-4. Gaussian and uniform samples can be separated into N
distinct parts, so L_SSN falls far below log N; all-ones samples cannot (every window is alike),
so L_SSN stays at log N; more parts converge more slowly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from ssn3d.engine.optim import adam
from ssn3d.losses import ssn_loss
from ssn3d.models.ssn import SSN

_logger = logging.getLogger(__name__)

DISTRIBUTIONS = ("gaussian", "uniform", "ones")


@dataclass
class RandomStudyConfig:
    dist: str = "gaussian"
    parts: int = 9
    iters: int = 300
    seed: int = 0
    channels: int = 128  # paper: 128 x 16 x 16 samples
    size: int = 16
    batch: int = 128  # paper: 128
    window: int = 3  # paper: 3 x 3
    hidden: int = 512  # K, as in the full model
    lr: float = (
        1e-4  # paper silent; at 128x16x16 with K=512, 1e-3 throws uniform samples into a dead state at log N
    )
    weight_decay: float = 5e-4  # paper: 5e-4
    device: str = "cpu"
    loss: list[float] = field(default_factory=list)


QUICK = dict(channels=16, size=8, batch=16, hidden=64, iters=200, lr=1e-3)  # small sizes train fast at 1e-3


def quick_config(**overrides: object) -> RandomStudyConfig:
    """CPU seconds per run (tests, the app's quick run): 16 x 8 x 8 samples, K = 64, 200 iterations."""
    return RandomStudyConfig(**{**QUICK, **overrides})


def sample(dist: str, shape: tuple[int, ...], generator: torch.Generator, device: str) -> torch.Tensor:
    """One batch of random feature maps in the named distribution."""
    if dist == "gaussian":
        return torch.randn(shape, generator=generator).to(device)
    if dist == "uniform":
        return torch.rand(shape, generator=generator).to(device)
    if dist == "ones":
        return torch.ones(shape, device=device)
    raise ValueError(f"unknown distribution {dist!r}; choose one of {', '.join(DISTRIBUTIONS)}")


def check_random_study(cfg: RandomStudyConfig) -> None:
    """Refuse a config the study cannot run, in one sentence (before any sample is drawn)."""
    if cfg.dist not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {cfg.dist!r}; choose one of {', '.join(DISTRIBUTIONS)}.")
    if cfg.parts < 2 or cfg.iters < 1:
        raise ValueError("the study needs --parts >= 2 and --iters >= 1.")
    for name in ("channels", "size", "batch", "hidden"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name} {getattr(cfg, name)} must be a whole number >= 1.")
    if not cfg.lr > 0:
        raise ValueError(f"--lr {cfg.lr} must be > 0.")


def run_random_study(
    cfg: RandomStudyConfig, progress: bool = True, callback: Callable[[int, float], None] | None = None
) -> RandomStudyConfig:
    """Train SSN on random samples; fills and returns ``cfg.loss`` (one float per iteration)."""
    check_random_study(cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    batches = (
        sample(cfg.dist, (cfg.batch, cfg.channels, cfg.size, cfg.size), gen, cfg.device) for _ in iter(int, 1)
    )
    _, cfg.loss = train_ssn_alone(
        cfg, cfg.channels, batches, desc=f"SSN {cfg.dist} N={cfg.parts}", progress=progress, callback=callback
    )
    return cfg


def train_ssn_alone(
    cfg: Any,
    in_channels: int,
    batches: Iterator[torch.Tensor],
    *,
    desc: str,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> tuple[SSN, list[float]]:
    """SSN with no backbone, trained on L_SSN alone by Adam (the paper's SSN studies).

    Args:
        cfg: any study config with seed, parts, window, hidden, lr, weight_decay, iters, device.
        in_channels: C of the samples.
        batches: yields (B, C, H, W) samples on ``cfg.device``, at least ``cfg.iters`` of them.

    Returns:
        The trained SSN and one loss per iteration.
    """
    torch.manual_seed(cfg.seed)
    ssn = SSN(in_channels=in_channels, num_parts=cfg.parts, window=cfg.window, hidden=cfg.hidden).to(
        cfg.device
    )
    ssn.train()
    opt = adam(ssn.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses: list[float] = []
    bar = tqdm(range(cfg.iters), desc=desc, disable=not progress, leave=False)
    for it, x in zip(bar, batches):
        loss = ssn_loss(ssn(x).logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}", chance=f"{math.log(cfg.parts):.3f}")
        if callback:
            callback(it, losses[-1])
    return ssn, losses


def study_summary(cfg: RandomStudyConfig) -> dict:
    """The JSON record: the config, every loss, and the numbers a reader checks first."""
    tail = cfg.loss[-max(1, len(cfg.loss) // 10) :]
    out = asdict(cfg)
    out.update(chance=math.log(cfg.parts), final_loss=sum(tail) / len(tail))
    return out


def plot_curves(records: list[dict], path: str) -> None:
    """Figure 5: loss against iteration, one line per (distribution, N), log N dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = sorted({r["parts"] for r in records})
    fig, axes = plt.subplots(1, len(parts), figsize=(4.2 * len(parts), 3.4), squeeze=False, sharey=False)
    colors = {"gaussian": "tab:blue", "uniform": "tab:orange", "ones": "tab:gray"}
    for ax, n in zip(axes[0], parts):
        for r in (r for r in records if r["parts"] == n):
            ax.plot(r["loss"], color=colors[r["dist"]], label=r["dist"], lw=1.2)
        ax.axhline(math.log(n), ls=":", color="k", lw=1, label="log N (chance)")
        ax.set_title(f"N = {n} parts")
        ax.set_xlabel("iteration")
        ax.set_ylabel("L_SSN")
        ax.legend(fontsize=8)
    fig.suptitle("SSN on random data (paper Fig. 5)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
