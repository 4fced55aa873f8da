"""No sharing: an independent backbone per task (the single-task baseline that Delta-m is measured against)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from mtl_bench.core.backbone import Backbone
from mtl_bench.core.options import reject_options
from mtl_bench.core.types import Fused
from mtl_bench.sharing import SHARINGS, check_task
from mtl_bench.sharing.base import Sharing


@SHARINGS.register("single-task")
class SingleTask(Sharing):
    """``backbones[task]`` serves only ``task``; nothing is shared, so tasks cannot help or hurt each other.

    Training all tasks together this way is equivalent to separate single-task runs (up to the weighting).
    """

    def __init__(self, make_backbone: Callable[[], Backbone], tasks: list[str], **opts: object) -> None:
        super().__init__()
        reject_options("sharing 'single-task'", opts)
        self.tasks = sorted(tasks)
        self.backbones = nn.ModuleDict({task: make_backbone() for task in self.tasks})

    def forward(self, task: str, inputs: dict[str, Tensor]) -> Fused:
        check_task(task, self.tasks)
        return self.backbones[task](inputs)

    def shared_parameters(self) -> list[nn.Parameter]:
        return []

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        check_task(task, self.tasks)
        return list(self.backbones[task].parameters())
