"""Cross-attention fusion: each modality's tokens attend to the tokens of the other present modalities.

There is no joint sequence as in early fusion: every modality keeps its own token stream and, in each layer, reads
from the streams of the others (co-attention, as in ViLBERT), in both directions for every pair. A modality never
attends to itself here, so with a single modality present there is nothing to attend to and its tokens only go
through the feed-forward part of each layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_bench.core.options import reject_options
from mtl_bench.core.types import Fused, Tokens
from mtl_bench.errors import UserError
from mtl_bench.fusion import FUSIONS
from mtl_bench.fusion.functional import concat_tokens, cross_attend, masked_mean, present_modalities
from mtl_bench.fusion.late import LateFusion


class CrossAttention(nn.Module):
    """Multi-head attention of queries from one sequence over keys/values of another; the maths is ``cross_attend``.

    Same projections and result as ``nn.MultiheadAttention`` (without attention dropout), except that a query whose
    keys are all padding gets a zero vector before the output projection instead of NaN.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise UserError(f"fusion 'cross-attention' needs dim divisible by heads, got dim={dim}, heads={heads}")
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: Tensor, context: Tokens) -> Tensor:
        """x [B, Nq, D] queries; context [B, Nk, D] keys/values with its mask -> [B, Nq, D]."""
        batch, length, dim = x.shape

        def split(t: Tensor) -> Tensor:  # [B, N, D] -> [B, H, N, D/H]
            return t.view(batch, -1, self.heads, dim // self.heads).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(context.x)), split(self.v(context.x))
        mixed = cross_attend(q, k, v, context.mask[:, None])  # the mask broadcasts over heads
        return self.out(mixed.transpose(1, 2).reshape(batch, length, dim))


class CrossBlock(nn.Module):
    """One modality's pre-norm layer: ``x + attend(norm(x), norm(others))`` then ``x + ff(norm(x))``.

    A row whose context has no real token at all (e.g. text is the only other modality and the title is empty)
    skips the attention residual, so it is neither NaN nor the output projection's bias.
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_ff = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attend = CrossAttention(dim, heads)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, context: Tokens | None) -> Tensor:
        """x [B, N, D]; ``context`` = the other modalities' tokens, or None when there are none (feed-forward only)."""
        if context is not None:
            attended = self.attend(self.norm_q(x), Tokens(self.norm_kv(context.x), context.mask))
            x = x + self.dropout(attended) * context.mask.any(dim=1)[:, None, None].to(x.dtype)
        return x + self.dropout(self.ff(self.norm_ff(x)))


@FUSIONS.register("cross-attention")
class CrossAttentionFusion(nn.Module):
    """``layers`` rounds of cross attention: per layer, each present modality (plus a learned modality embedding)
    attends to the concatenated tokens of all other present ones, all updated at once from the previous layer.

    Each modality has its own blocks (its own query/key/value projections), like a ViLBERT stream.
    ``pooled``: per-modality masked means of the fused tokens, concatenated over ALL built modalities with zeros for
    missing ones, then projected (late fusion's ``concat`` combiner, reused), so the head knows what was missing.
    ``tokens``/``mask``: the fused tokens of the present modalities concatenated, as memory for a caption decoder.
    """

    def __init__(
        self, dim: int, modalities: list[str], layers: int = 1, heads: int = 4, dropout: float = 0.1, **opts: object
    ) -> None:
        super().__init__()
        reject_options("fusion 'cross-attention'", opts)
        if layers < 1:
            raise UserError(f"fusion 'cross-attention' needs layers >= 1 (each layer is one round), got {layers}")
        self.modalities = sorted(modalities)
        self.modality_embed = nn.ParameterDict({m: nn.Parameter(torch.randn(dim) * 0.02) for m in self.modalities})
        self.blocks = nn.ModuleList(
            nn.ModuleDict({m: CrossBlock(dim, heads, dropout) for m in self.modalities}) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.combiner = LateFusion(dim, self.modalities, dropout=dropout, combine="concat")

    def forward(self, inputs: dict[str, Tokens]) -> Fused:
        names = present_modalities(inputs, self.modalities, "cross-attention")
        masks = {m: inputs[m].mask for m in names}
        x = {m: inputs[m].x + self.modality_embed[m] for m in names}
        for layer in self.blocks:
            x = {m: layer[m](x[m], self.others(x, masks, m)) for m in names}
        out = {m: Tokens(self.norm(x[m]), masks[m]) for m in names}
        pooled = self.combiner.pool({m: masked_mean(out[m].x, out[m].mask) for m in names})
        memory = concat_tokens([out[m] for m in names])
        return Fused(pooled=pooled, tokens=memory.x, mask=memory.mask)

    @staticmethod
    def others(x: dict[str, Tensor], masks: dict[str, Tensor], query: str) -> Tokens | None:
        """The tokens of every present modality but ``query``, concatenated in sorted order (None if there are none)."""
        names = [m for m in sorted(x) if m != query]
        return concat_tokens([Tokens(x[m], masks[m]) for m in names]) if names else None
