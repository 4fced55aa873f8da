"""The Lightning DataModule: one loader per task, combined so that every training step sees a batch of every task."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import CombinedLoader

from mtl_bench.data.batches import TaskData, task_loader


class MultiTaskDataModule(L.LightningDataModule):
    """Training: ``CombinedLoader`` in ``max_size_cycle`` mode (an epoch covers the largest task once; smaller tasks
    cycle) or ``min_size`` (stop at the smallest). Evaluation: the tasks' loaders one after another, in sorted order.
    """

    def __init__(self, splits: dict[str, dict[str, TaskData]], batch_size: int, mixing: str, seed: int) -> None:
        super().__init__()
        self.splits = dict(sorted(splits.items()))
        self.batch_size = batch_size
        self.mixing = mixing
        self.seed = seed

    def train_dataloader(self) -> CombinedLoader:
        loaders = {
            name: task_loader(s["train"], self.batch_size, shuffle=True, seed=self.seed * 1000 + i)
            for i, (name, s) in enumerate(self.splits.items())
        }
        return CombinedLoader(loaders, mode=self.mixing)

    def _eval(self, split: str) -> CombinedLoader:
        size = self.batch_size * 2  # no gradients in evaluation, so larger batches fit
        loaders = {name: task_loader(s[split], size, shuffle=False, seed=0) for name, s in self.splits.items()}
        return CombinedLoader(loaders, mode="sequential")

    def val_dataloader(self) -> CombinedLoader:
        return self._eval("validation")

    def test_dataloader(self) -> CombinedLoader:
        return self._eval("test")

    def steps_per_epoch(self) -> int:
        """Training steps in one epoch under the mixing mode."""
        sizes = [-(-len(s["train"]) // self.batch_size) for s in self.splits.values()]
        return max(sizes) if self.mixing == "max_size_cycle" else min(sizes)
