"""Task heads: ``Fused`` (plus head-specific inputs) -> predictions; each module registers its file name in HEADS.

The built-in names are declared here with their modules; a module (and torch) is imported on ``HEADS.get``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mtl_bench.registry import Registry

if TYPE_CHECKING:
    from torch import nn

HEADS: Registry[type[nn.Module]] = Registry("head", builtins={
    name: f"mtl_bench.heads.{name}" for name in ("caption", "classifier", "embedding", "tagger")
})
