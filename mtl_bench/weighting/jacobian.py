"""Gradient-based weightings backed by TorchJD's aggregators: one class, one table row per method.

Each step the shared parameters' Jacobian (one row per task: that task's gradient) is reduced to one update by an
aggregator (Quinton and Rey, "Jacobian Descent for Multi-Objective Optimization", 2024, and TorchJD), while the
task-specific parameters get the plain gradient of ``sum_t L_t``, and the sharing's ``extra`` term is added to every
gradient. Registered names, their papers and options (defaults from the paper or LibMTL, via TorchJD's own):

- ``pcgrad``: PCGrad, Yu et al., NeurIPS 2020. No options.
- ``mgda``: MGDA-UB, Sener and Koltun, NeurIPS 2018: the min-norm point of the convex hull of the rows, so the
  weights sum to 1 (a convex combination, not scaled by T). ``epsilon`` (1e-3), ``max_iters`` (100) of Frank-Wolfe.
- ``cagrad``: CAGrad, Liu et al., NeurIPS 2021. ``c`` (0.4, the official default; LibMTL uses 0.5), ``norm_eps``.
- ``imtlg``: IMTL-G, Liu et al., ICLR 2021. No options.
- ``nashmtl``: Nash-MTL, Navon et al., ICML 2022. ``max_norm`` (1.0), ``update_weights_every`` (1),
  ``optim_niter`` (20); the number of tasks is set from the run's tasks.
- ``alignedmtl``: Aligned-MTL, Senushkin et al., CVPR 2023. ``scale_mode`` ("min": smallest eigenvalue).
- ``upgrad``: UPGrad, Quinton and Rey, 2024. No options.
- ``graddrop``: GradDrop, Chen et al., NeurIPS 2020. No options.
- ``gradvac``: GradVac, Wang et al., ICLR 2021. ``beta`` (0.5), ``eps`` (1e-8).
- ``fairgrad``: FairGrad, Ban and Ji, ICML 2024. ``alpha`` (1.0), ``max_iters`` (None: scipy's default).
- ``dualproj``: DualProj, Quinton and Rey, 2024. No options.
- ``config``: ConFIG, Liu et al., ICLR 2025. No options.

CAGrad and Nash-MTL need cvxpy and a solver, from the optional extra ``pip install "mtl-bench[solvers]"``.

How the Jacobian is computed. In mtl-bench every task has its own batch, so the T losses come from T separate
graphs that meet only at the shared parameters. ``torchjd.autojac.backward(losses, inputs=shared)`` would
back-propagate all T rows through every task's graph at once (vmap over the rows), i.e. T times the work and memory
of one backward: measured 10x slower than the alternative at T = 8 on CPU. Instead we take one ``autograd.grad``
per task, which runs through that task's graph only, store the rows in each shared parameter's ``.jac`` and let
``torchjd.autojac.jac_to_grad`` aggregate them and add the result into ``.grad`` (it accumulates, as autograd does).
For the same reason LibMTL's "representation gradient" option (aggregating the Jacobian of a common
representation instead of the parameters) does not apply: there is no representation common to all tasks' inputs.

Under DDP: ``jac_to_grad`` writes ``.grad`` directly, outside autograd, so DDP's all-reduce hooks would never see
the aggregated gradient and each process would step with its own aggregate. So each task's gradient row is averaged
over the processes (``sync.all_reduce_mean_``, one collective for all rows) *before* aggregation: every process
aggregates the Jacobian of the global batch, gets the same update, and the result equals a one-process run on the
whole batch (the per-process batches are parts of the global one, ``data/batches.py``). The cost is T gradients'
worth of communication per step instead of one. ``dbmtl`` does the same. Stateful aggregators (GradVac's EMA,
Nash-MTL's warm start) are saved in checkpoints through ``get_extra_state`` (``state.py``), so a resumed run continues
them; a step where only some tasks have a batch uses a separate aggregator for that task set, and a step with a
single task uses its plain gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor
from torchjd.aggregation import (
    IMTLG,
    MGDA,
    Aggregator,
    AlignedMTL,
    CAGrad,
    ConFIG,
    DualProj,
    FairGrad,
    GradDrop,
    GradVac,
    NashMTL,
    PCGrad,
    UPGrad,
)
from torchjd.autojac import jac_to_grad

from mtl_bench.errors import UserError
from mtl_bench.weighting import WEIGHTINGS
from mtl_bench.weighting.base import Weighting
from mtl_bench.weighting.functional import accumulate_grads, task_gradient
from mtl_bench.weighting.state import aggregator_state, load_aggregator_state
from mtl_bench.weighting.sync import all_reduce_mean_

BASE_INSTALL = 'pip install "mtl-bench"'  # quadprog and scipy are ordinary dependencies: this re-resolves them
SOLVERS_INSTALL = 'pip install "mtl-bench[solvers]"'


@dataclass(frozen=True)
class AggregatorSpec:
    """How to build one method's aggregator: ``build(num_tasks, **options)`` and the options it takes."""

    build: Callable[..., Aggregator]
    defaults: dict[str, Any] = field(default_factory=dict)
    install: str = BASE_INSTALL


