"""The backbone: one encoder per modality, then a fusion module. Sharing strategies decide how many exist."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from mtl_bench.encoders import ENCODERS
from mtl_bench.errors import UserError
from mtl_bench.fusion import FUSIONS
from mtl_bench.models.types import IMAGE, MODALITIES, TEXT, VIDEO, Fused


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


def build_backbone(
    modalities: list[str],
    dim: int,
    vocab_size: int,
    fusion: str = "early",
    fusion_opts: dict[str, Any] | None = None,
    image_size: int = 32,
    image_channels: tuple[int, ...] = (32, 64),
    num_frames: int = 8,
    max_text_len: int = 32,
    text_layers: int = 1,
    video_layers: int = 1,
    fusion_layers: int = 1,
    heads: int = 4,
    dropout: float = 0.1,
    pad_id: int = 0,
) -> Backbone:
    """A backbone with the default encoder of each modality and the named fusion.

    With both image and video, ONE ImageEncoder object encodes photos and video frames (shared parameters);
    with video alone, the video encoder gets its own frame encoder built with the same settings.
    """
    names = sorted(set(modalities))
    unknown = [m for m in names if m not in MODALITIES]
    if not names or unknown:
        raise UserError(f"model modalities {modalities} must be a non-empty subset of {list(MODALITIES)}")
    encoders: dict[str, nn.Module] = {}
    frame_encoder = None
    if IMAGE in names or VIDEO in names:
        frame_encoder = ENCODERS.get(IMAGE)(dim, image_size=image_size, channels=tuple(image_channels), dropout=dropout)
    if IMAGE in names:
        encoders[IMAGE] = frame_encoder
    if TEXT in names:
        encoders[TEXT] = ENCODERS.get(TEXT)(
            vocab_size, dim, layers=text_layers, heads=heads, max_len=max_text_len, dropout=dropout, pad_id=pad_id
        )
    if VIDEO in names:
        encoders[VIDEO] = ENCODERS.get(VIDEO)(
            dim, frame_encoder=frame_encoder, num_frames=num_frames, layers=video_layers, heads=heads, dropout=dropout
        )
    fuse = FUSIONS.get(fusion)(dim, names, layers=fusion_layers, heads=heads, dropout=dropout, **(fusion_opts or {}))
    return Backbone(nn.ModuleDict(encoders), fuse)
