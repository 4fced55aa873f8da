"""Fusion modules: ``dict[modality, Tokens] -> Fused``. Each module registers its file name in ``FUSIONS``.

Every fusion is built as ``cls(dim, modalities, layers=1, heads=4, dropout=0.1, **opts)`` and accepts any non-empty
subset of ``modalities`` at forward time (tasks differ in what they give), iterating them in sorted order.
The built-in names are declared here with their modules; a module (and torch) is imported on ``FUSIONS.get``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mtl_bench.registry import Registry

if TYPE_CHECKING:
    from torch import nn

FUSIONS: Registry[type[nn.Module]] = Registry("fusion", builtins={
    name: f"mtl_bench.fusion.{name.replace('-', '_')}" for name in ("cross-attention", "early", "hierarchical", "late")
})
