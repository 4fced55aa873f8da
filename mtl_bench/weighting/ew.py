"""Equal weighting: the plain sum of task losses, the baseline every other method must beat.

Every weight is 1, so the objective is ``sum_t L_t``: LibMTL's ``EW`` and Nash-MTL's and FAMO's linear
scalarisation (``ls``) do the same. Some papers average instead (weights 1/T); with Adam(W) the two differ only
through Adam's epsilon and gradient clipping. No options.
"""

from __future__ import annotations

from torch import Tensor

from mtl_bench.weighting import WEIGHTINGS
from mtl_bench.weighting.base import Weighting


@WEIGHTINGS.register("ew")
class EqualWeighting(Weighting):
    def weights(self, losses: dict[str, Tensor]) -> dict[str, float]:
        return dict.fromkeys(losses, 1.0)
