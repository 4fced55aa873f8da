"""Fusion modules: ``dict[modality, Tokens] -> Fused``. Each module registers its file name in ``FUSIONS``.

Every fusion is built as ``cls(dim, modalities, layers=1, heads=4, dropout=0.1, **opts)`` and accepts any non-empty
subset of ``modalities`` at forward time (tasks differ in what they give), iterating them in sorted order.
"""

from __future__ import annotations

from torch import nn

from mtl_bench.registry import Registry

FUSIONS: Registry[type[nn.Module]] = Registry("fusion")

from mtl_bench.fusion import cross_attention, early, hierarchical, late  # noqa: E402,F401  (import registers the names)
