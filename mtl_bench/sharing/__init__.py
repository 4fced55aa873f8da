"""Sharing strategies: how the backbone's parameters are shared between tasks. Registered in ``SHARINGS``.

Every strategy is built as ``cls(make_backbone, tasks, **opts)`` where ``make_backbone()`` returns a fresh
``Backbone``; it maps ``(task, inputs) -> Fused`` and reports ``shared_parameters()`` (used by every task) and
``task_parameters(task)`` (used by that task only), which gradient-based weightings need.
Sharing is independent of weighting (how task losses become one update): the two are separate registries.
"""

from __future__ import annotations

from torch import nn

from mtl_bench.errors import UserError
from mtl_bench.registry import Registry

SHARINGS: Registry[type[nn.Module]] = Registry("sharing")


def check_task(task: str, tasks: list[str]) -> None:
    """An actionable error when a strategy is asked for a task it was not built with."""
    if task not in tasks:
        raise UserError(f"unknown task {task!r} for this sharing strategy; it was built for {tasks}")


from mtl_bench.sharing import adapters, cross_stitch, hard, mmoe, single_task, soft  # noqa: E402,F401  (import registers the names)
