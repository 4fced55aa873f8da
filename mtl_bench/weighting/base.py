"""The interface shared by every loss-weighting strategy."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from mtl_bench.errors import UserError


class Weighting(nn.Module):
    """Turns a dict of per-task losses (iterated in sorted task order) into gradients of the model's parameters.

    - Loss-based strategies (``kind = "loss"``) implement ``weights`` (or ``forward``): one backward pass of the
      weighted sum. Learnable weights are parameters of this module; the system's optimiser updates them.
    - Gradient-based strategies (``kind = "gradient"``) override ``backward``: they need each task's gradient of
      the shared parameters, which ``bind`` hands them, and fill ``.grad`` themselves.

    The system calls ``bind`` once before training, then per step ``backward(losses, extra)`` where ``extra`` is a
    task-independent term (the sharing strategy's regularisation) that must be added to every parameter's gradient.
    ``losses`` may hold a subset of the tasks (a task without a batch this step); every strategy copes with that.

    Options come from the config's ``weighting.options`` as keyword arguments; a subclass declares the ones it takes
    as keyword-only ``__init__`` arguments and passes the rest here, where any left over is a ``UserError``.
    """

    kind = "loss"
    needs_losses_after_step = False  # True: the system calls ``after_step`` with the same batches' losses re-computed

    def __init__(self, tasks: list[str], **opts: object) -> None:
        super().__init__()
        if opts:
            raise UserError(
                f"weighting {self.name!r} got unknown options {sorted(opts)}; it takes {self.option_names() or 'none'}"
            )
        self.tasks = sorted(tasks)
        self.shared: list[nn.Parameter] = []  # plain lists: these parameters belong to the model, not to us
        self.specific: list[nn.Parameter] = []
        self.last_shared: list[nn.Parameter] = []

    def bind(self, shared: list[nn.Parameter], specific: list[nn.Parameter], last_shared: list[nn.Parameter]) -> None:
        """The model's trainable parameters: shared by several tasks, specific to one task (heads included), and
        those of the last shared layer (GradNorm's W)."""
        if self.kind == "gradient" and not shared:
            raise UserError(
                f"weighting {self.name!r} works on the gradients of shared parameters, but this sharing strategy "
                "shares none (single-task, soft); use a loss-based weighting such as 'ew'"
            )
        self.shared, self.specific, self.last_shared = list(shared), list(specific), list(last_shared)

    @property
    def name(self) -> str:
        return getattr(type(self), "registry_name", type(self).__name__)

    @classmethod
    def option_names(cls) -> list[str]:
        """The options this weighting takes (its keyword-only ``__init__`` arguments)."""
        params = inspect.signature(cls.__init__).parameters.values()
        return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]

    def task_index(self, names: Iterable[str], device: torch.device | None = None) -> Tensor:
        """Positions of ``names`` in ``self.tasks`` (for indexing per-task parameters and buffers)."""
        return torch.tensor([self.tasks.index(n) for n in names], dtype=torch.long, device=device)

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        weights = self.weights(losses)
        return sum(weights[t] * losses[t] for t in sorted(losses))

    def weights(self, losses: dict[str, Tensor]) -> dict[str, Tensor | float]:
        raise NotImplementedError

    def backward(
        self,
        losses: dict[str, Tensor],
        extra: Tensor | None = None,
        backward: Callable[[Tensor], None] = Tensor.backward,
    ) -> None:
        """Fill ``.grad`` of every trainable parameter; ``backward`` is the trainer's (precision-aware) backward."""
        total = self(losses)
        backward(total if extra is None else total + extra)

    def backward_passes(self, num_tasks: int) -> int:
        """Backward passes through the shared parameters per step (the cost column of results.json)."""
        return 1

    def on_epoch_end(self, epoch_losses: dict[str, float]) -> None:
        """Called once per training epoch with each task's mean loss (for history-based methods)."""

    def after_step(self, losses: dict[str, Tensor]) -> None:
        """Called after the optimiser step, when ``needs_losses_after_step``, with each task's loss on the batch of
        the step just taken, re-computed without a graph by the updated model (FAMO's reference update)."""
