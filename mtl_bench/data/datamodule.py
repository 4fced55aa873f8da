"""The Lightning DataModule: one loader per task, combined so that every training step sees a batch of every task."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import CombinedLoader

from mtl_bench.data.batches import TaskData, task_loader


class MultiTaskDataModule(L.LightningDataModule):
    """Training: ``CombinedLoader`` in ``max_size_cycle`` mode (an epoch covers the largest task once; smaller tasks
    cycle) or ``min_size`` (stop at the smallest). Validation: the tasks' loaders one after another, in sorted order.

    Under DDP (a Trainer with ``use_distributed_sampler=False``: the sharding is ours) each process loads its part
    of every global training batch and a contiguous part of every evaluation split (``data/batches.py``);
    ``batch_size`` stays the global batch per task, so a run on N devices makes the same updates as on one.
    """

    def __init__(self, splits: dict[str, dict[str, TaskData]], batch_size: int, mixing: str, seed: int) -> None:
        super().__init__()
        self.splits = dict(sorted(splits.items()))
        self.batch_size = batch_size
        self.mixing = mixing
        self.seed = seed

    def _shard(self) -> tuple[int, int]:
        """(rank, world size) of this process; (0, 1) without a Trainer or without DDP."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> CombinedLoader:
        rank, world = self._shard()
        loaders = {
            name: task_loader(s["train"], self.batch_size, shuffle=True, seed=self.seed * 1000 + i, rank=rank,
                              world=world)
            for i, (name, s) in enumerate(self.splits.items())
        }
        return CombinedLoader(loaders, mode=self.mixing)

    def val_dataloader(self) -> CombinedLoader:
        size = self.batch_size * 2  # no gradients in evaluation, so larger batches fit
        rank, world = self._shard()
        loaders = {
            name: task_loader(s["validation"], size, shuffle=False, seed=0, rank=rank, world=world, whole_batches=False)
            for name, s in self.splits.items()
        }
        return CombinedLoader(loaders, mode="sequential")

    def steps_per_epoch(self) -> int:
        """Training steps in one epoch under the mixing mode."""
        sizes = [-(-len(s["train"]) // self.batch_size) for s in self.splits.values()]
        return max(sizes) if self.mixing == "max_size_cycle" else min(sizes)
