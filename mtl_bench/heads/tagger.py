"""Multi-label tagging head: an MLP on the pooled vector, one independent logit per tag."""

from __future__ import annotations

from torch import Tensor, nn

from mtl_bench.core.types import Fused
from mtl_bench.heads import HEADS
from mtl_bench.heads.classifier import mlp


@HEADS.register("tagger")
class TaggerHead(nn.Module):
    """Fused -> logits [B, num_tags] (any number of tags per sample; pair with binary cross-entropy)."""

    def __init__(self, dim: int, num_tags: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = mlp(dim, num_tags, dropout)

    def forward(self, f: Fused) -> Tensor:
        return self.net(f.pooled)
