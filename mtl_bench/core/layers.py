"""Building blocks used by several components (encoders, fusion)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_bench.core.types import Tokens


def key_padding_mask(mask: Tensor) -> Tensor:
    """PyTorch's key padding mask (True = ignore) from a real-token mask (True = real) [B, N].

    A row with no real token (an empty title) would make attention a softmax over only -inf, i.e. NaN; such rows
    keep their first position visible instead, so the output stays finite (callers still carry the all-False mask).

    >>> key_padding_mask(torch.tensor([[True, False], [False, False]]))
    tensor([[False,  True],
            [False,  True]])
    """
    ignore = ~mask
    first = torch.zeros_like(ignore)
    first[:, 0] = True
    return ignore & ~(first & ignore.all(dim=1, keepdim=True))


class TransformerStack(nn.Module):
    """``layers`` pre-norm transformer encoder layers (GELU, 4x MLP) then a final LayerNorm, over masked tokens.

    With ``layers=0`` (which the config allows) only the final norm remains.
    """

    def __init__(self, dim: int, heads: int, layers: int, dropout: float) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False) if layers > 0 else None
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x [B, N, D]; mask [B, N] bool, True = real token (None = all real)."""
        if self.encoder is not None:
            x = self.encoder(x, src_key_padding_mask=None if mask is None else key_padding_mask(mask))
        return self.norm(x)

    def tokens(self, x: Tensor, mask: Tensor) -> Tokens:
        return Tokens(self(x, mask), mask)
