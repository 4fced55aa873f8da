"""FAMO: Liu, Liu, Jin, Stone and Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023.

Task weights come from logits ``xi`` (initialised to 0): with ``z = softmax(xi)`` the model is trained on

    sum_t z_t / c * log(L_t - m_t + eps),   c = sum_t z_t / (L_t - m_t + eps)  (detached)

i.e. task ``t``'s gradient gets weight ``z_t / (c * (L_t - m_t + eps))``, and these weights sum to 1;
``eps = 1e-8`` as in the official code (github.com/Cranial-XIX/FAMO). After the model step the logits take one
step of their own Adam (L2 weight decay, as ``torch.optim.Adam(weight_decay=...)``) on

    grad_xi = J_softmax(xi)^T delta,   delta_t = log(L_t^before - m_t + eps) - log(L_t^after - m_t + eps)

so tasks whose loss fell least gain weight. Options (ours, then the reference):

- ``lr`` (default 0.025) and ``weight_decay`` (default 0.01): the official code's defaults (``w_lr``, ``gamma``);
  LibMTL's ``FAMO_w_gamma`` defaults to 1e-3.
- ``min_losses`` (default none: every ``m_t = 0``, as the official code unless ``set_min_losses`` is called, and
  LibMTL): a mapping from task name to a lower bound of its loss; tasks not named keep 0. A loss below its bound
  makes the log undefined (NaN), as in the official code.
- ``after``: where ``L^after`` comes from.
  ``"next_step"`` (default): ``L^before`` is the previous step's losses and ``L^after`` this step's, on a different
  batch, so no extra forward pass is needed, but ``delta`` also carries the batch-to-batch noise of the losses and
  the logits lag one step. ``"same_batch"`` (the official code and LibMTL): after the optimiser step the system
  re-computes the losses of the same batches with the updated model (no graph, model still in training mode, as
  the official code does) and hands them to ``after_step``; this costs one extra forward pass per step. The default
  stays ``"next_step"`` because that is what every stored FAMO result used, and for the cost; the two differ in
  results, so compare FAMO to the literature with ``after=same_batch``.

The logits and their Adam state are buffers: in ``state_dict`` but not in ``parameters()``, so the system's
optimiser leaves them alone; with ``after="next_step"`` the previous step's losses are saved too
(``get_extra_state``), so a resumed run continues exactly. Under DDP the logits are updated from the losses
averaged over the processes, so they stay the same on every process. The official code also clips the shared
gradient to norm 1 (``max_norm``); here the trainer's gradient clipping (``train.grad_clip``, default 1, over all
parameters) plays that part.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from mtl_bench.core.distributed import mean_over_workers
from mtl_bench.errors import UserError
from mtl_bench.weighting import WEIGHTINGS
from mtl_bench.weighting.base import Weighting
from mtl_bench.weighting.functional import adam_step_, famo_logit_grad, famo_loss

EPS = 1e-8
AFTER = ("next_step", "same_batch")


@WEIGHTINGS.register("famo")
class FAMO(Weighting):
    def __init__(
        self,
        tasks: list[str],
        *,
        lr: float = 0.025,
        weight_decay: float = 0.01,
        min_losses: Mapping[str, float] | None = None,
        after: str = "next_step",
        **opts: object,
    ) -> None:
        super().__init__(tasks, **opts)
        if not (lr > 0 and weight_decay >= 0):
            raise UserError(f"weighting 'famo': needs lr > 0 and weight_decay >= 0, got {lr!r} and {weight_decay!r}")
        if after not in AFTER:
            raise UserError(f"weighting 'famo': option after must be one of {list(AFTER)}, got {after!r}")
        bounds = dict(min_losses or {})
        unknown = sorted(set(bounds) - set(self.tasks))
        if unknown or not all(isinstance(v, int | float) and math.isfinite(v) for v in bounds.values()):
            raise UserError(
                f"weighting 'famo': option min_losses must map task names {self.tasks} to finite numbers, "
                f"got {min_losses!r}"
            )
        self.lr, self.weight_decay, self.after = float(lr), float(weight_decay), after
        self.needs_losses_after_step = after == "same_batch"
        num = len(self.tasks)
        m = torch.tensor([float(bounds.get(t, 0.0)) for t in self.tasks])
        self.register_buffer("min_losses", m, persistent=False)  # m_t: from the options, not the checkpoint
        self.register_buffer("logits", torch.zeros(num))
        self.register_buffer("exp_avg", torch.zeros(num))  # the logits' Adam state
        self.register_buffer("exp_avg_sq", torch.zeros(num))
        self.register_buffer("adam_steps", torch.zeros(()))
        self._previous: tuple[list[str], Tensor] | None = None  # the "before" task names and detached losses

    def shifted(self, names: list[str], losses: Tensor) -> Tensor:
        """``L_t - m_t`` for the tasks ``names`` (``losses`` in that order)."""
        return losses - self.min_losses[self.task_index(names, self.min_losses.device)].to(losses.device)

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        names = sorted(losses)
        logits = self.logits[self.task_index(names, self.logits.device)]
        return famo_loss(self.shifted(names, torch.stack([losses[t] for t in names])), logits, EPS)

    def weights(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        """The effective multiplier of each loss's gradient, ``z_t / (c * (L_t - m_t + eps))`` (for logging)."""
        names = sorted(losses)
        values = self.shifted(names, torch.stack([losses[t].detach() for t in names])) + EPS
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
        if self.after == "next_step" and self._previous is not None:  # (maybe from a checkpoint on another device)
            self.update_logits(self._previous[0], self._previous[1].to(current.device), names, current)
        elif self.after == "same_batch" and self._previous is not None:
            raise RuntimeError(
                "weighting 'famo' (after=same_batch): backward was called twice without after_step "
                "in between; the trainer must call after_step with the re-computed losses"
            )
        self._previous = (names, current)
        total = self(losses)
        backward(total if extra is None else total + extra)

    def after_step(self, losses: dict[str, Tensor]) -> None:
        """``after="same_batch"``: update the logits from this step's losses before and after the model step."""
        if self.after != "same_batch" or self._previous is None:
            return
        names = sorted(losses)
        after = mean_over_workers(torch.stack([losses[t].detach() for t in names]).to(self.logits.dtype))
        self.update_logits(self._previous[0], self._previous[1].to(after.device), names, after)
        self._previous = None

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
        before = self.shifted(common, before[[names_before.index(t) for t in common]])
        after = self.shifted(common, after[[names_after.index(t) for t in common]])
        delta = (before + EPS).log() - (after + EPS).log()
        index = self.task_index(common, device)
        grad = torch.zeros_like(self.logits)
        grad[index] = famo_logit_grad(self.logits[index], delta.to(device))
        adam_step_(self.logits, grad, self.exp_avg, self.exp_avg_sq, self.adam_steps, self.lr, self.weight_decay)
