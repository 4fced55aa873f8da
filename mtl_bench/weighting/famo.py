"""FAMO: Liu, Liu, Jin, Stone and Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023.

Task weights come from logits ``xi`` (initialised to 0): with ``z = softmax(xi)`` the model is trained on

    sum_t z_t / c * log(L_t - m_t + eps),   c = sum_t z_t / (L_t - m_t + eps)  (detached)

i.e. task ``t``'s gradient gets weight ``z_t / (c * (L_t - m_t))``; the minimum losses ``m_t`` are 0 and
``eps = 1e-8``, as in the official code. After the model step the logits take one step of their own Adam on

    grad_xi = J_softmax(xi)^T delta,   delta_t = log(L_t^before - m_t + eps) - log(L_t^after - m_t + eps)

so tasks whose loss fell least gain weight. Options ``lr`` (default 0.025) and ``weight_decay`` (L2, default 0.01),
the official code's defaults (LibMTL defaults to 1e-3 for the latter).

Approximation: the official code computes ``L^after`` with an extra forward pass on the same batch after the model
step. We avoid that pass: at the start of each step, ``L^before`` is the previous step's losses and ``L^after`` this
step's, on a different batch, so ``delta`` also carries the batch-to-batch noise of the losses (and the logits lag
one step). The logits and their Adam state are buffers: in ``state_dict`` but not in ``parameters()``, so the
system's optimiser leaves them alone; the previous step's losses are saved too (``get_extra_state``), so a resumed
run continues exactly. Under DDP the logits are updated from the losses averaged over the processes, so they stay
the same on every process. The official code also clips the shared gradient to norm 1; here the trainer's gradient
clipping plays that part.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from mtl_bench.errors import UserError
from mtl_bench.weighting import WEIGHTINGS
from mtl_bench.weighting.base import Weighting
from mtl_bench.weighting.functional import adam_step_, famo_logit_grad, famo_loss
from mtl_bench.weighting.sync import mean_over_workers

EPS = 1e-8


@WEIGHTINGS.register("famo")
class FAMO(Weighting):
    def __init__(self, tasks: list[str], *, lr: float = 0.025, weight_decay: float = 0.01, **opts: object) -> None:
        super().__init__(tasks, **opts)
        if not (lr > 0 and weight_decay >= 0):
            raise UserError(f"weighting 'famo': needs lr > 0 and weight_decay >= 0, got {lr!r} and {weight_decay!r}")
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        num = len(self.tasks)
        self.register_buffer("logits", torch.zeros(num))
        self.register_buffer("exp_avg", torch.zeros(num))  # the logits' Adam state
        self.register_buffer("exp_avg_sq", torch.zeros(num))
        self.register_buffer("adam_steps", torch.zeros(()))
        self._previous: tuple[list[str], Tensor] | None = None  # last step's task names and detached losses

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        names = sorted(losses)
        logits = self.logits[self.task_index(names, self.logits.device)]
        return famo_loss(torch.stack([losses[t] for t in names]), logits, EPS)

    def weights(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        """The effective multiplier of each loss's gradient, ``z_t / (c * (L_t + eps))`` (for logging)."""
        names = sorted(losses)
        values = torch.stack([losses[t].detach() for t in names]) + EPS
        z = torch.softmax(self.logits[self.task_index(names, self.logits.device)], dim=0)
        effective = z / values / (z / values).sum()
        return dict(zip(names, effective, strict=True))

    def backward(
        self,
        losses: dict[str, Tensor],
        extra: Tensor | None = None,
        backward: Callable[[Tensor], None] = Tensor.backward,
    ) -> None:
        names = sorted(losses)
        current = mean_over_workers(torch.stack([losses[t].detach() for t in names]).to(self.logits.dtype))
        if self._previous is not None:  # (the losses may come from a checkpoint loaded on another device)
            self.update_logits(self._previous[0], self._previous[1].to(current.device), names, current)
        self._previous = (names, current)
        total = self(losses)
        backward(total if extra is None else total + extra)

    def get_extra_state(self) -> dict[str, Any]:
        return {} if self._previous is None else {"names": self._previous[0], "losses": self._previous[1].clone()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._previous = (list(state["names"]), state["losses"]) if state else None

    @torch.no_grad()
    def update_logits(self, names_before: list[str], before: Tensor, names_after: list[str], after: Tensor) -> None:
        """One Adam step of the logits from the losses of the tasks present both before and after a model step."""
        common = [t for t in names_after if t in names_before]
        if not common:
            return
        device = self.logits.device
        delta = (before[[names_before.index(t) for t in common]] + EPS).log() - (
            after[[names_after.index(t) for t in common]] + EPS
        ).log()
        index = self.task_index(common, device)
        grad = torch.zeros_like(self.logits)
        grad[index] = famo_logit_grad(self.logits[index], delta.to(device))
        adam_step_(self.logits, grad, self.exp_avg, self.exp_avg_sq, self.adam_steps, self.lr, self.weight_decay)