def _plain(cls: type[Aggregator]) -> Callable[..., Aggregator]:
    return lambda num_tasks, **options: cls(**options)


def _aligned_mtl(num_tasks: int, scale_mode: str) -> Aggregator:
    if scale_mode not in ("min", "median", "rmse"):  # TorchJD would only complain at the first step
        raise ValueError(f"scale_mode must be 'min', 'median' or 'rmse', got {scale_mode!r}")
    return AlignedMTL(scale_mode=scale_mode)


AGGREGATORS: dict[str, AggregatorSpec] = {
    "pcgrad": AggregatorSpec(_plain(PCGrad)),
    "mgda": AggregatorSpec(_plain(MGDA), {"epsilon": 1e-3, "max_iters": 100}),
    "cagrad": AggregatorSpec(_plain(CAGrad), {"c": 0.4, "norm_eps": 1e-4}, SOLVERS_INSTALL),
    "imtlg": AggregatorSpec(_plain(IMTLG)),
    "nashmtl": AggregatorSpec(
        lambda num_tasks, **options: NashMTL(n_tasks=num_tasks, **options),
        {"max_norm": 1.0, "update_weights_every": 1, "optim_niter": 20},
        SOLVERS_INSTALL,
    ),
    "alignedmtl": AggregatorSpec(_aligned_mtl, {"scale_mode": "min"}),
    "upgrad": AggregatorSpec(_plain(UPGrad)),
    "graddrop": AggregatorSpec(_plain(GradDrop)),
    "gradvac": AggregatorSpec(_plain(GradVac), {"beta": 0.5, "eps": 1e-8}),
    "fairgrad": AggregatorSpec(_plain(FairGrad), {"alpha": 1.0, "max_iters": None}),
    "dualproj": AggregatorSpec(_plain(DualProj)),
    "config": AggregatorSpec(_plain(ConFIG)),
}


class JacobianWeighting(Weighting):
    """Aggregates the per-task gradients of the shared parameters with ``spec``'s TorchJD aggregator."""

    kind = "gradient"
    spec: ClassVar[AggregatorSpec]

    def __init__(self, tasks: list[str], **opts: Any) -> None:
        super().__init__(tasks)
        unknown = sorted(set(opts) - set(self.spec.defaults))
        if unknown:
            raise UserError(
                f"weighting {self.name!r} got unknown options {unknown}; it takes {self.option_names() or 'none'}"
            )
        self.options = {**self.spec.defaults, **opts}
        self._aggregators: dict[tuple[str, ...], Aggregator] = {}  # per task set; not submodules (see above)
        self.aggregator(tuple(self.tasks))  # fail now, not at the first step, on a missing solver or a bad value

    @classmethod
    def option_names(cls) -> list[str]:
        return sorted(cls.spec.defaults)

    def aggregator(self, names: tuple[str, ...]) -> Aggregator:
        """The aggregator for the tasks ``names`` (built on first use: some keep per-task state)."""
        if names not in self._aggregators:
            try:
                self._aggregators[names] = self.spec.build(len(names), **self.options)
            except ImportError as err:
                raise UserError(
                    f"weighting {self.name!r} needs packages that are missing ({err}); "
                    f"install them with: {self.spec.install}"
                ) from err
            except (TypeError, ValueError) as err:
                raise UserError(f"weighting {self.name!r}: bad options {self.options}: {err}") from err
        return self._aggregators[names]

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        """The plain sum (what the task-specific parameters are trained on)."""
        return sum(losses[t] for t in sorted(losses))

    def backward(
        self,
        losses: dict[str, Tensor],
        extra: Tensor | None = None,
        backward: Callable[[Tensor], None] = Tensor.backward,
    ) -> None:
        names = sorted(losses)
        if self.specific:
            torch.autograd.backward(self(losses), inputs=self.specific, retain_graph=True)
        rows = [task_gradient(losses[t], self.shared, retain_graph=i < len(names) - 1) for i, t in enumerate(names)]
        all_reduce_mean_([g for row in rows for g in row])  # DDP: every process aggregates the global Jacobian
        if len(rows) == 1:  # nothing to reconcile (and Nash-MTL cannot solve for one task)
            accumulate_grads(self.shared, rows[0])
        else:
            for j, param in enumerate(self.shared):
                param.jac = torch.stack([row[j] for row in rows])  # the field torchjd.autojac.backward would fill
            del rows
            jac_to_grad(self.shared, self.aggregator(tuple(names)))
        if extra is not None:
            backward(extra)

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
