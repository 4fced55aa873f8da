"""How each gradient-based method turns its tasks' Jacobian into an update: the aggregator builders, their options
and defaults (``AGGREGATORS``). The methods, papers and conventions are described in ``jacobian.py``, which
registers one weighting per entry; the float64 solvers are in ``exact.py``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torchjd.aggregation import Aggregator as TorchJDAggregator
from torchjd.aggregation import (
    CAGradWeighting,
    DualProjWeighting,
    FairGrad,
    GradDrop,
    GradVac,
    NashMTL,
    PCGradWeighting,
    UPGradWeighting,
)
from torchjd.linalg import QuadprogProjector

from mtl_bench.weighting import exact

# The exact commands that fix a missing package, whichever way mtl-bench was installed (pyproject's extras pin these).
BASE_INSTALL = 'pip install "torchjd[quadprog-projector]>=0.18,<0.19"'  # qpsolvers, quadprog
SOLVERS_INSTALL = 'pip install "torchjd[cagrad,nash-mtl]>=0.18,<0.19"'  # cvxpy, clarabel, ecos


class GramianRule(nn.Module):
    """Task weights (float64) from the float64 Gramian: ``fn(G, **kwargs)`` times ``factor``.

    ``max_norm`` > 0 clips the shared update ``J^T w`` to that norm (Nash-MTL's and FairGrad's authors'
    ``clip_grad_norm_`` of the shared gradient): ``update_weights`` scales the weights, while the weights ``forward``
    returns (what ``weight_specific`` trains the heads with) are left unclipped, as in their code, where the heads'
    gradient comes from the weighted loss and only the shared parameters are clipped. A module (like TorchJD's
    weightings) so that ``state.py`` can walk it; it keeps no state (``NashRule`` does).
    """

    def __init__(self, fn: Callable[..., Tensor], factor: float = 1.0, max_norm: float = 0.0, **kwargs: Any) -> None:
        super().__init__()
        self.fn, self.factor, self.max_norm, self.kwargs = fn, factor, max_norm, kwargs

    def forward(self, gramian: Tensor) -> Tensor:
        return self.fn(gramian, **self.kwargs) * self.factor

    def update_weights(self, gramian: Tensor, weights: Tensor) -> Tensor:
        """The weights of the shared update: ``weights``, scaled so that ``||J^T w|| <= max_norm`` when clipping."""
        if self.max_norm <= 0:
            return weights
        norm = float(weights @ gramian @ weights) ** 0.5
        return weights * (self.max_norm / norm) if norm > self.max_norm else weights


class NashRule(GramianRule):
    """Nash-MTL's weights, solved every ``update_weights_every`` steps and reused in between (the authors' code).

    ``step`` and ``prvs_alpha`` (TorchJD's names, which ``state.py`` saves in checkpoints) are the number of calls so
    far and the last solved weights. A reused alpha is applied to the new Jacobian and clipped by that Jacobian's
    update norm, as the authors' code does. No warm start: the solve is exact, so its result does not depend on
    where it starts (it starts from the solution for orthogonal rows, ``exact.alpha_fair_weights``).
    """

    def __init__(self, update_weights_every: int, max_norm: float) -> None:
        super().__init__(exact.nash_mtl_weights, max_norm=max_norm)
        self.update_weights_every = update_weights_every
        self.step = 0
        self.prvs_alpha: Tensor | None = None

    def forward(self, gramian: Tensor) -> Tensor:
        if self.prvs_alpha is None or self.step % self.update_weights_every == 0:
            self.prvs_alpha = exact.nash_mtl_weights(gramian)
        self.step += 1
        return self.prvs_alpha.clone()


Aggregator = TorchJDAggregator | GramianRule


@dataclass(frozen=True)
class AggregatorSpec:
    """How to build one method's aggregator: ``build(num_tasks, **options)`` and the options it takes.

    ``weighted``: the method has task weights, so it takes ``weight_specific`` (handled here, not by ``build``).
    """

    build: Callable[..., Aggregator]
    defaults: dict[str, Any] = field(default_factory=dict)
    install: str = BASE_INSTALL
    weighted: bool = True

    @property
    def options(self) -> dict[str, Any]:
        return {**self.defaults, "weight_specific": False} if self.weighted else dict(self.defaults)


def _plain(cls: type[TorchJDAggregator]) -> Callable[..., Aggregator]:
    return lambda num_tasks, **options: cls(**options)


def _torchjd_weighting(weighting: nn.Module) -> GramianRule:
    return GramianRule(lambda gramian: weighting(gramian))


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:  # TorchJD would only complain at the first step, or not at all
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _reduction_factor(num_tasks: int, reduction: str) -> float:
    _choice("reduction", reduction, ("sum", "mean"))
    return float(num_tasks) if reduction == "sum" else 1.0


def _cagrad(num_tasks: int, c: float, rescale: int, reduction: str, norm_eps: float) -> Aggregator:
    _choice("rescale", rescale, (0, 1, 2))
    CAGradWeighting(c=c, norm_eps=norm_eps)  # checks c, norm_eps and that cvxpy and clarabel are installed
    divisor = {0: 1.0, 1: 1.0 + c**2, 2: 1.0 + c}[rescale]
    factor = _reduction_factor(num_tasks, reduction) / divisor
    return GramianRule(exact.cagrad_weights, factor, c=c, norm_eps=norm_eps)


def _aligned_mtl(num_tasks: int, scale_mode: str, reduction: str) -> Aggregator:
    _choice("scale_mode", scale_mode, ("min", "median", "rmse"))
    pref = torch.full((num_tasks,), _reduction_factor(num_tasks, reduction) / num_tasks, dtype=torch.float64)
    return GramianRule(exact.aligned_mtl_weights, scale_mode=scale_mode, pref=pref)


def _dual_cone(exact_fn: Callable[[Tensor], Tensor], torchjd_cls: type[nn.Module]) -> Callable[..., Aggregator]:
    def build(num_tasks: int, reg_eps: float) -> Aggregator:
        if reg_eps < 0:
            raise ValueError(f"reg_eps must be >= 0, got {reg_eps}")
        if reg_eps == 0:
            return GramianRule(exact_fn)
        return _torchjd_weighting(torchjd_cls(projector=QuadprogProjector(reg_eps=reg_eps)))

    return build


def _positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if not (value is None and allow_none) and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}")


def _max_norm(value: float) -> None:
    if value < 0:
        raise ValueError(f"max_norm must be >= 0 (0: no clipping), got {value}")


def _nash_mtl(num_tasks: int, max_norm: float, update_weights_every: int, optim_niter: int, solver: str) -> Aggregator:
    _choice("solver", solver, ("exact", "torchjd"))
    _max_norm(max_norm)
    _positive_int("update_weights_every", update_weights_every)
    _positive_int("optim_niter", optim_niter)
    if solver == "torchjd":  # needs cvxpy and ecos
        return NashMTL(num_tasks, max_norm=max_norm, update_weights_every=update_weights_every, optim_niter=optim_niter)
    return NashRule(update_weights_every, max_norm)


def _fairgrad(
    num_tasks: int, alpha: float, max_iters: int | None, solver: str, max_norm: float, scale_by_tasks: bool
) -> Aggregator:
    _choice("solver", solver, ("exact", "torchjd"))
    _choice("scale_by_tasks", scale_by_tasks, (False, True))
    _max_norm(max_norm)
    _positive_int("max_iters", max_iters, allow_none=True)
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    factor = float(num_tasks) if scale_by_tasks else 1.0
    if solver == "torchjd":
        if max_norm or scale_by_tasks:
            raise ValueError(
                "max_norm and scale_by_tasks apply to solver='exact' only (TorchJD's path is kept as it was)"
            )
        return FairGrad(alpha=alpha, max_iters=max_iters)
    if alpha == 0:  # the alpha -> 0 limit, linear scalarisation: TorchJD's (and LibMTL's) uniform 1/T
        return GramianRule(
            lambda gramian: torch.full((len(gramian),), 1.0 / len(gramian), dtype=torch.float64), factor, max_norm
        )
    return GramianRule(exact.alpha_fair_weights, factor, max_norm, alpha=alpha, max_iter=max_iters or 100)


AGGREGATORS: dict[str, AggregatorSpec] = {
    "pcgrad": AggregatorSpec(lambda num_tasks: _torchjd_weighting(PCGradWeighting())),
    "mgda": AggregatorSpec(lambda num_tasks: GramianRule(exact.mgda_weights)),
    "cagrad": AggregatorSpec(_cagrad, {"c": 0.4, "rescale": 1, "reduction": "sum", "norm_eps": 0.0}, SOLVERS_INSTALL),
    "imtlg": AggregatorSpec(lambda num_tasks: GramianRule(exact.imtlg_weights)),
    "nashmtl": AggregatorSpec(
        _nash_mtl,
        {"max_norm": 1.0, "update_weights_every": 1, "optim_niter": 20, "solver": "exact"},
        SOLVERS_INSTALL,  # solver="torchjd" only
    ),
    "alignedmtl": AggregatorSpec(_aligned_mtl, {"scale_mode": "min", "reduction": "sum"}),
    "upgrad": AggregatorSpec(_dual_cone(exact.upgrad_weights, UPGradWeighting), {"reg_eps": 0.0}),
    "graddrop": AggregatorSpec(_plain(GradDrop), weighted=False),
    "gradvac": AggregatorSpec(_plain(GradVac), {"beta": 0.5, "eps": 1e-8}),
    "fairgrad": AggregatorSpec(
        _fairgrad, {"alpha": 1.0, "max_iters": None, "solver": "exact", "max_norm": 0.0, "scale_by_tasks": False}
    ),
    "dualproj": AggregatorSpec(_dual_cone(exact.dualproj_weights, DualProjWeighting), {"reg_eps": 0.0}),
    "config": AggregatorSpec(lambda num_tasks: GramianRule(exact.config_weights)),
}
