"""Uncertainty weighting (UW): Kendall, Gal and Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for
Scene Geometry and Semantics", CVPR 2018.

Each task has a learnable log-variance ``s_t = log sigma_t^2`` and the training objective is

    scale * sum_t (exp(-s_t) * L_t + s_t)

which the system's optimiser minimises over the model and ``s`` together; at the optimum ``s_t = log L_t``, i.e. each
task is weighted by ``1 / L_t`` (times ``scale``). Options:

- ``init`` (default 0): the starting ``s_t``, so training starts as equal weighting. The paper gives no value;
  0 is that of Gal's example code for the paper (github.com/yaringal/multi-task-learning-example) and of
  Nash-MTL's and FAMO's code. LibMTL starts at -0.5.
- ``scale`` (default 1): ours and Gal's example code use ``exp(-s) L + s``. The paper's regression term
  ``L / (2 sigma^2) + log sigma`` is ``(exp(-s) L + s) / 2``, i.e. ``scale = 0.5``, which LibMTL and Nash-MTL use
  for every task. (The paper's classification term ``exp(-s) L + s / 2`` has its optimum at ``s = log 2L``; no
  common implementation uses it.) The scale leaves the optimum unchanged and, under Adam(W), the updates too up to
  Adam's epsilon, but it halves every gradient, so it matters with SGD and with gradient clipping.

LibMTL's UW is ``init=-0.5, scale=0.5`` (initial loss weights ``exp(0.5) / 2 = 0.82``); Nash-MTL's and FAMO's
``init=0, scale=0.5``. The log-variances are 1-D, so the system's AdamW does not decay them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mtl_bench.errors import UserError
from mtl_bench.weighting import WEIGHTINGS
from mtl_bench.weighting.base import Weighting
from mtl_bench.weighting.functional import uncertainty_loss


@WEIGHTINGS.register("uw")
class UncertaintyWeighting(Weighting):
    def __init__(self, tasks: list[str], *, init: float = 0.0, scale: float = 1.0, **opts: object) -> None:
        super().__init__(tasks, **opts)
        if not math.isfinite(init):
            raise UserError(f"weighting 'uw': option init (the starting log-variance) must be finite, got {init!r}")
        if not (math.isfinite(scale) and scale > 0):
            raise UserError(f"weighting 'uw': option scale must be > 0 (0.5 is LibMTL's), got {scale!r}")
        self.init, self.scale = float(init), float(scale)
        self.log_vars = nn.Parameter(torch.full((len(self.tasks),), self.init))  # s_t, one per task in sorted order

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        names = sorted(losses)
        log_vars = self.log_vars[self.task_index(names, self.log_vars.device)]
        return self.scale * uncertainty_loss(torch.stack([losses[t] for t in names]), log_vars)

    def weights(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        """The current multipliers ``scale * exp(-s_t)`` of the losses (for logging)."""
        factors = self.scale * torch.exp(-self.log_vars.detach())
        return {t: factors[self.tasks.index(t)] for t in sorted(losses)}
