"""GradNorm: Chen, Badrinarayanan, Lee and Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss Balancing
in Deep Multitask Networks", ICML 2018.

Learnable weights ``w_t`` with ``sum_t w_t = T``. Each step, with ``W`` the parameters whose gradient norms are
balanced (option ``norm_over``):

    G_t = w_t * ||grad_W L_t||                          (the norm is computed with W's graph, w_t is not)
    r_t = (L_t / L_t(0)) / mean_s (L_s / L_s(0))        (L_t(0): option ``initial_loss``)
    L_grad = sum_t |G_t - mean_s(G_s) * r_t^alpha|      (the target is a constant)

The weights get the gradient of ``L_grad``, the model gets the gradient of ``sum_t w_t.detach() * L_t`` (+ the
sharing's ``extra``): one backward of their sum, since ``L_grad`` reaches only the weights. The system's optimiser
updates the weights with the model (as in LibMTL; the paper does not say which optimiser).

Options (ours, then the reference):

- ``alpha`` (default 1.5, the paper's and LibMTL's): the strength of the pull towards equal training rates.
- ``norm_over``: ``"last_shared"`` (default; the paper's choice, "W ... the last shared layer of weights", to save
  compute; ``bind``'s ``last_shared``) or ``"shared"`` (every shared parameter, as LibMTL does). ``"shared"`` costs a
  full backward pass per task through the shared trunk, so ``backward_passes`` is then T + 1.
- ``parametrisation``: ``"softmax"`` (default, as LibMTL: ``w = T * softmax(a)``, logits ``a`` from 0, so the sum
  is T by construction and the weights stay positive) or ``"direct"`` (the paper: the weights themselves are
  learnt, from 1, and renormalised to sum to T after each update; here at the start of the next step, before they
  are used, which is the same thing). The two take different steps from the same gradient; ``"direct"`` can drive
  a weight to 0 or below with a large learning rate, which is why the default stays the softmax.
- ``initial_loss``: ``"first_step"`` (default, the paper: the task's loss at its first step) or ``"first_epoch"``
  (LibMTL: the first epoch's mean training loss; during that epoch the weights stay at 1 and are not trained).

LibMTL also differs in one way we do not offer: its task-specific parameters get the unweighted task gradients
(its per-task backward passes reach the heads with weight 1); here the weights multiply the whole task loss, as in
the paper.

Under DDP the loss ratios use the losses averaged over the processes and the weights' gradient is averaged like
every other gradient, so the weights stay the same on every process; the norms ``G_t`` are each process's own
(of its part of the batch), so the result is close to, not equal to, a one-process run.

Cost with ``norm_over="last_shared"``: T extra ``autograd.grad`` calls that only run from each loss back to ``W``
(the heads and the last layer, not the whole encoder), so ``backward_passes`` is 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from mtl_bench.core.distributed import mean_over_workers
from mtl_bench.errors import UserError
from mtl_bench.weighting import WEIGHTINGS
from mtl_bench.weighting.base import Weighting
from mtl_bench.weighting.functional import gradient_norm, gradnorm_objective

CHOICES = {
    "norm_over": ("last_shared", "shared"),
    "parametrisation": ("softmax", "direct"),
    "initial_loss": ("first_step", "first_epoch"),
}


@WEIGHTINGS.register("gradnorm")
class GradNorm(Weighting):
    def __init__(
        self,
        tasks: list[str],
        *,
        alpha: float = 1.5,
        norm_over: str = "last_shared",
        parametrisation: str = "softmax",
        initial_loss: str = "first_step",
        **opts: object,
    ) -> None:
        super().__init__(tasks, **opts)
        if not alpha >= 0:
            raise UserError(f"weighting 'gradnorm': option alpha must be >= 0, got {alpha!r}")
        for option, value in {
            "norm_over": norm_over,
            "parametrisation": parametrisation,
            "initial_loss": initial_loss,
        }.items():
            if value not in CHOICES[option]:
                raise UserError(
                    f"weighting 'gradnorm': option {option} must be one of {list(CHOICES[option])}, got {value!r}"
                )
        self.alpha = float(alpha)
        self.norm_over, self.parametrisation, self.initial_loss = norm_over, parametrisation, initial_loss
        num = len(self.tasks)
        if parametrisation == "softmax":
            self.logits = nn.Parameter(torch.zeros(num))
        else:
            self.raw_weights = nn.Parameter(torch.ones(num))  # renormalised to sum T before each use
        self.register_buffer("initial_losses", torch.full((num,), math.nan))  # L_t(0), NaN until seen

    def bind(self, shared: list[nn.Parameter], specific: list[nn.Parameter], last_shared: list[nn.Parameter]) -> None:
        if not last_shared:
            raise UserError(
                f"weighting {self.name!r} balances gradient norms at the last shared layer, but this sharing "
                "strategy shares no parameters; use a loss-based weighting such as 'uw' or 'dwa'"
            )
        super().bind(shared, specific, last_shared)

    def all_weights(self) -> Tensor:
        """The T weights in task order, summing to T, with their graph to the learnable parameter."""
        if self.parametrisation == "softmax":
            return len(self.tasks) * torch.softmax(self.logits, dim=0)
        return len(self.tasks) * self.raw_weights / self.raw_weights.sum()

    def weights(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        w = self.all_weights().detach()
        return {t: w[self.tasks.index(t)] for t in sorted(losses)}

    def backward(
        self,
        losses: dict[str, Tensor],
        extra: Tensor | None = None,
        backward: Callable[[Tensor], None] = Tensor.backward,
    ) -> None:
        names = sorted(losses)
        index = self.task_index(names, self.initial_losses.device)
        values = torch.stack([losses[t] for t in names])
        if self.parametrisation == "direct":  # the paper's renormalisation after the previous update
            with torch.no_grad():
                self.raw_weights.mul_(len(self.tasks) / self.raw_weights.sum())
            weights = self.raw_weights[index]  # used as they are: the gradient reaches each w_t directly
        else:
            weights = self.all_weights()[index]
        with torch.no_grad():
            seen = self.initial_losses[index]
            synced = mean_over_workers(values)  # DDP: the same L_t(0) and ratios on every process
            if self.initial_loss == "first_step":
                self.initial_losses[index] = torch.where(torch.isnan(seen), synced.to(seen.dtype), seen)
            ratios = synced / self.initial_losses[index].clamp_min(torch.finfo(seen.dtype).tiny)
        total = (weights.detach() * values).sum()
        if self.initial_loss == "first_step" or not bool(torch.isnan(self.initial_losses[index]).any()):
            params = self.last_shared if self.norm_over == "last_shared" else self.shared
            norms = torch.stack([gradient_norm(losses[t], params) for t in names])  # the T partial passes
            total = total + gradnorm_objective(weights, norms, ratios, self.alpha)
        backward(total if extra is None else total + extra)

    def on_epoch_end(self, epoch_losses: dict[str, float]) -> None:
        """With ``initial_loss="first_epoch"``, a task's first epoch mean loss becomes its ``L_t(0)``."""
        if self.initial_loss != "first_epoch":
            return
        for t, value in epoch_losses.items():
            i = self.tasks.index(t)
            if math.isnan(float(self.initial_losses[i])):
                self.initial_losses[i] = value

    def backward_passes(self, num_tasks: int) -> int:
        return 1 if self.norm_over == "last_shared" else num_tasks + 1
