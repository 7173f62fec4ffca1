"""The paper's Amber Abstract study (section "Study on SSN / Amber Abstract", Figure 6).

Unsupervised SSN alone, no backbone: paintings resized from 480 x 640 to 120 x 160, each 19 x 19
window of the 3 colour channels classified into N = 9 parts, batch 4, Adam with weight decay 5e-4.
The paper shows that parts "spot similar parts between different paintings". Our paintings
(``ssn3d.data.synth.amber``) carry three planted motifs at known places, so the study also counts
how often a part's selected region (the 19 x 19 window at its attention peak) covers a motif, per
part and motif (a hit: the part's attention peak, the centre of its selected window, lies in the
motif's box), next to the rate a randomly placed peak would reach (the box's share of the image).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ssn3d.attention import peak_cells
from ssn3d.models.ssn import SSN
from ssn3d.studies import recorded_path
from ssn3d.studies.random_data import train_ssn_alone

_logger = logging.getLogger(__name__)


@dataclass
class AmberStudyConfig:
    data: str = ""  # a painting folder with motifs.json; "" = paint ``count`` into <out>/paintings
    count: int = 128  # paper: 128 paintings
    seed: int = 0
    paint_size: tuple[int, int] = (480, 640)  # paper: 480 x 640 originals
    height: int = 120  # paper: resized to 120 x 160
    width: int = 160
    window: int = 19  # paper: 19 x 19 windows on the 3 colour channels
    parts: int = 9  # paper: N = 9
    batch: int = 4  # paper: 4
    hidden: int = 64  # K; paper silent for this study (512 in the ReID model); 64 keeps CPU runs to minutes
    iters: int = 400  # about 1 s each at 120 x 160 on a 2-core CPU (benchmarks/RESULTS-studies.md)
    lr: float = 1e-3  # paper silent; Adam's default
    weight_decay: float = 5e-4  # paper: 5e-4
    device: str = "cpu"
    loss: list[float] = field(default_factory=list)


def quick_config(**overrides: object) -> AmberStudyConfig:
    """A CPU-seconds version for tests: 24 paintings at a quarter of the area, a 9 x 9 window."""
    base = dict(count=24, paint_size=(240, 320), height=60, width=80, window=9, hidden=32, iters=80)
    base.update(overrides)
    return AmberStudyConfig(**base)


def load_paintings(folder: Path, size: tuple[int, int]) -> tuple[list[str], torch.Tensor, dict]:
    """Paintings of ``folder`` (listed in its motifs.json) resized to (height, width).

    Returns:
        names, images (P, 3, h, w) in [0, 1], and the motifs.json document.
    """
    import json

    meta_path = folder / "motifs.json"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{meta_path} is missing; paint the set with `python -m ssn3d synth amber {folder}`."
        )
    meta = json.loads(meta_path.read_text())
    names = sorted(meta["paintings"])
    h, w = size
    imgs = [np.asarray(Image.open(folder / n).convert("RGB").resize((w, h), Image.BOX)) for n in names]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
    return names, x, meta


def motif_hits(peaks: np.ndarray, names: list[str], meta: dict, size: tuple[int, int]) -> dict:
    """Hit rates of every part on every motif, and what a randomly placed peak would reach.

    Args:
        peaks: (P, N, 2) attention peaks (col, row) in study pixels' cells.
        names: painting file names, in the order of ``peaks``.
        meta: motifs.json.
        size: (h, w) of the study images.

    Returns:
        {"per_part": {motif: [rate of part i]}, "chance": {motif: rate}, "best": {motif: {...}},
         "motif_hit_rate": mean over motifs of the best part's rate, "chance_rate": mean chance}.
    """
    ph, pw = meta["size"]
    sx, sy = size[1] / pw, size[0] / ph
    n_parts = peaks.shape[1]
    per_part, chance, best = {}, {}, {}
    for motif in meta["motifs"]:
        rows = [
            (i, o["box"]) for i, n in enumerate(names) for o in meta["paintings"][n] if o["motif"] == motif
        ]
        if not rows:
            continue
        idx = np.array([i for i, _ in rows])
        boxes = np.array([[b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy] for _, b in rows])
        cx, cy = peaks[idx, :, 0] + 0.5, peaks[idx, :, 1] + 0.5  # (M, N) peak cell centres
        b = boxes[:, None, :]
        part_hits = (cx >= b[..., 0]) & (cx < b[..., 2]) & (cy >= b[..., 1]) & (cy < b[..., 3])  # (M, N)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        per_part[motif] = part_hits.mean(0).round(4).tolist()
        chance[motif] = round(float(np.mean(area) / (size[0] * size[1])), 4)  # a peak placed at random
        i_best = int(np.argmax(part_hits.mean(0)))
        best[motif] = {
            "part": i_best,
            "rate": per_part[motif][i_best],
            "paintings": len(idx),
            "chance": chance[motif],
        }
    rate = float(np.mean([b["rate"] for b in best.values()])) if best else 0.0
    return {
        "per_part": per_part,
        "chance": chance,
        "best": best,
        "motif_hit_rate": round(rate, 4),
        "chance_rate": round(float(np.mean(list(chance.values()))) if chance else 0.0, 4),
        "parts": n_parts,
    }


def train_ssn(
    cfg: AmberStudyConfig,
    x: torch.Tensor,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> SSN:
    """Unsupervised SSN on normalised paintings x (P, 3, h, w); fills ``cfg.loss``."""
    gen = torch.Generator().manual_seed(cfg.seed)
    batches = (x[torch.randint(len(x), (cfg.batch,), generator=gen)].to(cfg.device) for _ in iter(int, 1))
    ssn, cfg.loss = train_ssn_alone(
        cfg, x.shape[1], batches, desc="SSN amber", progress=progress, callback=callback
    )
    return ssn


@torch.no_grad()
def attention_maps(ssn: SSN, x: torch.Tensor, device: str, chunk: int = 8) -> torch.Tensor:
    """(P, 3, h, w) -> (P, N, h, w) attention maps on the CPU."""
    ssn.eval()
    return torch.cat([ssn.attention(x[i : i + chunk].to(device)).cpu() for i in range(0, len(x), chunk)])


def run_amber_study(
    cfg: AmberStudyConfig,
    out_dir: str | Path,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> dict:
    """Paint (or read) the paintings, train SSN, measure motif hits, write JSON and figures.

    Writes ``amber.json``, ``amber_loss.png``, ``amber_attention.png`` and ``amber_parts.png``
    into ``out_dir``.

    Returns:
        The JSON record.
    """
    from ssn3d.io import atomic_write_json
    from ssn3d.studies import figures

    if cfg.window % 2 == 0 or cfg.window < 1 or cfg.parts < 2 or cfg.iters < 1 or cfg.batch < 1:
        raise ValueError(
            "the Amber study needs an odd --window, --parts >= 2, --iters >= 1 and --batch >= 1."
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(cfg.data) if cfg.data else out / "paintings"
    if not cfg.data:
        from ssn3d.data.synth.amber import generate_amber

        generate_amber(folder, count=cfg.count, seed=cfg.seed, size=cfg.paint_size, progress=progress)
    names, raw, meta = load_paintings(folder, (cfg.height, cfg.width))
    mean, std = raw.mean((0, 2, 3), keepdim=True), raw.std((0, 2, 3), keepdim=True)
    x = (raw - mean) / std
    ssn = train_ssn(cfg, x, progress, callback)
    maps = attention_maps(ssn, x, cfg.device)
    peaks = peak_cells(maps.numpy())  # (P, N, 2) (col, row) of each maximum
    hits = motif_hits(peaks, names, meta, (cfg.height, cfg.width))
    tail = cfg.loss[-max(1, len(cfg.loss) // 10) :]
    record = asdict(cfg)
    record.update(
        folder=recorded_path(folder, out),
        chance_loss=math.log(cfg.parts),
        final_loss=sum(tail) / len(tail),
        hits=hits,
        peaks={n: peaks[i].tolist() for i, n in enumerate(names)},
    )
    atomic_write_json(out / "amber.json", record)
    figures.loss_curves(
        {"unsupervised SSN": cfg.loss},
        math.log(cfg.parts),
        out / "amber_loss.png",
        "SSN on Amber-style paintings",
    )
    show = [i for i, n in enumerate(names) if meta["paintings"][n]][:3] or [0]
    figures.amber_attention(raw[show], maps[show], [names[i] for i in show], out / "amber_attention.png")
    figures.amber_part_boxes(raw, peaks, names, meta, hits, cfg.window, out / "amber_parts.png")
    _logger.info(
        "Amber study: motif hit rate %.3f (random peak %.3f)", hits["motif_hit_rate"], hits["chance_rate"]
    )
    return record
