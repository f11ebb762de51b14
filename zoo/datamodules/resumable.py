"""Data loading that resumes exactly and splits evaluation sets across processes without padding.

`ResumableLoader` (training): the order of an epoch is a permutation drawn from `(seed, epoch)`,
and every item also gets a random `draw` from the same generator (datasets use it for their
random choices, e.g. the partner view), so nothing depends on the global RNG or on worker
processes. Lightning saves `state_dict()` (epoch, batches yielded on this rank) in every
checkpoint and calls `load_state_dict` on resume; the next iterator then skips exactly the
batches already trained on, mid-epoch included. Its sampler is a `DistributedSampler`, so under
DDP Lightning keeps it (each rank reads its shard; Lightning calls `set_epoch`).

`EvalSampler` (validation / test / predict): each process reads a contiguous, disjoint share of
the items and no item twice. Lightning's default `DistributedSampler` pads the last shard with
duplicates, which a metric then counts twice; with this sampler the metrics aggregated over
processes (torchmetrics) equal the one-process values over the same items.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

log = logging.getLogger(__name__)


def world() -> tuple[int, int]:
    """(number of processes, this process's rank); (1, 0) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def split_index(index) -> tuple[int, int | None]:
    """`(index, draw)` from a `ResumableSampler` item, `(index, None)` from a plain index."""
    if isinstance(index, (tuple, list)):
        return int(index[0]), int(index[1])
    return int(index), None


def random_choice(count: int, draw: int | None) -> int:
    """An index in [0, count): `draw`'s choice when given (resumable), else the global torch RNG."""
    return draw % count if draw is not None else int(torch.randint(count, ()).item())


class ResumableSampler(DistributedSampler):
    """Shuffled (or ordered) indices of one epoch, this rank's shard, optionally with a draw each.

    Args:
        dataset: the dataset (only its length is used).
        shuffle: permute per epoch (seeded by `seed + epoch`).
        seed: base seed of the permutation and the draws.
        with_draws: yield `(index, draw)` pairs, `draw` a random int in [0, 2**31) per item and epoch.
        drop_last: drop the tail so that every rank gets the same count (else pad by repeating).
    """

    def __init__(self, dataset: Dataset, shuffle: bool = True, seed: int = 0, with_draws: bool = False,
                 drop_last: bool = False) -> None:
        num_replicas, rank = world()
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.with_draws = with_draws
        self.skip = 0  # items of this rank's shard to skip (set by the loader when resuming)

    def __iter__(self) -> Iterator:
        n = len(self.dataset)
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(n, generator=g).tolist() if self.shuffle else list(range(n))
        draws = torch.randint(2**31, (n,), generator=g).tolist()  # drawn whether or not they are used
        order = (order * math.ceil(self.total_size / max(n, 1)))[: self.total_size]  # pad (or drop_last cut)
        skip, self.skip = self.skip, 0  # read when iteration really starts (DataLoader iterators are lazy)
        shard = order[self.rank: self.total_size: self.num_replicas][skip:]
        return iter([(i, draws[i]) for i in shard] if self.with_draws else shard)


class ResumableLoader(DataLoader):
    """A DataLoader over a `ResumableSampler` that checkpoints its position (see the module doc).

    Args:
        dataset: the dataset. batch_size / num_workers: as DataLoader's.
        shuffle, seed, with_draws: passed to `ResumableSampler`.
        drop_last: drop the last incomplete batch of each epoch.

    Datasets that draw their random choices from the global torch RNG instead of `with_draws`
    resume exactly too when they load in the main process (`num_workers=0`): `RNGState` restores
    that RNG. Worker processes keep RNG states of their own, which no checkpoint holds.
    """

    def __init__(self, dataset: Dataset, batch_size: int, shuffle: bool = True, seed: int = 0,
                 with_draws: bool = False, num_workers: int = 0, drop_last: bool = False) -> None:
        sampler = ResumableSampler(dataset, shuffle=shuffle, seed=seed, with_draws=with_draws)
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                         persistent_workers=num_workers > 0, drop_last=drop_last,
                         generator=torch.Generator().manual_seed(seed))  # worker seeds: not the global RNG
        self._yielded = 0
        self._resume_batches = 0

    def __iter__(self):
        sampler = self.sampler
        sampler.skip = self._resume_batches * self.batch_size
        self._yielded, self._resume_batches = self._resume_batches, 0
        return self._counting(super().__iter__())

    def _counting(self, iterator):
        for batch in iterator:
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": int(self.sampler.epoch), "batches": int(self._yielded), "seed": int(self.sampler.seed),
                "num_replicas": int(self.sampler.num_replicas)}

    def load_state_dict(self, state: dict) -> None:
        """Continue the saved epoch after the saved batches, with the saved seed. Saved with another
        number of processes, the epoch continues after as many items (not exact: other shards)."""
        epoch, batches = int(state["epoch"]), int(state["batches"])
        self.sampler.seed = int(state.get("seed", self.sampler.seed))
        saved_world = int(state.get("num_replicas", 1))
        if saved_world != self.sampler.num_replicas:
            log.warning("the checkpoint's data position was saved with %d processes, this run has %d: the epoch "
                        "continues after as many items, but not exactly as the original run would have",
                        saved_world, self.sampler.num_replicas)
            batches = batches * saved_world // self.sampler.num_replicas
        if batches >= len(self):  # saved at the end of an epoch: the next one starts from its beginning
            epoch, batches = epoch + 1, 0
        self.sampler.set_epoch(epoch)
        self._resume_batches = batches


class EvalSampler(DistributedSampler):
    """This rank's contiguous share of the items in order, no padding, no duplicates (module doc)."""

    def __init__(self, dataset: Dataset) -> None:
        num_replicas, rank = world()
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        n = len(dataset)
        per = n // num_replicas
        extra = n % num_replicas
        self.start = rank * per + min(rank, extra)
        self.num_samples = per + (1 if rank < extra else 0)
        self.total_size = n

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.start + self.num_samples))

    def __len__(self) -> int:
        return self.num_samples


__all__ = ["EvalSampler", "ResumableLoader", "ResumableSampler", "random_choice", "split_index", "world"]
