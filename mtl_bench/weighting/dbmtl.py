"""DB-MTL: Lin, Jiang, Ye, Zhang, Chen, Chen, Liu and Kwok, "Dual-Balancing for Multi-Task Learning", 2023
(arXiv:2308.12029).

Two balancing steps per training step:

1. loss scale: each task is trained on ``log(L_t + eps)`` (``eps = 1e-8``) instead of ``L_t``;
2. gradient magnitude, on the shared parameters only: with ``g_t`` the gradient of ``log(L_t + eps)`` and
   ``beta_k = beta / k^beta_sigma`` at step ``k`` (from 1),

       h_t <- beta_k * h_t + (1 - beta_k) * g_t          (EMA, h_t = 0 before the task's first step)
       grad = sum_t (max_s ||h_s|| / (||h_t|| + eps)) * h_t      (every task scaled to the largest norm)

Task-specific parameters get the plain gradient of ``sum_t log(L_t + eps)``; the sharing's ``extra`` term is added
to every gradient. Options ``beta`` (default 0.9) and ``beta_sigma`` (default 0), LibMTL's command-line defaults
(its ``DB_MTL`` has no defaults of its own), so ``beta_k`` is a constant 0.9.

Reference: LibMTL's ``DB_MTL`` (the authors' code), which this matches step for step, eps included and the
task-specific gradients too (LibMTL's per-task backward reaches each task's own head with its log-loss gradient);
``tests/weighting/test_gradient_parity_stateful.py`` checks it against a float64 implementation over several steps.
One extension LibMTL lacks: a task without a batch in a step keeps its EMA unchanged and is left out of that step's
sum, while ``k`` counts every step.

Cost: one ``autograd.grad`` per task over the shared parameters (``backward_passes`` = T) and T EMA tensors the size
of the shared parameters. The EMA and the step count are saved in checkpoints (``get_extra_state``; that adds T
copies of the shared parameters to a checkpoint) so a resumed run continues them. Like the Jacobian methods it
writes ``.grad`` directly, so under DDP each task's gradient is averaged over the processes before it enters the
EMA (``jacobian.py``); each process's gradient is that of the log of its own part of the batch, so the result is
close to, not equal to, a one-process run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from mtl_bench.core.distributed import all_reduce_mean_
from mtl_bench.errors import UserError
from mtl_bench.weighting import WEIGHTINGS
from mtl_bench.weighting.base import Weighting
from mtl_bench.weighting.functional import accumulate_grads, max_norm_combination, task_gradient

EPS = 1e-8


@WEIGHTINGS.register("dbmtl")
class DualBalancing(Weighting):
    kind = "gradient"

    def __init__(self, tasks: list[str], *, beta: float = 0.9, beta_sigma: float = 0.0, **opts: object) -> None:
        super().__init__(tasks, **opts)
        if not (0 <= beta < 1 and beta_sigma >= 0):
            raise UserError(f"weighting 'dbmtl': needs 0 <= beta < 1 and beta_sigma >= 0, got {beta!r}, {beta_sigma!r}")
        self.beta, self.beta_sigma = float(beta), float(beta_sigma)
        self.steps = 0
        self.ema: dict[str, list[Tensor]] = {}  # task -> one tensor per shared parameter

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        return sum(torch.log(losses[t] + EPS) for t in sorted(losses))

    def backward(
        self,
        losses: dict[str, Tensor],
        extra: Tensor | None = None,
        backward: Callable[[Tensor], None] = Tensor.backward,
    ) -> None:
        names = sorted(losses)
        logs = [torch.log(losses[t] + EPS) for t in names]
        if self.specific:
            torch.autograd.backward(sum(logs), inputs=self.specific, retain_graph=True)
        self.steps += 1
        decay = self.beta / self.steps**self.beta_sigma
        for i, (name, log_loss) in enumerate(zip(names, logs, strict=True)):
            grads = task_gradient(log_loss, self.shared, retain_graph=i < len(names) - 1)
            all_reduce_mean_(grads)  # DDP: the same EMA on every process
            if name not in self.ema:
                self.ema[name] = [torch.zeros_like(g) for g in grads]
            elif self.ema[name][0].device != grads[0].device:  # loaded from a checkpoint onto another device
                self.ema[name] = [h.to(grads[0].device) for h in self.ema[name]]
            for h, g in zip(self.ema[name], grads, strict=True):
                h.lerp_(g, 1 - decay)
        accumulate_grads(self.shared, max_norm_combination([self.ema[t] for t in names]))
        if extra is not None:
            backward(extra)

    def backward_passes(self, num_tasks: int) -> int:
        return num_tasks

    def get_extra_state(self) -> dict[str, Any]:
        return {"steps": self.steps, "ema": {t: [h.detach().clone() for h in hs] for t, hs in self.ema.items()}}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.ema = {t: list(hs) for t, hs in state["ema"].items()}
