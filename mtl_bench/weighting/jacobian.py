"""Gradient-based weightings: TorchJD's aggregators and our float64 ones (``exact.py``), one table row per method.

Each step the shared parameters' Jacobian J (one row per task: that task's gradient) is reduced to one update
``J^T w``, while the task-specific parameters get the plain gradient of ``sum_t L_t`` (or, with the option
``weight_specific=true``, of ``sum_t w_t L_t``), and the sharing's ``extra`` term is added to every gradient.

The methods below whose weights depend on J only through its Gramian ``G = J J^T`` (all but graddrop and gradvac,
which stay TorchJD's own, in the Jacobian's dtype) build G in float64 from the rows, solve the T x T problem in
float64 (exactly where ``exact.py`` says so) and combine the rows in float64, casting the update back to the
parameters' dtype: TorchJD's float32 versions lose IMTL-G's and ConFIG's equal projections once two gradient norms
differ ~3,000x, stop MGDA 6-25% from the min-norm point, make UPGrad's update up to 40x too long on conflicting
rows of different norms, and Nash-MTL's and FairGrad's solvers miss their solution by up to 41x and 2,900x the
update's norm on ill-conditioned gradients (``exact.py`` has the figures).

Registered names, papers, options (default), and our convention against the authors' code ("ref"). Checked in the
authors' repositories: CAGrad (Cranial-XIX/CAGrad, nyuv2/ and cityscapes/), Aligned-MTL (SamsungLabs/MTL,
code/optim/aligned), MGDA (isl-org/MultiObjectiveOptimization), ConFIG (via TorchJD's adaptation of tum-pbs/ConFIG),
UPGrad and DualProj (TorchJD is the authors' code), Nash-MTL (AvivNavon/nash-mtl, methods/weight_methods.py),
FairGrad (OptMN-Lab/fairgrad, methods/weight_methods.py); PCGrad against LibMTL and CAGrad's re-implementation.

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
- ``nashmtl``: Nash-MTL, Navon et al., ICML 2022: the Nash bargaining solution ``alpha_i (G alpha)_i = 1``, solved
  exactly in float64 (``exact.alpha_fair_weights``; unique, so this is the paper's update). ``max_norm`` (1.0: the
  shared update clipped to norm 1, as the authors' ``clip_grad_norm_``; 0: none; the heads' weights are not
  clipped), ``update_weights_every`` (1: solve every step; k: solve at steps 1, k+1, ... and apply the last solved
  alpha to the Jacobians in between, clipped by their own update norm, as the authors' code), ``optim_niter`` (20:
  the authors' CCP iterations, used by ``solver="torchjd"`` only), ``solver`` ("exact"; "torchjd": TorchJD's
  adaptation of the authors' CCP, up to ``optim_niter`` cvxpy/ECOS subproblems warm-started from the last alpha,
  which reproduces runs made before the exact solver and the authors' solver, failures included: on row norms 1e4
  apart it is off by 0.8-41 times the update's norm, at gradient scale 1e-3 up to 2.5x, and when a task opposes the
  plain sum it can return the plain sum; needs cvxpy and ecos). Ref: the CCP solver, the heads trained on
  ``sum_t alpha_t L_t`` (ours: plain sum; ``weight_specific=true`` gives theirs, with unclipped alpha as theirs).
  No solution exists for a zero gradient row or Pareto-stationary rows: weight 0 there (``exact.py``).
- ``alignedmtl``: Aligned-MTL, Senushkin et al., CVPR 2023. ``scale_mode`` ("min": smallest eigenvalue),
  ``reduction`` ("sum": the aligned rows summed, each task's preference 1, as the authors' code and LibMTL;
  "mean": 1/T, TorchJD's). Eigenvalues below ``T * eps_float32 * lambda_max`` are dropped, as the authors' code
  does. Ref: the same; their ``scale_decoder_grad`` (off by default) is not offered.
- ``upgrad``: UPGrad, Quinton and Rey, 2024: the mean of the rows each projected onto the dual cone of all rows.
  ``reg_eps`` (0: the exact projection; TorchJD, the authors' code, adds ``1e-4 * trace(G)`` to G first, which
  ``reg_eps=1e-4`` reproduces; the paper defines the exact projection, hence our default).
- ``graddrop``: GradDrop, Chen et al., NeurIPS 2020. No options.
- ``gradvac``: GradVac, Wang et al., ICLR 2021. ``beta`` (0.5), ``eps`` (1e-8).
- ``fairgrad``: FairGrad, Ban and Ji, ICML 2024: the update ``J^T w`` with ``(G w)_i = w_i^(-1/alpha)``, solved
  exactly in float64 (``exact.alpha_fair_weights``). ``alpha`` (1.0, >= 0; 0: the uniform weights 1/T, TorchJD's
  alpha -> 0 limit), ``max_iters`` (None: at most 100 Newton steps; with ``solver="torchjd"``, scipy's
  ``max_nfev``, None being scipy's 100 T), ``solver`` ("exact"; "torchjd": TorchJD's ``least_squares`` from
  ``w = 1/T``, the authors' and LibMTL's solver, which reproduces runs made before the exact solver, early stops
  included: up to 2,900x off on row norms 1e4 apart), ``max_norm`` (0: no clipping), ``scale_by_tasks`` (false).
  Ref: the authors' code multiplies the update by T ("to match the sum loss") and clips the shared gradient to norm
  1 (``scale_by_tasks=true, max_norm=1.0`` reproduce it; exact solver only), its heads get the plain sum (each
  loss back-propagated unweighted) as ours; LibMTL: ``J^T w``, no clipping, plain sum for the heads, as ours.
  Solves for alpha in [0.01, 10] converged in at most 30 steps in our sweeps; above ~20 with norms 1e6 apart a
  solve can reach ``max_iters`` (it then warns).
- ``dualproj``: DualProj, Quinton and Rey, 2024: the mean row projected onto the dual cone. ``reg_eps`` as upgrad.
- ``config``: ConFIG, Liu et al., ICLR 2025: the unit vector with equal cosines to every row, times the sum of the
  rows' projections on it (preference vector of ones, as the authors' default). No options besides
  ``weight_specific``.

``weight_specific`` (false for every method, graddrop has none): whether the task-specific parameters are trained on
the weighted sum ``sum_t w_t L_t`` with the weights of the shared update (before any ``max_norm`` clip), as the MGDA
and Nash-MTL authors' code does, instead of the plain sum. Our default keeps one convention for every method
(LibMTL's, and CAGrad's, PCGrad's and Aligned-MTL's authors'): methods then differ only on the shared parameters,
and a head's gradient does not shrink with weights that sum to 1 (MGDA, IMTL-G) or swell with Nash-MTL's
``1 / ||g_t||``.

CAGrad, and Nash-MTL with ``solver="torchjd"``, need cvxpy and a solver (Nash-MTL's default exact solver needs numpy
only): ``pip install "torchjd[cagrad,nash-mtl]>=0.18,<0.19"``; UPGrad and DualProj with ``reg_eps > 0`` need
quadprog: ``pip install "torchjd[quadprog-projector]>=0.18,<0.19"``. These commands work however mtl-bench was
installed (from a checkout, ``pip install "mtl-bench[...]"`` would fetch another copy from the index, or nothing).

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
communication per step instead of one. ``dbmtl`` does the same. Stateful aggregators (GradVac's EMA, Nash-MTL's step
count and last weights, and its warm start with ``solver="torchjd"``) are saved in checkpoints through
``get_extra_state`` (``state.py``), so a resumed run continues them; a step where only some tasks have a batch uses
a separate aggregator for that task set, and a step with a single task uses its plain gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor
from torchjd.autojac import jac_to_grad

from mtl_bench.core.distributed import all_reduce_mean_
from mtl_bench.errors import UserError
from mtl_bench.weighting import WEIGHTINGS, exact
from mtl_bench.weighting.aggregators import AGGREGATORS, Aggregator, AggregatorSpec, GramianRule
from mtl_bench.weighting.base import Weighting
from mtl_bench.weighting.functional import accumulate_grads, task_gradient
from mtl_bench.weighting.state import aggregator_state, load_aggregator_state

__all__ = ["AGGREGATORS", "AggregatorSpec", "JacobianWeighting"]


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
        """Add the update into the shared ``.grad``; returns the task weights (ones for GradDrop, which has none;
        before ``max_norm`` clipping for the float64 rules)."""
        if isinstance(aggregator, GramianRule):  # float64 Gramian, weights and combination; update in param dtype
            gramian = exact.gramian(blocks).cpu()
            weights = aggregator(gramian)
            w = aggregator.update_weights(gramian, weights).to(blocks[0].device)
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
            aggregator = self.aggregator(tuple(key.split("|")))
            modules = dict(aggregator.named_modules())
            unknown = sorted(  # module paths or attributes this aggregator does not have
                f"{path}.{attr}".lstrip(".") if path in modules else path
                for path, attrs in values.items()
                for attr in attrs
                if path not in modules or not (attr in vars(modules[path]) or attr in modules[path]._buffers)
            )
            if unknown:  # e.g. a Nash-MTL checkpoint written by TorchJD's solver, loaded into the exact one
                solver = self.options.get("solver")
                other = {"exact": "torchjd", "torchjd": "exact"}.get(solver, "another")
                found = ", ".join(name or "<root>" for name in sorted(set(unknown)))
                raise UserError(
                    f"weighting {self.name!r}: the checkpoint's state for tasks {key} ({found}) comes from another "
                    f"solver than this run's solver={solver!r}; set weighting.options.solver={other!r} to continue it "
                    "(checkpoints from before the exact Nash-MTL solver need 'torchjd')"
                )
            load_aggregator_state(aggregator, values)


for _name, _spec in AGGREGATORS.items():
    WEIGHTINGS.register(_name)(
        type(f"{_name.title()}Weighting", (JacobianWeighting,), {"spec": _spec, "__module__": __name__})
    )
