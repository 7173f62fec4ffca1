"""Evaluation with the paper's test protocol, and the ``eval.json`` the retrieval viewer reads.

Paper, "Training and testing protocols": "each video tracklet is split into multiple 32-frame
video clips. Then we extract the feature representation for each video snippet and use their
average to represent them"; "Evaluation Protocols": mAP and CMC. So: every frame of every query and
gallery tracklet, in consecutive chunks of ``data.test_chunk`` frames (``ssn3d.data.video``), the
chunk embeddings averaged per tracklet (weighted by chunk length: the mean over frames), Euclidean
distances, and ``ssn3d.metrics.evaluate_rank`` (torchreid's rule: same person and same camera is
junk). mINP comes with it, and the part PCK of ``ssn3d.engine.alignment_eval`` when the test
frames have keypoints.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ssn3d.config import Config
from ssn3d.data.datasets import DatasetError, VideoReIDDataset, build_dataset
from ssn3d.data.tracklet import Tracklet
from ssn3d.data.transforms import ClipTransform
from ssn3d.data.video import TestFrames, build_test_loader, pool_tracklet_features
from ssn3d.engine.alignment_eval import evaluate_alignment
from ssn3d.engine.checkpoint import load_checkpoint
from ssn3d.engine.distributed import device_for, env_dist_info
from ssn3d.engine.evaluations import REPORT_TOPK, locate_evaluation
from ssn3d.engine.train_data import label_store_path
from ssn3d.io import atomic_write_json
from ssn3d.keypoints import NUM_PARTS, resize_keypoints
from ssn3d.labels.store import AnnotationStore
from ssn3d.metrics import compute_distance, evaluate_rank, rank_gallery
from ssn3d.part_pck import pck_summary

_logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
KeypointFn = Callable[[Tracklet, int, int], np.ndarray]
VIEW_FRAMES = 8  # frames per tracklet listed in eval.json for the viewer's strips


@torch.inference_mode()
def extract_features(
    model: nn.Module,
    tracklets: list[Tracklet],
    cfg: Config,
    *,
    device: torch.device,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    keypoints: KeypointFn | None = None,
) -> torch.Tensor:
    """Tracklet embeddings (N, D): all frames in ``data.test_chunk``-frame chunks, averaged over frames.

    Args:
        model: an embedding model (eval mode returns (B, D)).
        tracklets: the tracklets to embed.
        cfg: frame size, chunk length, workers, corrupt-frame policy.
        device: where the model runs.
        workers: DataLoader workers (default ``data.workers``).
        progress: called as ``progress(chunks_done, chunks_total)``.
        keypoints: ``keypoints(tracklet, start, end)`` -> (L, 9, 3) in model pixels, for the supervised
            strategy (which reads parts at keypoints at test time too).
    """
    if not tracklets:
        return torch.zeros(0, 0)
    model.eval()
    cuda = device.type == "cuda"
    transform = ClipTransform(cfg.data.height, cfg.data.width, train=False)
    frames = TestFrames(tracklets, transform, chunk=cfg.data.test_chunk, skip_corrupt=cfg.data.skip_corrupt)
    loader = build_test_loader(frames, cfg.data.workers if workers is None else workers, pin_memory=cuda)
    feats, lengths, owners = [], [], []
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and cfg.train.amp):
        for i, item in enumerate(loader):
            clip = item["clip"].to(device, non_blocking=True)[None]  # (1, L, 3, H, W)
            kps = None
            if keypoints is not None:
                ti, s, e = frames.chunks[i]
                kps = torch.from_numpy(keypoints(tracklets[ti], s, e))[None].to(device)  # (1, L, 9, 3)
            feats.append(model(clip, kps).float().cpu())
            lengths.append(int(item["length"]))
            owners.append(int(item["tracklet"]))
            if progress is not None:
                progress(i + 1, len(frames))
    return pool_tracklet_features(torch.cat(feats), lengths, owners, len(tracklets))


def test_keypoints(cfg: Config, dataset: VideoReIDDataset) -> KeypointFn | None:
    """For a supervised SSN3D: keypoints of test frames from the dataset's label store (None otherwise).

    Frames without labels get zeros, i.e. the model's fallback (the frame's mean window for every part).
    """
    if cfg.model.arch != "ssn3d" or cfg.model.strategy != "supervised":
        return None
    path = label_store_path(cfg, dataset)
    labels = AnnotationStore(path).frames() if path.is_file() else {}
    if not labels:
        _logger.warning(
            "No labels in %s for the supervised model's test frames: every part uses its fallback.", path
        )
    out_size = (cfg.data.width, cfg.data.height)

    def lookup(tracklet: Tracklet, start: int, end: int) -> np.ndarray:
        kps = np.zeros((end - start, NUM_PARTS, 3), np.float32)
        for k, p in enumerate(tracklet.paths[start:end]):
            lab = labels.get(dataset.relpath(p))
            if lab is not None:
                with Image.open(p) as im:  # the header only: labels are in the original frame's pixels
                    kps[k] = resize_keypoints(lab, im.size, out_size)
        return kps

    return lookup


def _ids(tracklets: list[Tracklet]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([t.pid for t in tracklets]), np.array([t.camid for t in tracklets])


# Long on purpose: long only by its docstring; the body is one pass: features, distances, ranks, report.
def evaluate(
    model: nn.Module,
    dataset: VideoReIDDataset,
    cfg: Config,
    *,
    device: torch.device,
    topk: int = 0,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Query/gallery evaluation of ``model`` on ``dataset``.

    Returns:
        {"metrics": {"mAP", "top1", "top5", "top10", "mINP"}, "cmc": [...], "details": RankDetails,
        "distmat": (Q, G) float32} plus "ranking" (``ssn3d.metrics.Ranking``) when ``topk`` > 0, and
        when the test frames have keypoints "pck" (``evaluate_alignment``) with the argmax peaks'
        overall "pck@0.1" and "pck@0.2" in "metrics".
    """
    if not dataset.query or not dataset.gallery:
        raise DatasetError(
            f"dataset {dataset.root} has no query/gallery split to evaluate on; use a dataset that has one."
        )
    n_q = sum(len(range(0, len(t.paths), cfg.data.test_chunk)) for t in dataset.query)
    n_g = sum(len(range(0, len(t.paths), cfg.data.test_chunk)) for t in dataset.gallery)

    def part(offset: int) -> ProgressFn | None:
        return None if progress is None else (lambda done, _total: progress(offset + done, n_q + n_g))

    kps = test_keypoints(cfg, dataset)
    qf = extract_features(
        model, dataset.query, cfg, device=device, workers=workers, progress=part(0), keypoints=kps
    )
    gf = extract_features(
        model, dataset.gallery, cfg, device=device, workers=workers, progress=part(n_q), keypoints=kps
    )
    q_pids, q_cams = _ids(dataset.query)
    g_pids, g_cams = _ids(dataset.gallery)
    distmat = compute_distance(qf, gf)
    cmc, mean_ap, details = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, return_details=True)

    def top(k: int) -> float:
        return float(cmc[min(k, len(cmc)) - 1])

    metrics = {
        "mAP": float(mean_ap),
        "top1": top(1),
        "top5": top(5),
        "top10": top(10),
        "mINP": float(details.mINP),
    }
    out: dict[str, Any] = {
        "metrics": metrics,
        "cmc": [float(c) for c in cmc],
        "details": details,
        "distmat": distmat,
    }
    if topk > 0:
        out["ranking"] = rank_gallery(distmat, q_pids, g_pids, q_cams, g_cams, topk=topk)
    pck = evaluate_alignment(model, dataset, cfg, device=device)
    if pck is not None:
        metrics.update(pck_summary(pck))
        out["pck"] = pck
    return out


