"""Random Loss Weighting (RLW): Lin, Ye, Zhang and Tsang, "Reasonable Effectiveness of Random Weighting: A Litmus
Test for Multi-Task Learning", TMLR 2022.

Every step draws fresh weights

    w = softmax(lambda),   lambda ~ N(0, I_T)

so they lie on the simplex and sum to 1 over all tasks: the paper's default distribution (it also studies uniform,
Dirichlet and Bernoulli draws) and exactly LibMTL's and Nash-MTL's code (``softmax(torch.randn(T))``). They are not
scaled by T, so the summed loss is about 1/T of equal weighting's; with Adam(W) that changes little, with gradient
clipping or SGD it acts like a smaller learning rate, as it does in the reference. The draw uses torch's global CPU
generator (as the reference does), so ``seed_everything`` makes a run reproducible and the weights do not depend on
the device. All T weights are drawn every step, even when a task has no batch, so the random stream does not
depend on which tasks are present (the present tasks' weights then sum to less than 1). No options.
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
