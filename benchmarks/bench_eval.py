"""Speed of ``evaluate_rank`` on a MARS-size problem against a straightforward per-query loop.

    python benchmarks/bench_eval.py                 # 1980 x 11310, plus gallery sizes 2000 / 5000 / 11310
    python benchmarks/bench_eval.py --quick         # smaller, for a smoke run

The problem has MARS's shape: 1980 queries, 11310 gallery tracklets (query + rest protocol), 625
test identities plus distractors (pid 0), 6 cameras; distances come from random features with an
identity signal (noise 2.4 in 1024 dimensions gives rank-1 ~0.99, mAP ~0.82, mINP ~0.25, a
trained model's regime), through ``compute_distance``; a second run uses uniform random distances
(every match anywhere in the ranking, the slowest case for ``evaluate_rank``). The loop is the
textbook algorithm (torchreid's
``eval_func`` shape: argsort each row, drop junk, cumulative sums), written here as the reference;
both must agree before any time is reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from ssn3d.metrics import compute_distance, evaluate_rank


def loop_reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """Per-query loop over a full argsort (torchreid semantics, ragged rows padded)."""
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    indices = np.argsort(distmat, axis=1)
    all_cmc, all_ap = [], []
    for i in range(num_q):
        order = indices[i]
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        raw = (g_pids[order] == q_pids[i])[keep].astype(np.int32)
        if not raw.any():
            continue
        cmc = np.minimum(raw.cumsum(), 1)[:max_rank]
        all_cmc.append(np.pad(cmc, (0, max_rank - len(cmc)), constant_values=1))
        hits = raw.cumsum()
        all_ap.append(float((hits / np.arange(1, len(raw) + 1) * raw).sum() / raw.sum()))
    return np.mean(all_cmc, 0), float(np.mean(all_ap))


def mars_like(num_q: int, num_g: int, ids: int, dim: int, seed: int, noise: float = 2.4):
    rng = np.random.default_rng(seed)
    g_pids = rng.integers(1, ids + 1, num_g)
    g_pids[rng.random(num_g) < 0.03] = 0  # distractors
    q_pids = rng.choice(g_pids[g_pids > 0], num_q)
    q_cams, g_cams = rng.integers(0, 6, num_q), rng.integers(0, 6, num_g)
    centres = rng.normal(size=(ids + 1, dim)).astype(np.float32)
    qf = centres[q_pids] + noise * rng.normal(size=(num_q, dim)).astype(np.float32)
    gf = centres[g_pids] + noise * rng.normal(size=(num_g, dim)).astype(np.float32)
    return qf, gf, q_pids, g_pids, q_cams, g_cams


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    num_q, num_g = (400, 2000) if args.quick else (1980, 11310)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    qf, gf, q_pids, g_pids, q_cams, g_cams = mars_like(num_q, num_g, 625, 1024, 0)
    t_dist = best_of(lambda: compute_distance(qf, gf), args.repeats)
    dist = compute_distance(qf, gf)
    print(f"compute_distance euclidean {num_q}x{num_g}x1024: {t_dist:.3f} s")

    cmc, m_ap = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams)
    ref_cmc, ref_ap = loop_reference(dist, q_pids, g_pids, q_cams, g_cams)
    # float32 distances can tie a match with an impostor: evaluate_rank ranks the impostor first, argsort
    # breaks the tie arbitrarily, so the two agree up to a few such ties
    assert np.allclose(cmc, ref_cmc, atol=1e-5) and abs(m_ap - ref_ap) < 1e-5, "vectorised and loop disagree"
    print(f"results agree (|dmAP| = {abs(m_ap - ref_ap):.1e}): rank-1 {cmc[0]:.4f}, mAP {m_ap:.4f}")
    t_vec = best_of(lambda: evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams), args.repeats)
    t_loop = best_of(lambda: loop_reference(dist, q_pids, g_pids, q_cams, g_cams), 1)
    print(
        f"evaluate_rank {num_q}x{num_g}: {t_vec:.3f} s | per-query loop: {t_loop:.3f} s | "
        f"speed-up {t_loop / t_vec:.1f}x"
    )
    rand = np.random.default_rng(1).random(dist.shape, dtype=np.float32)
    t_rvec = best_of(lambda: evaluate_rank(rand, q_pids, g_pids, q_cams, g_cams), args.repeats)
    t_rloop = best_of(lambda: loop_reference(rand, q_pids, g_pids, q_cams, g_cams), 1)
    print(
        f"random distances: evaluate_rank {t_rvec:.3f} s | loop {t_rloop:.3f} s | "
        f"speed-up {t_rloop / t_rvec:.1f}x"
    )
    t_matlab = best_of(
        lambda: evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, ap_mode="mars_matlab"), args.repeats
    )
    print(f"evaluate_rank ap_mode=mars_matlab: {t_matlab:.3f} s")

    print("scaling (queries fixed, gallery grows):")
    for size in (500, 1000, 2000) if args.quick else (2000, 5000, 11310):
        sub = dist[:, :size]
        valid = (g_pids[None, :size] == q_pids[:, None]).any(1)
        args_ = (sub[valid], q_pids[valid], g_pids[:size], q_cams[valid], g_cams[:size])
        tv = best_of(lambda a=args_: evaluate_rank(*a), args.repeats)
        tl = best_of(lambda a=args_: loop_reference(*a), 1)
        print(f"  {valid.sum()} x {size}: evaluate_rank {tv:.3f} s, loop {tl:.3f} s ({tl / tv:.1f}x)")


if __name__ == "__main__":
    main()
