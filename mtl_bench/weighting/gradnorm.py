"""GradNorm: Chen, Badrinarayanan, Lee and Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss Balancing
in Deep Multitask Networks", ICML 2018.

Learnable weights ``w = T * softmax(a)`` (logits ``a`` initialised to 0; the softmax keeps ``sum_t w_t = T``
without the paper's renormalisation step after each update, as in LibMTL). Each step, with ``W`` the parameters of
the last shared layer (``bind``'s ``last_shared``):

    G_t = w_t * ||grad_W L_t||                          (the norm is computed with W's graph, w_t is not)
    r_t = (L_t / L_t(0)) / mean_s (L_s / L_s(0))        (L_t(0): the task's loss at its first step)
    L_grad = sum_t |G_t - mean_s(G_s) * r_t^alpha|      (the target is a constant)

The logits get the gradient of ``L_grad``, the model gets the gradient of ``sum_t w_t.detach() * L_t`` (+ the
sharing's ``extra``): one backward of their sum, since ``L_grad`` reaches only the logits. Option ``alpha`` (default
1.5, the paper's and LibMTL's), the strength of the pull towards equal training rates.

Under DDP the loss ratios use the losses averaged over the processes and the logits' gradient is averaged like
every other gradient, so the weights stay the same on every process; the norms ``G_t`` are each process's own
(of its part of the batch), so the result is close to, not equal to, a one-process run.

Cost: T extra ``autograd.grad`` calls that only run from each loss back to ``W`` (the heads and the last layer,
not the whole encoder), so ``backward_passes`` is 1. LibMTL differs in using the first epoch's mean loss as
``L_t(0)`` and plain equal weighting during that epoch; we follow the paper (first step).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from mtl_bench.errors import UserError
from mtl_bench.weighting import WEIGHTINGS
from mtl_bench.weighting.base import Weighting
from mtl_bench.weighting.functional import gradient_norm, gradnorm_objective
from mtl_bench.weighting.sync import mean_over_workers


@WEIGHTINGS.register("gradnorm")
class GradNorm(Weighting):
    def __init__(self, tasks: list[str], *, alpha: float = 1.5, **opts: object) -> None:
        super().__init__(tasks, **opts)
        if not alpha >= 0:
            raise UserError(f"weighting 'gradnorm': option alpha must be >= 0, got {alpha!r}")
        self.alpha = float(alpha)
        self.logits = nn.Parameter(torch.zeros(len(self.tasks)))
        self.register_buffer("initial_losses", torch.full((len(self.tasks),), math.nan))  # L_t(0), NaN until seen

    def bind(
        self, shared: list[nn.Parameter], specific: list[nn.Parameter], last_shared: list[nn.Parameter]
    ) -> None:
        if not last_shared:
            raise UserError(
                f"weighting {self.name!r} balances gradient norms at the last shared layer, but this sharing "
                "strategy shares no parameters; use a loss-based weighting such as 'uw' or 'dwa'"
            )
        super().bind(shared, specific, last_shared)

    def weights(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        w = len(self.tasks) * torch.softmax(self.logits, dim=0)
        return {t: w[self.tasks.index(t)] for t in sorted(losses)}

    def backward(
        self,
        losses: dict[str, Tensor],
        extra: Tensor | None = None,
        backward: Callable[[Tensor], None] = Tensor.backward,
    ) -> None:
        names = sorted(losses)
        index = self.task_index(names, self.logits.device)
        values = torch.stack([losses[t] for t in names])
        with torch.no_grad():
            seen = self.initial_losses[index]
            synced = mean_over_workers(values)  # DDP: the same L_t(0) and ratios on every process
            self.initial_losses[index] = torch.where(torch.isnan(seen), synced.to(seen.dtype), seen)
            ratios = synced / self.initial_losses[index].clamp_min(torch.finfo(seen.dtype).tiny)
        norms = torch.stack([gradient_norm(losses[t], self.last_shared) for t in names])  # the T partial passes
        weights = (len(self.tasks) * torch.softmax(self.logits, dim=0))[index]
        total = (weights.detach() * values).sum() + gradnorm_objective(weights, norms, ratios, self.alpha)
        backward(total if extra is None else total + extra)
