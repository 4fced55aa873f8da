"""The backbone: one encoder per modality, then a fusion module. Sharing strategies decide how many exist."""

from __future__ import annotations

from typing import Any

from torch import nn

from mtl_bench.core.backbone import Backbone
from mtl_bench.core.types import MODALITIES
from mtl_bench.encoders.settings import EncoderSettings, chosen_encoder
from mtl_bench.errors import UserError
from mtl_bench.fusion import FUSIONS


def build_encoders(modalities: list[str], settings: EncoderSettings) -> dict[str, nn.Module]:
    """{modality: encoder} for the sorted ``modalities``, each the registered encoder ``settings`` chooses.

    Built in the fixed order of ``MODALITIES`` (image, text, video): every construction draws from the global RNG,
    so this order is what makes a seed give the same initial weights. An encoder whose class names a modality in
    ``frames_from`` (video: image) gets that modality's encoder object: with image and video, ONE image encoder
    encodes photos and frames (shared parameters); with video alone it is still built, at the image encoder's turn
    and with the same settings, as the video encoder's private frame encoder.
    """
    classes = {m: chosen_encoder(m, settings) for m in modalities}
    wanted = set(modalities) | {c.frames_from for c in classes.values() if getattr(c, "frames_from", None)}
    built: dict[str, nn.Module] = {}
    for modality in MODALITIES:
        if modality in wanted:
            cls = classes.get(modality) or chosen_encoder(modality, settings)
            source = getattr(cls, "frames_from", None)
            built[modality] = cls.from_config(settings, frame_encoder=built[source] if source else None)
    return {m: built[m] for m in modalities}


def build_backbone(
    modalities: list[str],
    settings: EncoderSettings,
    fusion: str = "early",
    fusion_opts: dict[str, Any] | None = None,
    fusion_layers: int = 1,
) -> Backbone:
    """A backbone with the chosen encoder of each modality (``build_encoders``) and the named fusion.

    The fusion module is built last, with ``settings``' width, heads and dropout, ``fusion_layers`` and its options.
    """
    names = sorted(set(modalities))
    unknown = [m for m in names if m not in MODALITIES]
    if not names or unknown:
        raise UserError(f"model modalities {modalities} must be a non-empty subset of {list(MODALITIES)}")
    encoders = build_encoders(names, settings)
    fuse = FUSIONS.get(fusion)(
        settings.dim, names, layers=fusion_layers, heads=settings.heads, dropout=settings.dropout,
        **(fusion_opts or {}),
    )  # fmt: skip
    return Backbone(nn.ModuleDict(encoders), fuse)
