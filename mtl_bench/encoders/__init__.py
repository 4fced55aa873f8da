"""Encoders map one modality's raw tensor to ``Tokens``; each module registers its file name in ``ENCODERS``.

The default encoder of a modality is registered under the modality name ("text", "image", "video"); other encoders
for the same modality register their own names (e.g. a future "efficientnet-lite0").
"""

from __future__ import annotations

from torch import nn

from mtl_bench.registry import Registry

ENCODERS: Registry[type[nn.Module]] = Registry("encoder")

from mtl_bench.encoders import image, text, video  # noqa: E402,F401  (import registers the names)
