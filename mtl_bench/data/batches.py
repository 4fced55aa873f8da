"""In-memory task data and batched indexing into it (one tensor gather per batch, no per-sample Python work)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mtl_bench.models.types import IMAGE, VIDEO


@dataclass
class TaskData:
    """One split of one task: modality tensors (uint8 pixels, token ids), targets and text references."""

    inputs: dict[str, Tensor]
    target: Tensor
    references: list[list[str]] | None = None

    def __len__(self) -> int:
        return len(self.target)


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


def task_loader(data: TaskData, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    """A loader over one task's split; shuffling uses its own seeded generator so runs repeat exactly."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        BatchedTaskDataset(data), batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=_identity
    )
