"""The P x K identity sampler: each batch holds P distinct people with K tracklets each.

Paper, "Implementation Details": "Each batch contains eight individuals, and each individual has
four video snippets" (P = 8, K = 4), the batch that batch-hard triplet mining (eq. 5) needs.

One epoch is one pass over the training identities (as the AP3D lineage's video sampler): the
identities are shuffled and taken P at a time, so every identity appears once, and the last batch
is completed with identities from the next shuffle (never repeating one inside a batch). For each
identity K of its tracklets are drawn without replacement; an identity with fewer than K
tracklets contributes all of them plus random repeats. ``iters_per_epoch`` > 0 fixes the number of
batches instead (passes continue across shuffles).

Determinism and DDP: the order depends only on ``(seed, epoch)`` (``set_epoch``). With
``world_size`` ranks every rank computes the same global batches and keeps its own slice of P /
world_size whole identities, so the ranks together see exactly the batches one process would.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np


class IdentitySampler:
    """Batches of P x K tracklet indices, for ``DataLoader(batch_sampler=...)``.

    A batch is a list of ``P * K`` indices (``P / world_size * K`` on each rank): identity by
    identity, K consecutive indices of the same pid.

    Args:
        tracklets: the training tracklets (anything whose item 1 or ``.pid`` is the person id).
        num_ids: P, distinct identities per (global) batch.
        num_instances: K, tracklets per identity.
        seed: base seed; the order of an epoch depends on (seed, epoch) only.
        rank: this process's rank.
        world_size: number of processes; must divide ``num_ids``.
        iters_per_epoch: batches per epoch; 0 = one pass over the identities.
    """

    def __init__(
        self,
        tracklets: Sequence,
        num_ids: int,
        num_instances: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        iters_per_epoch: int = 0,
    ) -> None:
        if num_ids < 1 or num_instances < 1:
            raise ValueError(f"num_ids={num_ids} and num_instances={num_instances} must be >= 1.")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must lie in 0..world_size-1 (world_size={world_size}).")
        if num_ids % world_size:
            raise ValueError(
                f"num_ids={num_ids} must be a multiple of world_size={world_size} "
                "so that each rank gets whole identities."
            )
        if iters_per_epoch < 0:
            raise ValueError(f"iters_per_epoch={iters_per_epoch} must be >= 0.")
        groups: dict[int, list[int]] = defaultdict(list)
        for i, t in enumerate(tracklets):
            groups[int(getattr(t, "pid", t[1]))].append(i)
        self.pids = np.array(sorted(groups), dtype=np.int64)
        self.groups = {pid: np.array(idx, dtype=np.int64) for pid, idx in groups.items()}
        if len(self.pids) < num_ids:
            raise ValueError(
                f"the training split has {len(self.pids)} identities but a batch needs "
                f"num_ids={num_ids} distinct ones; "
                "lower data.num_ids."
            )
        self.num_ids, self.num_instances = num_ids, num_instances
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.iters_per_epoch = iters_per_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.iters_per_epoch or -(-len(self.pids) // self.num_ids)

    @property
    def batch_size(self) -> int:
        """Indices per batch on this rank."""
        return self.num_ids // self.world_size * self.num_instances

    def _identity_batches(self, rng: np.random.Generator) -> Iterator[list[int]]:
        """len(self) lists of P distinct pids, lazily; one pass over all pids before any repeats."""
        pool: list[int] = []
        for _ in range(len(self)):
            batch: list[int] = []
            while len(batch) < self.num_ids:
                if not any(p not in batch for p in pool):
                    pool += rng.permutation(self.pids).tolist()
                j = next(j for j, p in enumerate(pool) if p not in batch)
                batch.append(pool.pop(j))
            yield batch

    def _instances(self, pid: int, rng: np.random.Generator) -> np.ndarray:
        idx = self.groups[pid]
        k = self.num_instances
        if len(idx) >= k:
            return rng.choice(idx, k, replace=False)
        return np.concatenate([rng.permutation(idx), rng.choice(idx, k - len(idx), replace=True)])

    def global_batches(self) -> Iterator[list[int]]:
        """The batches of the current epoch as one process sees them (P * K indices each), lazily.

        Identity order and tracklet choice draw from two streams, both seeded by (seed, epoch).
        """
        id_rng = np.random.default_rng([self.seed, self.epoch, 0])
        pick_rng = np.random.default_rng([self.seed, self.epoch, 1])
        for pids in self._identity_batches(id_rng):
            yield [int(i) for pid in pids for i in self._instances(pid, pick_rng)]

    def __iter__(self) -> Iterator[list[int]]:
        share = self.batch_size
        for batch in self.global_batches():
            yield batch[self.rank * share : (self.rank + 1) * share]
