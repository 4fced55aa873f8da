"""Fixed weights (linear scalarisation): the objective is ``sum_t w_t * L_t`` with one constant weight per task.

The tuned-scalarisation baseline. Xin et al., "Do Current Multi-Task Optimization Methods in Deep Learning Even
Help?" (NeurIPS 2022) and Kurin et al., "In Defense of the Unitary Scalarization for Deep Multi-Task Learning"
(NeurIPS 2022) found that most multi-task optimisers do not beat a weighted sum whose weights are tuned with the
same budget; ``sweeps/scalarization.yaml`` tunes them with the trials ``sweeps/weighting.yaml`` gives each method.

Option ``weights`` maps task name -> weight, e.g. ``--set weighting.options.weights.product-search=2``:

- A task missing from the map gets 1, so one ``--set`` changes one task, and with no map ``fixed`` is ``ew`` bit
  for bit (every weight the float 1.0).
- A name that is not a task of the run fails: a misspelt name would otherwise leave its task at 1 unnoticed.
- Weights must be finite and > 0. A negative weight ascends its task's loss; a zero weight leaves the task's head
  untrained while the run still reports (and Δp averages) its scores; to drop a task, use a suite without it.

The sum is not normalised by ``sum_t w_t``: with Adam(W) scaling every weight by the same factor changes the updates
only through gradient clipping (``train.grad_clip``, on by default) and Adam's epsilon, so the weights' ratios matter
most (hence the sweep's log scale). The weights are config, not state: a resumed run gets them from its config.
No other options.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from torch import Tensor

from mtl_bench.errors import UserError
from mtl_bench.registry import did_you_mean
from mtl_bench.weighting import WEIGHTINGS
from mtl_bench.weighting.base import Weighting

FIELD = "weighting.options.weights"  # the config key the errors name


@WEIGHTINGS.register("fixed")
class FixedWeighting(Weighting):
    def __init__(self, tasks: list[str], *, weights: Mapping[str, float] | None = None, **opts: object) -> None:
        super().__init__(tasks, **opts)
        self.task_weights = dict.fromkeys(self.tasks, 1.0) | check_weights(weights or {}, self.tasks)

    def weights(self, losses: dict[str, Tensor]) -> dict[str, float]:
        return {t: self.task_weights[t] for t in losses}


def check_weights(weights: object, tasks: list[str]) -> dict[str, float]:
    """The given weights as floats, or a one-line UserError naming the field, the value and what was expected."""
    if not isinstance(weights, Mapping):
        raise UserError(f"weighting 'fixed': {FIELD} = {weights!r}: expected a mapping of task name to weight, "
                        f"e.g. --set {FIELD}.{tasks[0]}=2.0")
    checked: dict[str, float] = {}
    for task, value in weights.items():
        field = f"{FIELD}.{task}"
        if task not in tasks:
            raise UserError(f"weighting 'fixed': {field} = {value!r}: not a task of this run; "
                            f"{did_you_mean(str(task), tasks)}")
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and value > 0):
            hint = " (YAML reads 1e-3 as text: write 1.0e-3)" if isinstance(value, str) else ""
            raise UserError(f"weighting 'fixed': {field} = {value!r}: expected a finite number > 0{hint}")
        checked[task] = float(value)
    return checked
