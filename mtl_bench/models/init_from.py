"""Start a run's encoders from a contrastive pre-training checkpoint (``mtl-bench pretrain``; ``model.init_from``).

The checkpoint holds the encoders' weights (image / frame, title, video) and the settings that shape them and their
inputs. Every backbone of the run (one for hard sharing, one per task for single-task or soft sharing) starts from
the same weights; fusion modules and heads start fresh. A checkpoint that does not fit the run fails with one line.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtl_bench.config.schema import RunConfig
from mtl_bench.core.backbone import Backbone
from mtl_bench.errors import UserError

FORMAT = "mtl-bench-pretrained/1"
# Settings that change the encoders' parameter shapes or the meaning of their inputs: they must match the run's.
MODEL_FIELDS = ("dim", "heads", "text_layers", "video_layers", "image_channels", "image_encoder", "text_encoder")
DATA_FIELDS = ("image_size", "num_frames", "max_text_len")


def encoder_settings(cfg: RunConfig) -> dict[str, Any]:
    model, data = cfg.model.model_dump(mode="json"), cfg.data.model_dump(mode="json")
    return {f"model.{k}": model[k] for k in MODEL_FIELDS} | {f"data.{k}": data[k] for k in DATA_FIELDS}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, or one clear error for a missing or foreign file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"model.init_from = {str(path)!r}: no such file (make one with `mtl-bench pretrain`)")
    try:
        ckpt = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any unreadable file gets the same one-line answer)
        raise UserError(f"model.init_from = {str(path)!r}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"model.init_from = {str(path)!r}: not an mtl-bench pretrain checkpoint (format {FORMAT})")
    return ckpt


def check_compatible(ckpt: dict[str, Any], cfg: RunConfig, fingerprint: str, vocab_size: int, path: str) -> None:
    """The run must tokenize and shape its encoders exactly as the pre-training did."""
    if ckpt["suite"] != cfg.suite or ckpt["data_fingerprint"] != fingerprint or ckpt["vocab_size"] != vocab_size:
        raise UserError(
            f"model.init_from = {path!r}: pre-trained on suite {ckpt['suite']} (data {ckpt['data_fingerprint'][:12]}, "
            f"vocabulary {ckpt['vocab_size']}), but this run is suite {cfg.suite} (data {fingerprint[:12]}, "
            f"vocabulary {vocab_size}); pre-train with the same suite and data settings"
        )
    ours = encoder_settings(cfg)
    for key, value in ckpt["settings"].items():
        if ours.get(key) != value:
            raise UserError(
                f"model.init_from = {path!r}: field {key!r} is {ours.get(key)!r} here but {value!r} in the "
                "checkpoint; set it to match"
            )


def backbones(model: nn.Module) -> list[Backbone]:
    return [m for m in model.modules() if isinstance(m, Backbone)]


def load_encoders(model: nn.Module, cfg: RunConfig, fingerprint: str, vocab_size: int) -> int:
    """Copy the checkpoint's encoder weights into every backbone of ``model``; returns how many were loaded."""
    path = str(cfg.model.init_from)
    ckpt = read_checkpoint(path)
    check_compatible(ckpt, cfg, fingerprint, vocab_size, path)
    found = backbones(model)
    for backbone in found:
        own = backbone.encoders.state_dict()
        state = {k: v for k, v in ckpt["encoders"].items() if k in own}
        wrong = [k for k, v in state.items() if v.shape != own[k].shape]
        if not state or wrong:
            raise UserError(
                f"model.init_from = {path!r}: the checkpoint's encoder weights do not fit this model "
                f"({'no shared weight names' if not state else f'shape differs for {wrong[0]}'})"
            )
        backbone.encoders.load_state_dict(state, strict=False)  # parts the pre-training did not train keep their init
    return len(found)
