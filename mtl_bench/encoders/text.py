"""Title encoder: token + learned position embeddings through a small transformer."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from mtl_bench.core.layers import TransformerStack
from mtl_bench.core.types import TEXT, Tokens
from mtl_bench.encoders import ENCODERS
from mtl_bench.errors import UserError

if TYPE_CHECKING:
    from mtl_bench.encoders.settings import EncoderSettings


@ENCODERS.register(TEXT)
class TextEncoder(nn.Module):
    """Token ids [B, L] -> Tokens [B, L, D]; ``mask`` is ``ids != pad_id``.

    An all-padding row (an empty title) yields finite features and an all-False mask, never NaN.
    """

    modality: ClassVar[str] = TEXT  # the input key this encoder reads

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        layers: int = 1,
        heads: int = 4,
        max_len: int = 32,
        dropout: float = 0.1,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        self.dim, self.max_len, self.pad_id = dim, max_len, pad_id
        self.token = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        nn.init.normal_(self.token.weight, std=0.02)
        with torch.no_grad():
            self.token.weight[pad_id].zero_()
        self.position = nn.Parameter(torch.randn(1, max_len, dim) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.stack = TransformerStack(dim, heads, layers, dropout)

    @classmethod
    def from_config(cls, settings: EncoderSettings, frame_encoder: nn.Module | None = None) -> TextEncoder:
        """The run's scratch title encoder over our word ids (``frame_encoder``: unused)."""
        return cls(
            settings.vocab_size, settings.dim, layers=settings.text_layers, heads=settings.heads,
            max_len=settings.max_text_len, dropout=settings.dropout, pad_id=settings.pad_id,
        )  # fmt: skip

    def forward(self, ids: Tensor) -> Tokens:
        length = ids.shape[1]
        if length > self.max_len:
            raise UserError(
                f"text has {length} tokens but the text encoder was built with max_len={self.max_len}; "
                "raise data.max_text_len or truncate when tokenising"
            )
        mask = ids != self.pad_id
        x = self.dropout(self.token(ids) + self.position[:, :length])
        return Tokens(self.stack(x, mask), mask)
