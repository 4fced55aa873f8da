"""Encoders map one modality's raw tensor to ``Tokens``; each module registers its file name in ``ENCODERS``.

The default encoder of a modality is registered under the modality name ("text", "image", "video"); other encoders
for the same modality register their own names: "pretrained-image" and "pretrained-text" (offline pretrained
networks, chosen by ``model.image_encoder`` / ``model.text_encoder``; their optional packages are imported only when
one is built). The names are declared here with their modules; a module (and torch) is imported on ``ENCODERS.get``.

An encoder class declares the input it reads (``modality``, a ClassVar) and builds itself from the run's settings:
``from_config(settings, frame_encoder=None)``, ``settings`` being one ``EncoderSettings`` (``settings.py``, which
also says how a modality's encoder is chosen). A plugin encoder does the same and is chosen by its registered name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mtl_bench.registry import Registry

if TYPE_CHECKING:
    from torch import nn

ENCODERS: Registry[type[nn.Module]] = Registry("encoder", builtins={
    name: f"mtl_bench.encoders.{name.replace('-', '_')}"
    for name in ("image", "pretrained-image", "pretrained-text", "text", "video")
})
