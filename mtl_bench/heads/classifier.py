"""Single-label classification head: an MLP on the pooled vector, returning logits for a softmax."""

from __future__ import annotations

from torch import Tensor, nn

from mtl_bench.core.types import Fused
from mtl_bench.heads import HEADS


def mlp(dim: int, out: int, dropout: float) -> nn.Sequential:
    """LayerNorm -> Linear -> GELU -> Dropout -> Linear: the small readout every pooled-vector head uses."""
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, out))


@HEADS.register("classifier")
class ClassifierHead(nn.Module):
    """Fused -> logits [B, num_classes] (one class per sample; pair with cross-entropy)."""

    def __init__(self, dim: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = mlp(dim, num_classes, dropout)

    def forward(self, f: Fused) -> Tensor:
        return self.net(f.pooled)
