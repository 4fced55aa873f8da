"""Task heads: ``Fused`` (plus head-specific inputs) -> predictions; each module registers its file name in HEADS."""

from __future__ import annotations

from torch import nn

from mtl_bench.registry import Registry

HEADS: Registry[type[nn.Module]] = Registry("head")

from mtl_bench.heads import caption, classifier, embedding, tagger  # noqa: E402,F401  (import registers the names)
