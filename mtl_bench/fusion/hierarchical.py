"""Hierarchical fusion: early fusion in the lower layers, late fusion on top.

The joint transformer lets modalities exchange evidence token by token (as early fusion does); the late combiner
then reads one summary per modality, so a strong modality cannot drown the others out in a single [CLS] vector.
"""

from __future__ import annotations

from torch import nn

from mtl_bench.core.options import reject_options
from mtl_bench.core.types import Fused, Tokens
from mtl_bench.errors import UserError
from mtl_bench.fusion import FUSIONS
from mtl_bench.fusion.early import EarlyFusion
from mtl_bench.fusion.functional import masked_mean, present_modalities
from mtl_bench.fusion.late import COMBINES, LateFusion

CLS = "[cls]"  # the combiner's slot for the [CLS] vector (a name no modality can take)


@FUSIONS.register("hierarchical")
class HierarchicalFusion(nn.Module):
    """Early fusion's [CLS] + present tokens (with modality embeddings) through ``layers`` joint transformer layers;
    the output is split back by modality, each part masked-mean pooled, and the per-modality vectors plus the [CLS]
    vector are combined by late fusion's ``combine`` (``concat``: all built modalities, zeros for missing ones, then a
    projection; ``gate``: a softmax gate over [CLS] and the present modalities).

    ``tokens``/``mask`` are the joint sequence, [CLS] first, exactly as early fusion returns them.
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
        reject_options("fusion 'hierarchical'", opts)
        if layers < 1:
            raise UserError(f"fusion 'hierarchical' needs layers >= 1 (its lower part is a transformer), got {layers}")
        if combine not in COMBINES:
            raise UserError(f"fusion 'hierarchical' option combine={combine!r}: expected one of {', '.join(COMBINES)}")
        self.modalities = sorted(modalities)
        self.early = EarlyFusion(dim, self.modalities, layers, heads, dropout)
        self.late = LateFusion(dim, [CLS, *self.modalities], dropout=dropout, combine=combine)

    def forward(self, inputs: dict[str, Tokens]) -> Fused:
        names = present_modalities(inputs, self.modalities, "hierarchical")
        joint = self.early.joint(inputs, names)
        lengths = [1] + [inputs[m].x.shape[1] for m in names]
        parts = zip(names, joint.x.split(lengths, dim=1)[1:], joint.mask.split(lengths, dim=1)[1:], strict=True)
        vectors = {CLS: joint.x[:, 0], **{m: masked_mean(x, mask) for m, x, mask in parts}}
        return Fused(pooled=self.late.pool(vectors), tokens=joint.x, mask=joint.mask)
