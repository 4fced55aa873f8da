"""The interface every sharing strategy implements (see ``mtl_bench/sharing/__init__.py``)."""

from __future__ import annotations

from torch import Tensor, nn

from mtl_bench.core.types import Fused


class Sharing(nn.Module):
    """``(task, inputs) -> Fused`` plus the parameter bookkeeping that weightings and cost reports need.

    ``shared_parameters()`` and ``task_parameters(t)`` together list every parameter exactly once.
    """

    tasks: list[str]

    def forward(self, task: str, inputs: dict[str, Tensor]) -> Fused:
        raise NotImplementedError

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters that the loss of more than one task reaches (gradient-based weightings aggregate these)."""
        raise NotImplementedError

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Parameters that only ``task``'s loss reaches."""
        raise NotImplementedError

    def regularization(self) -> Tensor | None:
        """A term added to the training loss every step (soft sharing's L2 tie); None when there is none."""
        return None
