"""The multi-task model: a sharing strategy (backbones) plus one head per task. A plain nn.Module, no trainer."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from mtl_bench.core.types import Fused


class MultiTaskModel(nn.Module):
    """``model(task, inputs, **head_kwargs)`` = ``heads[task](sharing(task, inputs), **head_kwargs)``.

    ``features`` exposes the Fused features alone (e.g. for ``heads[task].generate``).
    """

    def __init__(self, sharing: nn.Module, heads: nn.ModuleDict) -> None:
        super().__init__()
        tasks = getattr(sharing, "tasks", None)
        if tasks is not None and sorted(tasks) != sorted(heads):
            raise ValueError(f"sharing was built for tasks {sorted(tasks)} but heads exist for {sorted(heads)}")
        self.sharing = sharing
        self.heads = heads

    @property
    def tasks(self) -> list[str]:
        return sorted(self.heads)

    def features(self, task: str, inputs: dict[str, Tensor]) -> Fused:
        return self.sharing(task, inputs)

    def forward(self, task: str, inputs: dict[str, Tensor], **head_kwargs: Any) -> Tensor:
        return self.heads[task](self.features(task, inputs), **head_kwargs)
