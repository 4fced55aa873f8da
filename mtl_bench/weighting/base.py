"""The weighting interface shared by every loss-weighting strategy."""

from __future__ import annotations

from torch import Tensor, nn


class Weighting(nn.Module):
    """Combines a dict of per-task losses (iterated in sorted task order) into the loss to backpropagate.

    Strategies with learnable weights hold them as parameters of this module (the optimiser sees them);
    strategies with a loss history update it in ``on_epoch_end``.
    """

    def __init__(self, tasks: list[str]) -> None:
        super().__init__()
        self.tasks = sorted(tasks)

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        weights = self.weights(losses)
        return sum(weights[t] * losses[t] for t in sorted(losses))

    def weights(self, losses: dict[str, Tensor]) -> dict[str, Tensor | float]:
        raise NotImplementedError

    def on_epoch_end(self, epoch_losses: dict[str, float]) -> None:
        """Called once per training epoch with each task's mean loss (for history-based methods)."""