# --------------------------------------------------------------------------- eval.json for a run or a checkpoint


def resolve_checkpoint(target: str | os.PathLike) -> tuple[Path, Path]:
    """(checkpoint file, eval.json path) for a run folder (best.pt, else last.pt) or a checkpoint file."""
    location = locate_evaluation(target)
    return location.checkpoint, location.write_to


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


def _tracklet_entry(dataset: VideoReIDDataset, t: Tracklet) -> dict[str, Any]:
    n = len(t.paths)
    picks = sorted({int(round(i)) for i in np.linspace(0, n - 1, min(n, VIEW_FRAMES))})
    return {
        "pid": int(t.pid),
        "camid": int(t.camid),
        "num_frames": n,
        "frames": [dataset.relpath(t.paths[i]) for i in picks],
    }


def first_matches(distmat: np.ndarray, dataset: VideoReIDDataset) -> tuple[np.ndarray, np.ndarray]:
    """Each query's nearest true match (same person, other camera): gallery index (-1: none) and distance.

    One masked argmin over the (Q, G) distances, so the report can name the first match of every
    query however far down the ranking it is, without storing whole rankings.
    """
    q_pids, q_cams = _ids(dataset.query)
    g_pids, g_cams = _ids(dataset.gallery)
    match = (g_pids[None] == q_pids[:, None]) & (g_cams[None] != q_cams[:, None])  # (Q, G)
    d = np.where(match, np.asarray(distmat, dtype=np.float64), np.inf)
    index = d.argmin(axis=1) if d.size else np.zeros(len(q_pids), np.int64)  # ties: gallery order
    dist = d[np.arange(len(q_pids)), index] if d.size else np.full(len(q_pids), np.inf)
    return np.where(np.isfinite(dist), index, -1), dist


