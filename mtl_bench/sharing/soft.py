"""Soft parameter sharing: a backbone per task, tied by an L2 penalty between corresponding parameters.

After Duong et al. 2015, "Low Resource Dependency Parsing: Cross-lingual Parameter Sharing in a Neural Network
Parser" (ACL), who trained two parsers jointly with ``||theta_a - theta_b||^2`` added to the loss. With more than two
tasks we sum that distance over all PAIRS of task backbones, so two tasks give exactly their penalty; the sum is
computed through the mean, ``sum_{i<j} ||t_i - t_j||^2 = T * sum_i ||t_i - mean||^2``, in O(T) instead of O(T^2).

``weight`` = 0 is the single-task baseline; a large ``weight`` approaches hard sharing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from mtl_bench.core.backbone import Backbone
from mtl_bench.core.options import reject_options
from mtl_bench.core.types import Fused
from mtl_bench.errors import UserError
from mtl_bench.sharing import SHARINGS, check_task
from mtl_bench.sharing.base import Sharing


def pairwise_l2(groups: Sequence[Sequence[Tensor]]) -> Tensor:
    """Sum over all pairs of groups (one group per task, aligned by position) of the squared L2 distance.

    >>> pairwise_l2([[torch.tensor([1.0, 2.0])], [torch.tensor([1.0, 4.0])], [torch.tensor([3.0, 2.0])]])
    tensor(16.)
    """
    count = len(groups)
    total = groups[0][0].new_zeros(())
    for position in zip(*groups, strict=True):
        stacked = torch.stack(list(position))  # [T, *shape]
        total = total + count * (stacked - stacked.mean(dim=0)).square().sum()
    return total


@SHARINGS.register("soft")
class SoftSharing(Sharing):
    """``backbones[task]`` serves only ``task``; ``regularization()`` = ``weight`` * pairwise squared L2 distance.

    Every backbone starts from the SAME weights (copied from the first one), so the penalty starts at 0 and only
    resists tasks pulling their backbones apart. With independent initialisations the penalty would start at
    ~3000 * weight for the default 128-wide model (0.9M parameters), i.e. dominate the task losses at first.
    Default ``weight`` = 1e-3: each parameter then feels a pull of 2e-3 * (sum of its differences to the other
    tasks' copies), the strength of a classic coupled L2 weight decay (1e-4 .. 1e-3).
    No task loss reaches another task's backbone, so nothing is "shared" for gradient-based weightings; the tie
    acts only through the regularization term.
    """

    def __init__(
        self, make_backbone: Callable[[], Backbone], tasks: list[str], weight: float = 1e-3, **opts: object
    ) -> None:
        super().__init__()
        reject_options("sharing 'soft'", opts)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0:
            raise UserError(f"sharing 'soft' option weight={weight!r}: expected a number >= 0")
        self.weight = float(weight)
        self.tasks = sorted(tasks)
        self.backbones = nn.ModuleDict({task: make_backbone() for task in self.tasks})
        first = self.backbones[self.tasks[0]]
        for task in self.tasks[1:]:
            self.backbones[task].load_state_dict(first.state_dict())  # same start, see the class docstring

    def forward(self, task: str, inputs: dict[str, Tensor]) -> Fused:
        check_task(task, self.tasks)
        return self.backbones[task](inputs)

    def regularization(self) -> Tensor | None:
        """None when there is nothing to tie (one task, or ``weight`` = 0)."""
        if len(self.tasks) < 2 or self.weight == 0:
            return None
        return self.weight * pairwise_l2([list(self.backbones[t].parameters()) for t in self.tasks])

    def shared_parameters(self) -> list[nn.Parameter]:
        return []

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        check_task(task, self.tasks)
        return list(self.backbones[task].parameters())
