"""Embedding head of a dual encoder (retrieval): the pooled vector projected into the shared text-item space.

The head also owns the learnable temperature of its contrastive loss (``logit_scale``): the temperature belongs to
the task, like the projection, so every sharing strategy gets one per retrieval task. ``forward`` does not use it;
the loss does (``tasks/retrieval.py``).
"""

from __future__ import annotations

from torch import Tensor, nn

from mtl_bench.core.types import Fused
from mtl_bench.heads import HEADS
from mtl_bench.heads.classifier import mlp
from mtl_bench.losses.contrastive import INIT_TEMPERATURE, LogitScale


@HEADS.register("embedding")
class EmbeddingHead(nn.Module):
    """Fused -> embedding [B, out_dim] (not normalised: the loss and the metrics compare directions, cosine)."""

    def __init__(
        self, dim: int, out_dim: int | None = None, dropout: float = 0.1, temperature: float = INIT_TEMPERATURE
    ) -> None:
        super().__init__()
        self.net = mlp(dim, out_dim or dim, dropout)
        self.logit_scale = LogitScale(temperature)

    def forward(self, f: Fused) -> Tensor:
        return self.net(f.pooled)