def eval_report(result: dict[str, Any], dataset: VideoReIDDataset, meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON document of an evaluation: metrics, per-query AP, the ranked top-k gallery per query and
    each query's first true match (its rank and gallery item, also when it ranks past k)."""
    d, ranking = result["details"], result.get("ranking")
    first_index, first_dist = first_matches(result["distmat"], dataset)
    queries = []
    for i in range(len(dataset.query)):
        entry: dict[str, Any] = {
            "index": i,
            "ap": _finite(d.ap[i]),
            "inp": _finite(d.inp[i]),
            "first_hit": int(d.first_hit[i]),
            "num_matches": int(d.num_matches[i]),
            "first_match": None
            if first_index[i] < 0
            else {
                "index": int(first_index[i]),
                "distance": float(first_dist[i]),
                "rank": int(d.first_hit[i]),
            },
        }
        if ranking is not None:
            entry["ranked"] = [
                {"index": int(j), "distance": float(dist), "match": bool(m)}
                for j, dist, m in zip(ranking.indices[i], ranking.distances[i], ranking.matches[i])
                if j >= 0
            ]
        queries.append(entry)
    return {
        "format": "ssn3d-eval",
        "version": 1,
        **meta,
        "dataset": {
            "name": dataset.name,
            "id": dataset.dataset_id,
            "root": str(dataset.root),
            "options": dataset.options,
        },
        "metrics": result["metrics"],
        "cmc": result["cmc"],
        "num_valid_queries": int(d.num_valid),
        "query": [_tracklet_entry(dataset, t) for t in dataset.query],
        "gallery": [_tracklet_entry(dataset, t) for t in dataset.gallery],
        "queries": queries,
        **({"pck": result["pck"]} if result.get("pck") is not None else {}),
    }


def write_report(
    result: dict[str, Any], dataset: VideoReIDDataset, meta: dict[str, Any], path: str | os.PathLike
) -> dict[str, Any]:
    """``eval_report`` written atomically to ``path`` (the CLI, the app and training's final evaluation)."""
    report = eval_report(result, dataset, meta)
    atomic_write_json(Path(path), report)
    return report


def evaluate_target(
    target: str | os.PathLike,
    *,
    dataset: str | None = None,
    root: str | None = None,
    options: dict[str, Any] | None = None,
    topk: int = REPORT_TOPK,
    device: str = "auto",
    workers: int | None = None,
    out: str | os.PathLike | None = None,
    outputs: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
) -> tuple[dict[str, Any], Path]:
    """Evaluate a run (its best.pt, else last.pt) or a checkpoint and write the report JSON.

    Args:
        target: a run folder or a checkpoint file.
        dataset, root, options: evaluate on another dataset than the one trained on (defaults: the config's).
        topk: ranked gallery items kept per query in the report.
        device: auto | cpu | cuda | cuda:N.
        workers: frame-decoding processes (default: the config's data.workers).
        out: where to write (default: ``ssn3d.engine.evaluations.locate_evaluation``: RUN/eval.json or
            CHECKPOINT.eval.json on the trained dataset, RUN/eval-STEM-DATASET.json or
            OUTPUTS/STEM-DATASET.eval.json on another one).
        outputs: the folder for a loose checkpoint's evaluations on another dataset (default: its own).
        progress: called as ``progress(done, total)`` over the test chunks.

    Returns:
        (the report, the path it was written to).
    """
    ckpt_path = locate_evaluation(target).checkpoint
    dev = device_for(device, env_dist_info({}))
    model, cfg, meta = load_checkpoint(ckpt_path, device=dev)
    name = dataset or cfg.data.dataset
    data_root = root or cfg.data.root
    opts = dict(cfg.data.options if dataset is None and options is None else (options or {}))
    if not data_root:
        raise DatasetError(f"checkpoint {ckpt_path} names no dataset root; pass --root PATH.")
    ds = build_dataset(name, data_root, **opts)
    _logger.info(
        "Evaluating %s (step %s) on %s: %d queries, %d gallery tracklets.",
        ckpt_path,
        meta.get("step"),
        ds.dataset_id,
        len(ds.query),
        len(ds.gallery),
    )
    result = evaluate(model, ds, cfg, device=dev, topk=topk, workers=workers, progress=progress)
    if out is not None:
        path = Path(out)
    else:  # the trained dataset's report is the run's own; another dataset's is kept beside it
        own = dataset is None and root is None and options is None
        path = locate_evaluation(ckpt_path, None if own else ds.dataset_id, outputs=outputs).write_to
    meta = {"checkpoint": str(ckpt_path), "step": meta.get("step"), "epoch": meta.get("epoch")}
    return write_report(result, ds, meta, path), path
