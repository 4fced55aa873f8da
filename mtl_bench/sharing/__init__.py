"""Sharing strategies: how the backbone's parameters are shared between tasks. Registered in ``SHARINGS``.

Every strategy is built as ``cls(make_backbone, tasks, **opts)`` where ``make_backbone()`` returns a fresh
``Backbone``; it maps ``(task, inputs) -> Fused`` and reports ``shared_parameters()`` (used by every task) and
``task_parameters(task)`` (used by that task only), which gradient-based weightings need.
Sharing is independent of weighting (how task losses become one update): the two are separate registries.

The built-in names are declared here with their modules (file name = name with underscores); a module, and torch
with it, is imported only when one of its strategies is fetched (``SHARINGS.get``), so a typo is answered at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mtl_bench.errors import UserError
from mtl_bench.registry import Registry

if TYPE_CHECKING:
    from torch import nn

SHARINGS: Registry[type[nn.Module]] = Registry("sharing", builtins={
    name: f"mtl_bench.sharing.{name.replace('-', '_')}"
    for name in ("adapters", "cross-stitch", "hard", "mmoe", "single-task", "soft")
})


def check_task(task: str, tasks: list[str]) -> None:
    """An actionable error when a strategy is asked for a task it was not built with."""
    if task not in tasks:
        raise UserError(f"unknown task {task!r} for this sharing strategy; it was built for {tasks}")
