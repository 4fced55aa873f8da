"""Late fusion: each modality is summarised on its own (masked mean), then the summaries are combined.

Modalities never attend to each other here, which makes it the cheap baseline against early fusion.
``layers`` and ``heads`` are accepted for the common fusion signature but unused: late fusion has no transformer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_bench.core.options import reject_options
from mtl_bench.core.types import Fused, Tokens
from mtl_bench.errors import UserError
from mtl_bench.fusion import FUSIONS
from mtl_bench.fusion.functional import (
    concat_tokens,
    concat_with_zeros,
    gated_sum,
    masked_mean,
    present_modalities,
)

COMBINES = ("concat", "gate")


@FUSIONS.register("late")
class LateFusion(nn.Module):
    """Per-modality masked means combined by ``combine``:

    - ``concat``: concatenation over ALL built modalities (zeros for missing ones) -> linear projection;
    - ``gate``: a learned softmax gate (score from each vector plus a per-modality bias) over present modalities.

    ``tokens``/``mask`` are the present modalities' tokens concatenated, as memory for a caption decoder.
    """

    def __init__(
        self,
        dim: int,
        modalities: list[str],
        layers: int = 1,
        heads: int = 4,
        dropout: float = 0.1,
        combine: str = "concat",
        **opts: object,
    ) -> None:
        super().__init__()
        reject_options("fusion 'late'", opts)
        if combine not in COMBINES:
            raise UserError(f"fusion 'late' option combine={combine!r}: expected one of {', '.join(COMBINES)}")
        self.modalities = sorted(modalities)
        self.combine = combine
        if combine == "concat":
            self.project = nn.Linear(len(self.modalities) * dim, dim)
        else:
            self.gate = nn.Linear(dim, 1)
            self.gate_bias = nn.ParameterDict({m: nn.Parameter(torch.zeros(1)) for m in self.modalities})
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: dict[str, Tokens]) -> Fused:
        names = present_modalities(inputs, self.modalities, "late")
        pooled = self.pool({m: masked_mean(inputs[m].x, inputs[m].mask) for m in names})
        memory = concat_tokens([inputs[m] for m in names])
        return Fused(pooled=pooled, tokens=memory.x, mask=memory.mask)

    def pool(self, vectors: dict[str, Tensor]) -> Tensor:
        """Combine one [B, D] vector per present modality (keys: a subset of the built ones) into [B, D].

        Shared with the fusions that summarise each modality first (hierarchical, cross-attention).
        """
        names = sorted(vectors)
        if self.combine == "concat":
            pooled = self.project(concat_with_zeros(vectors, self.modalities))
        else:
            stacked = torch.stack([vectors[m] for m in names], dim=1)  # [B, M, D]
            bias = torch.cat([self.gate_bias[m] for m in names])  # [M]
            pooled = gated_sum(stacked, self.gate(stacked).squeeze(-1) + bias)
        return self.dropout(self.norm(pooled))
