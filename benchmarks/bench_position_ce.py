"""Does PositionCE (ssn3d.alignment_losses, NOT in the paper) raise semi-supervised PCK on Pedestrian-128?

Semi-supervised SSN is trained on Pedestrian-128-style crops twice with the same seed, data, schedule
and augmentation, once with L_SSN alone (the paper) and once with L_SSN + PositionCE on the labeled
crops, and part PCK@0.1h of each is measured on the unlabeled crops with the study's own functions
(``ssn3d.studies.pedestrian_crops``, ``pedestrian_training``, ``pedestrians``: crops, augmentation,
features, attention, PCK, baselines).

    OMP_NUM_THREADS=1 python benchmarks/bench_position_ce.py            # trained backbone, ~4 CPU min
    OMP_NUM_THREADS=1 python benchmarks/bench_position_ce.py --quick    # fixed random backbone, seconds

Writes ``benchmarks/results/position_ce[-quick].json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssn3d.alignment_losses import PositionCE  # noqa: E402
from ssn3d.attention import peak_points  # noqa: E402
from ssn3d.data.synth.walkers import generate_pedestrian128  # noqa: E402
from ssn3d.engine.optim import adam  # noqa: E402
from ssn3d.keypoints import FLIP_PERMUTATION, NUM_PARTS  # noqa: E402
from ssn3d.losses import ssn_loss  # noqa: E402
from ssn3d.models.backbone import Backbone  # noqa: E402
from ssn3d.models.ssn import SSN  # noqa: E402
from ssn3d.models.ssn3d import keypoints_to_cells  # noqa: E402
from ssn3d.part_pck import pck_report  # noqa: E402
from ssn3d.studies.pedestrian_crops import augment, color_jitter, features, load_crops, normalize  # noqa: E402
from ssn3d.studies.pedestrian_training import attention_of  # noqa: E402
from ssn3d.studies.pedestrians import PCK_ALPHA, PedestrianStudyConfig, baselines, quick_config  # noqa: E402

# Fixed before any run: the study's full setting (ResNet34 to layer2 trained with SSN, paper schedule:
# 30 % labeled-only warm-up, then half labeled, half unlabeled) cut to 150 iterations for the CPU budget.
FULL = PedestrianStudyConfig(iters=150, strategies=("semi",), eval_every=0)
QUICK = quick_config(iters=150, strategies=("semi",))
ARMS = {
    "ssn_only": (0.0, 0.0),
    "position_ce": (1.0, 0.0),
    "position_ce_gauss1": (1.0, 1.0),
}  # (weight, sigma)


def train(cfg: PedestrianStudyConfig, images: torch.Tensor, anchors: np.ndarray, lab: np.ndarray,
          pce: PositionCE) -> tuple[Backbone, SSN]:  # fmt: skip
    """Semi-supervised SSN as ``pedestrians.train_strategy`` trains it, plus ``pce`` on the anchored parts."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    backbone = Backbone(name=cfg.backbone, stages=cfg.stages, weights=cfg.weights)
    ssn = SSN(in_channels=backbone.out_channels, num_parts=NUM_PARTS, window=cfg.window, hidden=cfg.hidden)
    params = list(ssn.parameters()) + (list(backbone.parameters()) if cfg.train_backbone else [])
    opt = adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    backbone.train(cfg.train_backbone)
    ssn.train()
    h, w = images.shape[-2:]
    kps_all = torch.from_numpy(anchors)
    unl = np.setdiff1d(np.arange(len(images)), lab)
    cached = None
    if not cfg.train_backbone:  # fixed features: computed once, and once for the mirrored crops
        with torch.no_grad():
            cached = [backbone(images), backbone(images.flip(-1))]

    def draw(pool: np.ndarray, n: int) -> np.ndarray:
        return pool[torch.randint(len(pool), (n,), generator=gen).numpy()]

    for it in range(cfg.iters):
        if it < cfg.warmup * cfg.iters:
            idx = draw(lab, cfg.batch)
        else:
            idx = np.concatenate([draw(lab, cfg.batch // 2), draw(unl, cfg.batch - cfg.batch // 2)])
        k = kps_all[idx]
        if cached is not None:
            flip = torch.rand(len(idx), generator=gen) < 0.5
            feats = torch.where(flip[:, None, None, None], cached[1][idx], cached[0][idx])
            kf = k.clone()
            kf[..., 0] = torch.where(k[..., 2] > 0, w - k[..., 0], 0.0)
            k = torch.where(flip[:, None, None], kf[:, list(FLIP_PERMUTATION)], k)
        else:
            x, k = augment(images[idx], k, gen)
            feats = features(backbone, normalize(color_jitter(x, cfg.color_jitter, gen)), cfg.context_pad)
        cells, mask = keypoints_to_cells(k, (w, h), (feats.shape[-1], feats.shape[-2]))  # (B, N, 2), (B, N)
        out = ssn(feats, cells, mask)
        loss = ssn_loss(out.logits)
        if pce.weight:
            loss = loss + pce(ssn.classifier.forward_map(feats), cells, mask)  # 1st-round logits (B, N, h, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return backbone, ssn


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a fixed random backbone (seconds, not minutes)")
    p.add_argument("--iters", type=int, help="iterations per arm (default 150)")
    p.add_argument("--arms", default="", help=f"comma-separated among {', '.join(ARMS)} (default: all)")
    p.add_argument("--out", type=Path, help="the result JSON")
    args = p.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    if args.iters:
        cfg = replace(cfg, iters=args.iters)
    arms = [a for a in args.arms.split(",") if a] or list(ARMS)
    if set(arms) - set(ARMS):
        p.error(f"unknown arm; known: {', '.join(ARMS)}")
    out = args.out or ROOT / "benchmarks" / "results" / f"position_ce{'-quick' if args.quick else ''}.json"
    with tempfile.TemporaryDirectory() as tmp:
        generate_pedestrian128(Path(tmp), count=cfg.count, labeled=cfg.labeled, seed=cfg.seed)
        names, raw, kps, labeled_names = load_crops(Path(tmp), (cfg.height, cfg.width))
    lab = np.array([names.index(n) for n in labeled_names])
    unl = np.setdiff1d(np.arange(len(names)), lab)
    anchors = np.zeros_like(kps)
    anchors[lab] = kps[lab]
    tol = PCK_ALPHA * cfg.height
    record: dict = {
        "command": "python benchmarks/bench_position_ce.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": {k: v for k, v in asdict(cfg).items() if k != "loss"},
        "omp_threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
        "arms": {},
    }
    for name in arms:
        weight, sigma = ARMS[name]
        load, cpu0, t0 = os.getloadavg()[0], time.process_time(), time.perf_counter()
        backbone, ssn = train(cfg, raw, anchors, lab, PositionCE(weight=weight, sigma=sigma))
        maps = attention_of(backbone, ssn, raw[unl], "cpu", cfg.context_pad)
        rep = pck_report(peak_points(maps.numpy(), (cfg.width, cfg.height)), kps[unl], tol, match=False)
        rep.update(weight=weight, sigma=sigma, cpu_s=round(time.process_time() - cpu0, 1),
                   wall_s=round(time.perf_counter() - t0, 1), load_before=round(load, 2))  # fmt: skip
        record["arms"][name] = rep
        print(
            f"{name}: PCK {rep['overall']:.3f} ({rep['cpu_s']:.0f} CPU s, {rep['wall_s']:.0f} s wall)",
            flush=True,
        )
        record["feature_size"] = list(maps.shape[-2:])
    record["baselines"] = baselines(
        kps[unl], kps[lab], (cfg.height, cfg.width), tuple(record["feature_size"]), tol
    )
    print(f"baselines: random peak {record['baselines']['chance']:.3f}, "
          f"mean position {record['baselines']['mean_position']['overall']:.3f}")  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
