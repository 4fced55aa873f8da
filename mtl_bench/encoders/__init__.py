"""Encoders map one modality's raw tensor to ``Tokens``; each module registers its file name in ``ENCODERS``.

The default encoder of a modality is registered under the modality name ("text", "image", "video"); other encoders
for the same modality register their own names: "pretrained-image" and "pretrained-text" (offline pretrained
networks, chosen by ``model.image_encoder`` / ``model.text_encoder``; their optional packages are imported only when
one is built).
"""

from __future__ import annotations

from torch import nn

from mtl_bench.registry import Registry

ENCODERS: Registry[type[nn.Module]] = Registry("encoder")

from mtl_bench.encoders import image, pretrained_image, pretrained_text, text, video  # noqa: E402,F401  (registers names)
