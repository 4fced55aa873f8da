"""Random Loss Weighting (RLW): Lin, Ye, Zhang and Tsang, "Reasonable Effectiveness of Random Weighting: A Litmus
Test for Multi-Task Learning", TMLR 2022.

Every step draws fresh weights

    w = softmax(lambda),   lambda ~ N(0, I_T)

so they lie on the simplex and sum to 1 over all tasks (as in the paper and LibMTL; not scaled by T, so the summed
loss is about 1/T of equal weighting's). The draw uses torch's global CPU generator, so ``seed_everything`` makes a
run reproducible and the weights do not depend on the device. All T weights are drawn every step, even when a task
has no batch, so the random stream does not depend on which tasks are present. No options.
"""

from __future__ import annotations

from torch import Tensor

from mtl_bench.weighting import WEIGHTINGS
from mtl_bench.weighting.base import Weighting
from mtl_bench.weighting.functional import random_weights


@WEIGHTINGS.register("rlw")
class RandomLossWeighting(Weighting):
    def weights(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        drawn = random_weights(len(self.tasks)).to(next(iter(losses.values())).device)
        return {t: drawn[self.tasks.index(t)] for t in sorted(losses)}
