"""Tiny sizes and sample inputs shared by the model tests, so every registered component is built the same way."""

from __future__ import annotations

import inspect
from itertools import combinations
from typing import Any

import torch
from torch import Tensor, nn

from mtl_bench.core.types import IMAGE, MODALITIES, TEXT, VIDEO, Tokens
from mtl_bench.encoders.settings import EncoderSettings

BATCH, DIM, VOCAB, IMAGE_SIZE, FRAMES, TEXT_LEN = 3, 16, 30, 16, 3, 5

# Every constructor argument a registered component might take, at test size; each builder takes what it names.
TINY: dict[str, Any] = {
    "dim": DIM,
    "vocab_size": VOCAB,
    "layers": 1,
    "heads": 2,
    "max_len": 8,
    "dropout": 0.1,
    "image_size": IMAGE_SIZE,
    "channels": (8, 16),
    "grid": 2,
    "num_frames": 4,
    "num_classes": 5,
    "num_tags": 4,
}


def settings(**fields: Any) -> EncoderSettings:
    """Encoder settings of width DIM over VOCAB word ids; other fields keep EncoderSettings' defaults unless given."""
    return EncoderSettings(dim=DIM, vocab_size=VOCAB, **fields)


def build_tiny(cls: type[nn.Module], **overrides: Any) -> nn.Module:
    """Build ``cls`` with the TINY values its constructor names (plus overrides)."""
    params = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in TINY.items() if k in params}
    return cls(**{**kwargs, **overrides})


def raw_input(modality: str, batch: int = BATCH) -> Tensor:
    """A random raw tensor of ``modality`` as the data pipeline delivers it; the last text row is an empty title."""
    if modality == IMAGE:
        return torch.rand(batch, 3, IMAGE_SIZE, IMAGE_SIZE)
    if modality == VIDEO:
        return torch.rand(batch, FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE)
    ids = torch.randint(3, VOCAB, (batch, TEXT_LEN))
    ids[0, 3:] = 0  # a padded title
    ids[-1] = 0  # an empty title
    return ids


def tokens(modality: str, batch: int = BATCH) -> Tokens:
    """Encoder-like output for ``modality``: different lengths per modality, text with padding and an empty row."""
    length = {IMAGE: 4, TEXT: TEXT_LEN, VIDEO: FRAMES}[modality]
    mask = torch.ones(batch, length, dtype=torch.bool)
    if modality == TEXT:
        mask[0, 3:] = False
        mask[-1] = False
    return Tokens(torch.randn(batch, length, DIM, requires_grad=True), mask)


def subsets(names: tuple[str, ...] = MODALITIES) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``names``, sorted."""
    return [c for r in range(1, len(names) + 1) for c in combinations(sorted(names), r)]


def assert_finite_grads(module: nn.Module, require_all: bool = False) -> None:
    """Every gradient present is finite; with ``require_all``, every parameter got one."""
    grads = {name: p.grad for name, p in module.named_parameters()}
    missing = [name for name, g in grads.items() if g is None]
    assert not (require_all and missing), f"no gradient for {missing}"
    assert any(g is not None for g in grads.values()), "no parameter got a gradient"
    for name, g in grads.items():
        assert g is None or torch.isfinite(g).all(), f"non-finite gradient in {name}"
