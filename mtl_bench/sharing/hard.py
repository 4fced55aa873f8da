"""Hard parameter sharing: one backbone (encoders + fusion) serves every task; only the heads are per task."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from mtl_bench.core.backbone import Backbone
from mtl_bench.core.options import reject_options
from mtl_bench.core.types import Fused
from mtl_bench.sharing import SHARINGS, check_task
from mtl_bench.sharing.base import Sharing


@SHARINGS.register("hard")
class HardSharing(Sharing):
    """Every task runs the same backbone object, so every task's loss updates all of its parameters."""

    def __init__(self, make_backbone: Callable[[], Backbone], tasks: list[str], **opts: object) -> None:
        super().__init__()
        reject_options("sharing 'hard'", opts)
        self.tasks = sorted(tasks)
        self.backbone = make_backbone()

    def forward(self, task: str, inputs: dict[str, Tensor]) -> Fused:
        check_task(task, self.tasks)
        return self.backbone(inputs)

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        check_task(task, self.tasks)
        return []
