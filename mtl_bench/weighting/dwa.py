"""Dynamic Weight Average (DWA): Liu, Johns and Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019.

The weights change once per epoch, from each task's mean training loss over the last two epochs:

    w_t(e) = T * softmax_t(r_t / temperature),   r_t = L_t(e-1) / L_t(e-2)

so a task whose loss fell more slowly gets more weight; the weights sum to T (the number of tasks), and
``w_t = 1`` for the first two epochs (no history yet). All of this is the paper's rule and that of the authors'
code (github.com/lorenmt/mtan) and LibMTL, with their temperature 2 as the default of option ``temperature``.

Where ours goes beyond or differs from the reference, none of which changes a run in which every task has a batch
every epoch: after an epoch in which some task had no batch, the weights are 1 again for two epochs (the reference
has no such case); ``L_t(e)`` is the mean of the per-step losses (averaged over the processes under DDP), as in the
authors' code, where LibMTL weights each batch by its size (the two differ only through a short last batch).
The loss history is a buffer, so a resumed run keeps it; every process computes the same weights.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtl_bench.errors import UserError
from mtl_bench.weighting import WEIGHTINGS
from mtl_bench.weighting.base import Weighting
from mtl_bench.weighting.functional import dwa_weights


@WEIGHTINGS.register("dwa")
class DynamicWeightAverage(Weighting):
    def __init__(self, tasks: list[str], *, temperature: float = 2.0, **opts: object) -> None:
        super().__init__(tasks, **opts)
        if not temperature > 0:
            raise UserError(f"weighting 'dwa': option temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)
        num = len(self.tasks)
        self.register_buffer("history", torch.full((2, num), math.nan))  # rows: epoch e-2, epoch e-1
        self.register_buffer("current", torch.ones(num))  # the weights for this epoch

    def weights(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        return {t: self.current[self.tasks.index(t)] for t in sorted(losses)}

    def on_epoch_end(self, epoch_losses: dict[str, float]) -> None:
        latest = torch.tensor([epoch_losses.get(t, math.nan) for t in self.tasks], dtype=self.history.dtype)
        self.history.copy_(torch.stack([self.history[1], latest.to(self.history.device)]))
        if torch.isnan(self.history).any():
            self.current.fill_(1.0)
        else:
            self.current.copy_(dwa_weights(self.history[1], self.history[0], self.temperature))
