"""Gradient-based weightings: TorchJD's aggregators and our float64 ones (``exact.py``), one table row per method.

Each step the shared parameters' Jacobian J (one row per task: that task's gradient) is reduced to one update
``J^T w``, while the task-specific parameters get the plain gradient of ``sum_t L_t`` (or, with the option
``weight_specific=true``, of ``sum_t w_t L_t``), and the sharing's ``extra`` term is added to every gradient.

The methods below whose weights depend on J only through its Gramian ``G = J J^T`` (all but graddrop, gradvac,
nashmtl and fairgrad, which stay TorchJD's own, in the Jacobian's dtype) build G in float64 from the rows, solve
the T x T problem in float64 (exactly where ``exact.py`` says so) and combine the rows in float64, casting the
update back to the parameters' dtype: TorchJD's float32 versions lose IMTL-G's and ConFIG's equal projections
once two gradient norms differ ~3,000x, stop MGDA 6-25% from the min-norm point, and make UPGrad's update up to 40x
too long on conflicting rows of different norms (``exact.py`` has the figures).

Registered names, papers, options (default), and our convention against the authors' code ("ref"). Checked in the
authors' repositories: CAGrad (Cranial-XIX/CAGrad, nyuv2/ and cityscapes/), Aligned-MTL (SamsungLabs/MTL,
code/optim/aligned), MGDA (isl-org/MultiObjectiveOptimization), ConFIG (via TorchJD's adaptation of tum-pbs/ConFIG),
UPGrad and DualProj (TorchJD is the authors' code); PCGrad against LibMTL and CAGrad's re-implementation.

- ``pcgrad``: PCGrad, Yu et al., NeurIPS 2020: each g_i projected off every g_j it conflicts with, j in a random
  order drawn per i (``torch.randperm``, seeded by the run), then summed. Same as the reference. No options.
- ``mgda``: MGDA, Sener and Koltun, NeurIPS 2018: the exact min-norm point of the rows' convex hull (weights sum to
  1). Ref: Frank-Wolfe (250 iterations, stop at 1e-5), optionally on normalised gradients ("not in the paper"),
  MGDA-UB on a shared representation (none here), and the heads trained on ``sum_t w_t L_t`` (ours: plain sum;
  ``weight_specific=true`` gives theirs).
- ``cagrad``: CAGrad, Liu et al., NeurIPS 2021. ``c`` (0.4), ``rescale`` (1), ``reduction`` ("sum"), ``norm_eps``
  (0). The update is ``(g0 + sqrt(phi) / ||g_w|| g_w) * k``, g0 the mean row, with ``k = T`` for
  ``reduction="sum"`` (the authors' ``overwrite_grad`` multiplies by T "to match the sum loss"; "mean": 1, TorchJD
  and LibMTL) divided by ``1 + c^2`` for ``rescale=1`` (the authors' default; 2: ``1 + c``; 0: none, TorchJD and
  the paper's Algorithm 1). ``c``: the authors' scripts run 0.4 on NYUv2 and Cityscapes (their argparse default,
  0.5, is what LibMTL took). ``norm_eps``: TorchJD's 1e-4 zeroes the update whenever ``||g_w|| < 1e-4 ||J||_F``,
  which is every step once two gradient norms differ ~1e4x; the authors' code has no such cut-off. TorchJD's exact
  behaviour: ``rescale=0, reduction="mean", norm_eps=1e-4``.
- ``imtlg``: IMTL-G, Liu et al., ICLR 2021: weights summing to 1, equal projections of the update on every unit
  gradient (solved through the cosine matrix in float64). Ref: IMTL-G inside IMTL (with IMTL-L's loss scaling,
  which we do not add; LibMTL's ``IMTL`` does). No options besides ``weight_specific``.
- ``nashmtl``: Nash-MTL, Navon et al., ICML 2022. ``max_norm`` (1.0), ``update_weights_every`` (1),
  ``optim_niter`` (20); the number of tasks is set from the run's tasks. Ref: heads trained on ``sum_t alpha_t L_t``
  (ours: plain sum; ``weight_specific=true`` gives theirs).
- ``alignedmtl``: Aligned-MTL, Senushkin et al., CVPR 2023. ``scale_mode`` ("min": smallest eigenvalue),
  ``reduction`` ("sum": the aligned rows summed, each task's preference 1, as the authors' code and LibMTL;
  "mean": 1/T, TorchJD's). Eigenvalues below ``T * eps_float32 * lambda_max`` are dropped, as the authors' code
  does. Ref: the same; their ``scale_decoder_grad`` (off by default) is not offered.
- ``upgrad``: UPGrad, Quinton and Rey, 2024: the mean of the rows each projected onto the dual cone of all rows.
  ``reg_eps`` (0: the exact projection; TorchJD, the authors' code, adds ``1e-4 * trace(G)`` to G first, which
  ``reg_eps=1e-4`` reproduces; the paper defines the exact projection, hence our default).
- ``graddrop``: GradDrop, Chen et al., NeurIPS 2020. No options.
- ``gradvac``: GradVac, Wang et al., ICLR 2021. ``beta`` (0.5), ``eps`` (1e-8).
- ``fairgrad``: FairGrad, Ban and Ji, ICML 2024. ``alpha`` (1.0), ``max_iters`` (None: scipy's default). Ref: heads
  trained on ``sum_t w_t L_t`` (ours: plain sum; ``weight_specific=true`` gives theirs).
- ``dualproj``: DualProj, Quinton and Rey, 2024: the mean row projected onto the dual cone. ``reg_eps`` as upgrad.
- ``config``: ConFIG, Liu et al., ICLR 2025: the unit vector with equal cosines to every row, times the sum of the
  rows' projections on it (preference vector of ones, as the authors' default). No options besides
  ``weight_specific``.

``weight_specific`` (false for every method, graddrop has none): whether the task-specific parameters are trained on
the weighted sum ``sum_t w_t L_t`` with the weights of the shared update, as the MGDA, Nash-MTL and FairGrad
authors' code does, instead of the plain sum. Our default keeps one convention for every method (LibMTL's, and
CAGrad's, PCGrad's and Aligned-MTL's authors'): methods then differ only on the shared parameters, and a head's
gradient does not shrink with weights that sum to 1 (MGDA, IMTL-G) or swell with Nash-MTL's ``1 / ||g_t||``.

CAGrad and Nash-MTL need cvxpy and a solver: ``pip install "torchjd[cagrad,nash-mtl]>=0.18,<0.19"``; UPGrad and
DualProj with ``reg_eps > 0`` need quadprog: ``pip install "torchjd[quadprog-projector]>=0.18,<0.19"``. These
commands work however mtl-bench was installed (from a checkout, ``pip install "mtl-bench[...]"`` would fetch
another copy from the index, or nothing).

How the Jacobian is computed. In mtl-bench every task has its own batch, so the T losses come from T separate
graphs that meet only at the shared parameters. ``torchjd.autojac.backward(losses, inputs=shared)`` would
back-propagate all T rows through every task's graph at once (vmap over the rows), i.e. T times the work and memory
of one backward: measured 10x slower than the alternative at T = 8 on CPU. Instead we take one ``autograd.grad``
per task, which runs through that task's graph only; the float64 path combines the rows itself, TorchJD's path
stores them in each shared parameter's ``.jac`` and lets ``torchjd.autojac.jac_to_grad`` aggregate (both add into
``.grad``, as autograd does). For the same reason LibMTL's "representation gradient" option (aggregating the
Jacobian of a common representation instead of the parameters) does not apply: there is no representation common
to all tasks' inputs.

Under DDP: the update is written into ``.grad`` directly, outside autograd, so DDP's all-reduce hooks would never
see it and each process would step with its own aggregate. So each task's gradient row is averaged over the
processes (``sync.all_reduce_mean_``, one collective for all rows) *before* aggregation: every process aggregates
the Jacobian of the global batch, gets the same update, and the result equals a one-process run on the whole batch
(the per-process batches are parts of the global one, ``data/batches.py``). The cost is T gradients' worth of
communication per step instead of one. ``dbmtl`` does the same. Stateful aggregators (GradVac's EMA, Nash-MTL's
warm start) are saved in checkpoints through ``get_extra_state`` (``state.py``), so a resumed run continues them; a
step where only some tasks have a batch uses a separate aggregator for that task set, and a step with a single task
uses its plain gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

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
from torchjd.autojac import jac_to_grad
from torchjd.linalg import QuadprogProjector

from mtl_bench.errors import UserError
from mtl_bench.weighting import WEIGHTINGS, exact
from mtl_bench.weighting.base import Weighting
from mtl_bench.weighting.functional import accumulate_grads, task_gradient
from mtl_bench.weighting.state import aggregator_state, load_aggregator_state
from mtl_bench.weighting.sync import all_reduce_mean_

# The exact commands that fix a missing package, whichever way mtl-bench was installed (pyproject's extras pin these).
BASE_INSTALL = 'pip install "torchjd[quadprog-projector]>=0.18,<0.19"'  # qpsolvers, quadprog
SOLVERS_INSTALL = 'pip install "torchjd[cagrad,nash-mtl]>=0.18,<0.19"'  # cvxpy, clarabel, ecos


class GramianRule(nn.Module):
    """Task weights (float64) from the float64 Gramian: ``fn(G, **kwargs)`` times ``factor``.

    A module (like TorchJD's weightings) so that ``state.py`` can walk it; it keeps no state.
    """

    def __init__(self, fn: Callable[..., Tensor], factor: float = 1.0, **kwargs: Any) -> None:
        super().__init__()
        self.fn, self.factor, self.kwargs = fn, factor, kwargs

    def forward(self, gramian: Tensor) -> Tensor:
        return self.fn(gramian, **self.kwargs) * self.factor


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


AGGREGATORS: dict[str, AggregatorSpec] = {
    "pcgrad": AggregatorSpec(lambda num_tasks: _torchjd_weighting(PCGradWeighting())),
    "mgda": AggregatorSpec(lambda num_tasks: GramianRule(exact.mgda_weights)),
    "cagrad": AggregatorSpec(_cagrad, {"c": 0.4, "rescale": 1, "reduction": "sum", "norm_eps": 0.0}, SOLVERS_INSTALL),
    "imtlg": AggregatorSpec(lambda num_tasks: GramianRule(exact.imtlg_weights)),
    "nashmtl": AggregatorSpec(
        lambda num_tasks, **options: NashMTL(n_tasks=num_tasks, **options),
        {"max_norm": 1.0, "update_weights_every": 1, "optim_niter": 20},
        SOLVERS_INSTALL,
    ),
    "alignedmtl": AggregatorSpec(_aligned_mtl, {"scale_mode": "min", "reduction": "sum"}),
    "upgrad": AggregatorSpec(_dual_cone(exact.upgrad_weights, UPGradWeighting), {"reg_eps": 0.0}),
    "graddrop": AggregatorSpec(_plain(GradDrop), weighted=False),
    "gradvac": AggregatorSpec(_plain(GradVac), {"beta": 0.5, "eps": 1e-8}),
    "fairgrad": AggregatorSpec(_plain(FairGrad), {"alpha": 1.0, "max_iters": None}),
    "dualproj": AggregatorSpec(_dual_cone(exact.dualproj_weights, DualProjWeighting), {"reg_eps": 0.0}),
    "config": AggregatorSpec(lambda num_tasks: GramianRule(exact.config_weights)),
}


class JacobianWeighting(Weighting):
    """Reduces the per-task gradients of the shared parameters with ``spec``'s aggregator (see the module doc)."""

    kind = "gradient"
    spec: ClassVar[AggregatorSpec]

    def __init__(self, tasks: list[str], **opts: Any) -> None:
        super().__init__(tasks)
        unknown = sorted(set(opts) - set(self.spec.options))
        if unknown:
            raise UserError(
                f"weighting {self.name!r} got unknown options {unknown}; it takes {self.option_names() or 'none'}"
            )
        self.options = {**self.spec.options, **opts}
        self.weight_specific = bool(self.options.get("weight_specific", False))
        self._aggregators: dict[tuple[str, ...], Aggregator] = {}  # per task set; not submodules (see above)
        self.aggregator(tuple(self.tasks))  # fail now, not at the first step, on a missing solver or a bad value

    @classmethod
    def option_names(cls) -> list[str]:
        return sorted(cls.spec.options)

    def aggregator(self, names: tuple[str, ...]) -> Aggregator:
        """The aggregator for the tasks ``names`` (built on first use: some keep per-task state)."""
        if names not in self._aggregators:
            options = {k: v for k, v in self.options.items() if k != "weight_specific"}
            try:
                self._aggregators[names] = self.spec.build(len(names), **options)
            except ImportError as err:
                raise UserError(
                    f"weighting {self.name!r} needs packages that are missing ({err}); "
                    f"install them with: {self.spec.install}"
                ) from err
            except (TypeError, ValueError) as err:
                raise UserError(f"weighting {self.name!r}: bad options {self.options}: {err}") from err
        return self._aggregators[names]

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        """The plain sum (what the task-specific parameters are trained on unless ``weight_specific``)."""
        return sum(losses[t] for t in sorted(losses))

    def backward(
        self,
        losses: dict[str, Tensor],
        extra: Tensor | None = None,
        backward: Callable[[Tensor], None] = Tensor.backward,
    ) -> None:
        names = sorted(losses)
        weighted_specific = self.weight_specific and bool(self.specific)  # needs the weights: after aggregation
        if self.specific and not weighted_specific:
            torch.autograd.backward(self(losses), inputs=self.specific, retain_graph=True)
        rows = [
            task_gradient(losses[t], self.shared, retain_graph=weighted_specific or i < len(names) - 1)
            for i, t in enumerate(names)
        ]
        all_reduce_mean_([g for row in rows for g in row])  # DDP: every process aggregates the global Jacobian
        if len(rows) == 1:  # nothing to reconcile (and Nash-MTL cannot solve for one task)
            accumulate_grads(self.shared, rows[0])
            weights = torch.ones(1)
        else:
            blocks = [torch.stack([row[j] for row in rows]) for j in range(len(self.shared))]
            del rows
            weights = self._aggregate(self.aggregator(tuple(names)), blocks)
        if weighted_specific:
            weighted = sum(float(w) * losses[t] for w, t in zip(weights.tolist(), names, strict=True))
            torch.autograd.backward(weighted, inputs=self.specific)
        if extra is not None:
            backward(extra)

    def _aggregate(self, aggregator: Aggregator, blocks: list[Tensor]) -> Tensor:
        """Add the update into the shared ``.grad``; returns the task weights (ones for GradDrop, which has none)."""
        if isinstance(aggregator, GramianRule):  # float64 Gramian, weights and combination; update in param dtype
            weights = aggregator(exact.gramian(blocks).cpu())
            w = weights.to(blocks[0].device)
            accumulate_grads(
                self.shared, [(w @ b.reshape(len(w), -1).double()).view(b.shape[1:]).to(b.dtype) for b in blocks]
            )
            return weights
        for param, block in zip(self.shared, blocks, strict=True):
            param.jac = block  # the field torchjd.autojac.backward would fill
        weights = jac_to_grad(self.shared, aggregator)
        return torch.ones(len(blocks[0])) if weights is None else weights.detach()

    def backward_passes(self, num_tasks: int) -> int:
        return num_tasks

    def get_extra_state(self) -> dict[str, Any]:
        """The aggregators' own state (only GradVac and Nash-MTL keep any), per task set."""
        return {"|".join(names): aggregator_state(agg) for names, agg in self._aggregators.items()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        for key, values in state.items():
            load_aggregator_state(self.aggregator(tuple(key.split("|"))), values)


for _name, _spec in AGGREGATORS.items():
    WEIGHTINGS.register(_name)(
        type(f"{_name.title()}Weighting", (JacobianWeighting,), {"spec": _spec, "__module__": __name__})
    )
