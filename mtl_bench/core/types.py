"""Named values that cross the model's boundaries (dicts keyed by modality or task name carry these)."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # annotations only: task and suite files use the modality names below without importing torch
    from torch import Tensor


class Tokens(NamedTuple):
    """A sequence of feature vectors from one encoder."""

    x: Tensor  # [B, N, D] features
    mask: Tensor  # [B, N] bool, True where a token is real (not padding)


class Fused(NamedTuple):
    """What a fusion module (and so a sharing strategy) hands to a task head."""

    pooled: Tensor  # [B, D] one vector per sample (classifier, tagger)
    tokens: Tensor  # [B, N, D] token memory (caption decoder cross-attends to it)
    mask: Tensor  # [B, N] bool, True where a token is real


# Modality names used as dict keys everywhere (inputs, encoders, fusion).
TEXT, IMAGE, VIDEO = "text", "image", "video"
MODALITIES = (IMAGE, TEXT, VIDEO)

# model.image_encoder / model.text_encoder value choosing the modality's default encoder, trained from scratch
# (the encoder registered under the modality's own name); any other value names a pretrained network or an encoder.
SCRATCH = "scratch"
