"""IdentitySampler: exactly P x K with distinct ids, one pass per epoch, deterministic, DDP shards."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssn3d.data.sampling import IdentitySampler
from ssn3d.data.tracklet import Tracklet


def make_tracklets(sizes: list[int]) -> list[Tracklet]:
    """sizes[pid] tracklets for each pid (pid numbers are spread out: 10 * index)."""
    return [Tracklet(("x.jpg",), 10 * pid, 0) for pid, n in enumerate(sizes) for _ in range(n)]


def check_batch(batch: list[int], tracklets: list[Tracklet], p: int, k: int) -> None:
    assert len(batch) == p * k
    pids = [tracklets[i].pid for i in batch]
    groups = [pids[j : j + k] for j in range(0, len(pids), k)]
    assert all(len(set(g)) == 1 for g in groups), "K consecutive indices share a pid"
    assert len({g[0] for g in groups}) == p, "P distinct pids"


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 7), min_size=2, max_size=12),
    st.integers(2, 4),
    st.integers(1, 5),
    st.integers(0, 99),
)
def test_batches_are_p_by_k_and_cover_all_ids(sizes: list[int], p: int, k: int, seed: int) -> None:
    tracklets = make_tracklets(sizes)
    if len(sizes) < p:
        with pytest.raises(ValueError, match="lower data.num_ids"):
            IdentitySampler(tracklets, p, k)
        return
    sampler = IdentitySampler(tracklets, p, k, seed=seed)
    batches = list(sampler)
    assert len(batches) == len(sampler) == -(-len(sizes) // p)
    for b in batches:
        check_batch(b, tracklets, p, k)
        for pid, count in Counter(tracklets[i].pid for i in b).items():
            available = [i for i, t in enumerate(tracklets) if t.pid == pid]
            chosen = [i for i in b if tracklets[i].pid == pid]
            if len(available) >= k:  # enough tracklets: no repeats
                assert len(set(chosen)) == k
            else:  # too few: every one of them, plus repeats
                assert set(chosen) == set(available) and count == k
    assert {tracklets[i].pid for b in batches for i in b} == {10 * i for i in range(len(sizes))}


def test_deterministic_per_seed_and_epoch() -> None:
    tracklets = make_tracklets([3, 5, 2, 4, 6, 1, 3])
    a, b = IdentitySampler(tracklets, 3, 2, seed=1), IdentitySampler(tracklets, 3, 2, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0)
    assert list(a) == first
    assert list(IdentitySampler(tracklets, 3, 2, seed=2)) != first


def test_ranks_split_the_same_global_batches() -> None:
    tracklets = make_tracklets([3, 5, 2, 4, 6, 1, 3, 2, 2])
    single = IdentitySampler(tracklets, 4, 3, seed=5)
    single.set_epoch(3)
    ranks = [IdentitySampler(tracklets, 4, 3, seed=5, rank=r, world_size=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(3)
    per_rank = [list(s) for s in ranks]
    assert len(per_rank[0]) == len(per_rank[1]) == len(single)
    for whole, r0, r1 in zip(single, *per_rank):
        assert r0 + r1 == whole
        assert not {tracklets[i].pid for i in r0} & {tracklets[i].pid for i in r1}
        check_batch(r0, tracklets, 2, 3)
    with pytest.raises(ValueError, match="multiple of world_size=3"):
        IdentitySampler(tracklets, 4, 3, world_size=3)


def test_iters_per_epoch_keeps_distinct_ids_across_passes() -> None:
    tracklets = make_tracklets([2, 2, 2])
    sampler = IdentitySampler(tracklets, 2, 2, iters_per_epoch=7)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 7
    for b in batches:
        check_batch(b, tracklets, 2, 2)
