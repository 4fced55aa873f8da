"""Uncertainty weighting (UW): Kendall, Gal and Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for
Scene Geometry and Semantics", CVPR 2018.

Each task has a learnable log-variance ``s_t`` (initialised to 0, so training starts as equal weighting) and the
training objective is

    sum_t exp(-s_t) * L_t + s_t

which the system's optimiser minimises over the model and ``s`` together; at the optimum ``s_t = log L_t``, i.e. each
task is weighted by ``1 / L_t``. This is the paper's classification form applied to every task (the regression form
has an extra 1/2). LibMTL uses ``L_t / (2 exp(s_t)) + s_t / 2``, which is exactly half of ours: same optimum, and
the same Adam(W) updates up to Adam's epsilon, but twice the gradient norm seen by gradient clipping.
No options.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_bench.weighting import WEIGHTINGS
from mtl_bench.weighting.base import Weighting
from mtl_bench.weighting.functional import uncertainty_loss


@WEIGHTINGS.register("uw")
class UncertaintyWeighting(Weighting):
    def __init__(self, tasks: list[str], **opts: object) -> None:
        super().__init__(tasks, **opts)
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))  # s_t, one per task in sorted order

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        names = sorted(losses)
        log_vars = self.log_vars[self.task_index(names, self.log_vars.device)]
        return uncertainty_loss(torch.stack([losses[t] for t in names]), log_vars)

    def weights(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        """The current multipliers ``exp(-s_t)`` of the losses (for logging)."""
        factors = torch.exp(-self.log_vars.detach())
        return {t: factors[self.tasks.index(t)] for t in sorted(losses)}
