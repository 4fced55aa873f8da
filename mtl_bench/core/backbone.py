"""The backbone module: one encoder per modality, then a fusion module (``models/backbone.py`` assembles it)."""

from __future__ import annotations

from torch import Tensor, nn

from mtl_bench.core.types import Fused
from mtl_bench.errors import UserError


class Backbone(nn.Module):
    """``inputs`` {modality: raw tensor} -> Fused: encode each present modality (sorted), then fuse.

    Raw tensors: image float [B, 3, H, W] in [0, 1], text long ids [B, L], video float [B, T, 3, H, W] in [0, 1].
    """

    def __init__(self, encoders: nn.ModuleDict, fusion: nn.Module) -> None:
        super().__init__()
        self.encoders = encoders
        self.fusion = fusion

    def forward(self, inputs: dict[str, Tensor]) -> Fused:
        unknown = sorted(set(inputs) - set(self.encoders))
        if unknown:
            raise UserError(f"backbone has no encoder for {unknown}; it was built for {sorted(self.encoders)}")
        return self.fusion({m: self.encoders[m](inputs[m]) for m in sorted(inputs)})
