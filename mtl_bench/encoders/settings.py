"""What every encoder is built from (``EncoderSettings``) and which registered encoder a modality gets.

One frozen value, made once per run from the config (``EncoderSettings.from_run``), is handed to every encoder's
``from_config``: each encoder takes the fields it needs, so the backbone builder passes no encoder-specific
argument and a plugin encoder gets the same settings as the built-in ones.

The choice per modality (``chosen_encoder``) reads ``model.image_encoder`` / ``model.text_encoder`` (video has no
field and always gets its registered default):

- ``scratch`` (``SCRATCH``): the modality's default, the encoder registered under the modality's name;
- the name of a registered encoder of that modality (e.g. a plugin's; note that the config schema's pattern for
  these fields still admits only the built-in spellings, so for now such a name reaches here only from code);
- anything else: a pretrained network, built by the modality's ``pretrained-<modality>`` encoder, which checks the
  name and answers an unknown one with a one-line error (``encoders/pretrained_image.py``, ``pretrained_text.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mtl_bench.core.types import IMAGE, SCRATCH, TEXT
from mtl_bench.encoders import ENCODERS
from mtl_bench.errors import UserError
from mtl_bench.registry import did_you_mean

if TYPE_CHECKING:
    from torch import nn

    from mtl_bench.config.schema import RunConfig

# The config field that chooses each modality's encoder (a modality without one gets its default).
CHOICE_FIELDS = {IMAGE: "model.image_encoder", TEXT: "model.text_encoder"}


@dataclass(frozen=True)
class EncoderSettings:
    """The run's settings that shape the encoders; defaults are the schema's model defaults (max_text_len: 32)."""

    dim: int  # width of every token
    vocab_size: int  # word-level vocabulary of the scratch text encoder (from the prepared data)
    image_size: int = 32  # side of the square images and video frames, pixels
    image_channels: tuple[int, ...] = (32, 64)  # CNN widths of the scratch image / frame encoder
    num_frames: int = 8  # frames per video clip
    max_text_len: int = 32  # tokens per title
    text_layers: int = 1  # transformer layers of the scratch text encoder
    video_layers: int = 1  # temporal transformer layers of the video encoder
    heads: int = 4  # attention heads in every transformer layer
    dropout: float = 0.1
    pad_id: int = 0  # padding id of our word-level tokenizer (pretrained text encoders use their tokenizer's)
    freeze_pretrained: bool = True  # pretrained networks get no gradients
    image_encoder: str = SCRATCH  # model.image_encoder: the photo and video-frame encoder's choice
    text_encoder: str = SCRATCH  # model.text_encoder: the title encoder's choice

    @classmethod
    def from_run(cls, cfg: RunConfig, vocab_size: int) -> EncoderSettings:
        """The settings of run ``cfg`` whose prepared data has ``vocab_size`` word ids."""
        m, data = cfg.model, cfg.data
        return cls(
            dim=m.dim, vocab_size=vocab_size, image_size=data.image_size, image_channels=tuple(m.image_channels),
            num_frames=data.num_frames, max_text_len=data.max_text_len, text_layers=m.text_layers,
            video_layers=m.video_layers, heads=m.heads, dropout=m.dropout, freeze_pretrained=m.freeze_pretrained,
            image_encoder=m.image_encoder, text_encoder=m.text_encoder,
        )  # fmt: skip

    def choice(self, modality: str) -> str:
        """The configured encoder of ``modality``: its config field's value, else ``scratch``."""
        return {IMAGE: self.image_encoder, TEXT: self.text_encoder}.get(modality, SCRATCH)


def chosen_encoder(modality: str, settings: EncoderSettings) -> type[nn.Module]:
    """The registered encoder class that ``settings`` chooses for ``modality`` (see the module docstring).

    Looking a name up imports only the module that registers it, so a scratch run never imports the pretrained
    encoders' optional packages.
    """
    choice = settings.choice(modality)
    field = CHOICE_FIELDS.get(modality, f"the {modality} encoder")
    name = modality if choice == SCRATCH else choice
    if name in ENCODERS:
        found = ENCODERS.get(name)
        if getattr(found, "modality", None) != modality:
            raise UserError(
                f"{field} = {choice!r}: encoder {name!r} reads {getattr(found, 'modality', 'no modality')} inputs, "
                f"not {modality}; expected {SCRATCH!r}, a pretrained {modality} network or an encoder of {modality}"
            )
        return found
    pretrained = f"pretrained-{modality}"
    if pretrained not in ENCODERS:
        raise UserError(f"{field} = {choice!r}: no such encoder; {did_you_mean(choice, [SCRATCH, *ENCODERS])}")
    return ENCODERS.get(pretrained)  # it checks the network name (one line naming the field when unknown)
