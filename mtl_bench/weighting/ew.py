"""Equal weighting: the plain sum of task losses, the baseline every other method must beat."""

from __future__ import annotations

from torch import Tensor

from mtl_bench.weighting import WEIGHTINGS
from mtl_bench.weighting.base import Weighting


@WEIGHTINGS.register("ew")
class EqualWeighting(Weighting):
    def weights(self, losses: dict[str, Tensor]) -> dict[str, float]:
        return dict.fromkeys(losses, 1.0)
