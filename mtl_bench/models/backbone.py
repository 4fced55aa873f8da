"""The backbone: one encoder per modality, then a fusion module. Sharing strategies decide how many exist."""

from __future__ import annotations

from typing import Any

from torch import nn

from mtl_bench.core.backbone import Backbone
from mtl_bench.core.types import IMAGE, MODALITIES, TEXT, VIDEO
from mtl_bench.encoders import ENCODERS
from mtl_bench.errors import UserError
from mtl_bench.fusion import FUSIONS

SCRATCH = "scratch"  # model.image_encoder / model.text_encoder value of the encoders trained from scratch


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
    image_encoder: str = SCRATCH,
    text_encoder: str = SCRATCH,
    freeze_pretrained: bool = True,
) -> Backbone:
    """A backbone with the chosen encoder of each modality and the named fusion.

    ``image_encoder`` / ``text_encoder``: "scratch" (the registered default of the modality) or a pretrained network
    name (see ``encoders/pretrained_image.py``, ``encoders/pretrained_text.py``), frozen when ``freeze_pretrained``.
    With both image and video, ONE image encoder object encodes photos and video frames (shared parameters);
    with video alone, the video encoder gets its own frame encoder built with the same settings.
    """
    names = sorted(set(modalities))
    unknown = [m for m in names if m not in MODALITIES]
    if not names or unknown:
        raise UserError(f"model modalities {modalities} must be a non-empty subset of {list(MODALITIES)}")
    encoders: dict[str, nn.Module] = {}
    frame_encoder = None
    if IMAGE in names or VIDEO in names:
        if image_encoder == SCRATCH:
            frame_encoder = ENCODERS.get(IMAGE)(
                dim, image_size=image_size, channels=tuple(image_channels), dropout=dropout
            )
        else:
            frame_encoder = ENCODERS.get("pretrained-image")(
                dim, source=image_encoder, freeze=freeze_pretrained, dropout=dropout
            )
    if IMAGE in names:
        encoders[IMAGE] = frame_encoder
    if TEXT in names:
        if text_encoder == SCRATCH:
            encoders[TEXT] = ENCODERS.get(TEXT)(
                vocab_size, dim, layers=text_layers, heads=heads, max_len=max_text_len, dropout=dropout, pad_id=pad_id
            )
        else:
            encoders[TEXT] = ENCODERS.get("pretrained-text")(
                dim, source=text_encoder, freeze=freeze_pretrained, max_len=max_text_len, dropout=dropout
            )
    if VIDEO in names:
        encoders[VIDEO] = ENCODERS.get(VIDEO)(
            dim, frame_encoder=frame_encoder, num_frames=num_frames, layers=video_layers, heads=heads, dropout=dropout
        )
    fuse = FUSIONS.get(fusion)(dim, names, layers=fusion_layers, heads=heads, dropout=dropout, **(fusion_opts or {}))
    return Backbone(nn.ModuleDict(encoders), fuse)
