"""Early fusion: one transformer over the tokens of every present modality, read out through a [CLS] token.

Tokens of different modalities attend to each other from the first fusion layer, so the model can combine
evidence that only makes sense jointly (a silhouette in the photo plus a material in the title).
"""

from __future__ import annotations

import torch
from torch import nn

from mtl_bench.core.layers import TransformerStack
from mtl_bench.core.options import reject_options
from mtl_bench.core.types import Fused, Tokens
from mtl_bench.errors import UserError
from mtl_bench.fusion import FUSIONS
from mtl_bench.fusion.functional import concat_tokens, present_modalities


@FUSIONS.register("early")
class EarlyFusion(nn.Module):
    """[CLS] + all present tokens (each plus a learned modality embedding) -> TransformerEncoder.

    ``pooled`` is the [CLS] output; ``tokens`` is the whole sequence, [CLS] first, so it is never fully padded.
    """

    def __init__(
        self, dim: int, modalities: list[str], layers: int = 1, heads: int = 4, dropout: float = 0.1, **opts: object
    ) -> None:
        super().__init__()
        reject_options("fusion 'early'", opts)
        self.modalities = sorted(modalities)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.modality_embed = nn.ParameterDict({m: nn.Parameter(torch.randn(dim) * 0.02) for m in self.modalities})
        if layers < 1:
            raise UserError(f"fusion 'early' needs layers >= 1 (its [CLS] output is the pooled vector), got {layers}")
        self.stack = TransformerStack(dim, heads, layers, dropout)

    def forward(self, inputs: dict[str, Tokens]) -> Fused:
        out = self.joint(inputs, present_modalities(inputs, self.modalities, "early"))
        return Fused(pooled=out.x[:, 0], tokens=out.x, mask=out.mask)

    def joint(self, inputs: dict[str, Tokens], names: list[str]) -> Tokens:
        """The transformed joint sequence: [CLS], then the tokens of ``names`` (already checked, sorted) in order.

        Shared with hierarchical fusion, which splits it back by modality.
        """
        first = inputs[names[0]].x
        batch = first.shape[0]
        cls = Tokens(self.cls.expand(batch, -1, -1), torch.ones(batch, 1, dtype=torch.bool, device=first.device))
        seq = concat_tokens([cls] + [Tokens(inputs[m].x + self.modality_embed[m], inputs[m].mask) for m in names])
        return Tokens(self.stack(seq.x, seq.mask), seq.mask)
