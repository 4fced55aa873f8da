"""In-memory task data and batched indexing into it (one tensor gather per batch, no per-sample Python work).

Batch order is a pure function of (seed, epoch, pass), never of a generator's history, so a run resumed from an
epoch checkpoint draws the same batches as one that never stopped. Under DDP every process builds the same global
batches and takes its own contiguous part of each, so N processes make the same updates as one process would with
the whole batch (see ``ShardedBatches``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from mtl_bench.core.types import IMAGE, VIDEO


@dataclass
class TaskData:
    """One split of one task: modality tensors (uint8 pixels, token ids), targets and text references."""

    inputs: dict[str, Tensor]
    target: Tensor
    references: list[list[str]] | None = None

    def __len__(self) -> int:
        return len(self.target)

    def take(self, indices: Any) -> TaskData:
        """The items at ``indices`` (repeats allowed, as a bootstrap draws them), in that order."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        refs = None if self.references is None else [self.references[i] for i in idx.tolist()]
        return TaskData({k: v[idx] for k, v in self.inputs.items()}, self.target[idx], refs)


def to_float_pixels(name: str, value: Tensor) -> Tensor:
    """Image and video uint8 tensors -> float in [0, 1]; other modalities unchanged."""
    return value.float().div_(255) if name in (IMAGE, VIDEO) else value


class BatchedTaskDataset(Dataset):
    """A map-style dataset whose ``__getitems__`` returns a whole batch dict: {modality..., target, references?}."""

    def __init__(self, data: TaskData) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        batch: dict[str, Any] = {k: to_float_pixels(k, v[idx]) for k, v in sorted(self.data.inputs.items())}
        batch["target"] = self.data.target[idx]
        if self.data.references is not None:
            batch["references"] = [self.data.references[i] for i in indices]
        return batch

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])


def _identity(batch: dict[str, Any]) -> dict[str, Any]:
    return batch


def part(size: int, rank: int, world: int) -> tuple[int, int]:
    """The contiguous slice ``[lo, hi)`` of ``size`` items that process ``rank`` of ``world`` takes.

    >>> [part(5, r, 2) for r in range(2)]
    [(0, 2), (2, 5)]
    """
    return size * rank // world, size * (rank + 1) // world


class EpochOrder(Sampler[int]):
    """Sample order of one split: a permutation drawn from (seed, epoch, pass), or ``range(n)`` without shuffling.

    ``set_epoch`` (which Lightning calls at every epoch start) restarts the pass count; a task loader that a longer
    task cycles through gets a fresh order on each pass of the same epoch.
    """

    def __init__(self, size: int, seed: int, shuffle: bool) -> None:
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.epoch, self.passes = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.passes = epoch, 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.size))
        key = int(np.random.SeedSequence([self.seed, self.epoch, self.passes]).generate_state(1, np.uint64)[0] >> 1)
        self.passes += 1
        return iter(torch.randperm(self.size, generator=torch.Generator().manual_seed(key)).tolist())


class ShardedBatches(Sampler[list[int]]):
    """Global batches of ``batch_size`` over ``order``; process ``rank`` of ``world`` yields its part of each.

    Training (``whole_batches``): every process cuts the same global batches and keeps its contiguous part, so
    averaging the processes' gradients of per-sample mean losses equals the gradient over the global batch (exactly
    when ``world`` divides the batch). A last batch with fewer samples than processes is dropped everywhere, so
    every process makes the same number of steps. Evaluation: each process takes a contiguous part of the split and
    batches it; the metrics are then gathered across processes in rank order, which is the split's order.
    """

    def __init__(self, order: EpochOrder, batch_size: int, rank: int = 0, world: int = 1, whole_batches: bool = True):
        self.sampler, self.batch_size, self.rank, self.world = order, batch_size, rank, world
        self.whole_batches = whole_batches

    def __len__(self) -> int:
        size = len(self.sampler)
        if not self.whole_batches:
            lo, hi = part(size, self.rank, self.world)
            return -(-(hi - lo) // self.batch_size)
        full, rest = divmod(size, self.batch_size)
        return full + (rest >= self.world and rest > 0)

    def __iter__(self) -> Iterator[list[int]]:
        order = list(self.sampler)
        if not self.whole_batches:
            lo, hi = part(len(order), self.rank, self.world)
            order = order[lo:hi]
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            if not self.whole_batches:
                yield batch
            elif len(batch) >= self.world:
                lo, hi = part(len(batch), self.rank, self.world)
                yield batch[lo:hi]


def task_loader(
    data: TaskData, batch_size: int, shuffle: bool, seed: int, rank: int = 0, world: int = 1, whole_batches: bool = True
) -> DataLoader:
    """A loader over one task's split (this process's part of it under DDP); runs repeat exactly.

    The loader gets a generator of its own: iterating a DataLoader draws a seed, and drawing it from torch's global
    generator would shift the dropout masks of every later step.
    """
    batches = ShardedBatches(EpochOrder(len(data), seed, shuffle), batch_size, rank, world, whole_batches)
    return DataLoader(
        BatchedTaskDataset(data), batch_sampler=batches, collate_fn=_identity, generator=torch.Generator()
    )
