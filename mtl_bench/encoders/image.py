"""Image encoder: a small strided CNN whose output grid becomes patch tokens (the main compute cost on CPU)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from mtl_bench.core.types import IMAGE, Tokens
from mtl_bench.encoders import ENCODERS
from mtl_bench.errors import UserError

if TYPE_CHECKING:
    from mtl_bench.encoders.settings import EncoderSettings

# ImageNet statistics: inputs arrive in [0, 1] and are normalised inside, so callers never have to.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 stride-2 conv -> GroupNorm -> ReLU: halves the side. GroupNorm keeps outputs independent of the batch,
    which matters because the same encoder sees image batches and flattened video frames."""
    groups = 8 if c_out % 8 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.GroupNorm(groups, c_out), nn.ReLU(inplace=True)
    )


@ENCODERS.register(IMAGE)
class ImageEncoder(nn.Module):
    """Float images [B, 3, H, W] in [0, 1] -> Tokens [B, grid*grid, D] (all real).

    ``len(channels)`` stride-2 conv blocks, then a patchifying conv to ``dim`` that leaves a ``grid`` x ``grid`` map
    (32x32 with the defaults: 16x16 -> 8x8 -> 4x4 = 16 tokens), plus learned row and column position embeddings.
    """

    modality: ClassVar[str] = IMAGE  # the input key this encoder reads
    adapter_output: ClassVar[bool] = True  # sharing 'adapters' adds a bottleneck to its output Tokens (width dim)

    def __init__(
        self,
        dim: int,
        image_size: int = 32,
        channels: tuple[int, ...] = (32, 64),
        dropout: float = 0.1,
        grid: int = 4,
    ) -> None:
        super().__init__()
        reduction = 2 ** len(channels) * grid
        if not channels or image_size % reduction:
            raise UserError(
                f"image_size={image_size} must be a multiple of 2**len(channels) * grid = {reduction} "
                f"(channels={tuple(channels)}, grid={grid})"
            )
        self.dim, self.image_size, self.grid = dim, image_size, grid
        widths = (3, *channels)
        self.features = nn.Sequential(*(conv_block(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)))
        patch = image_size // reduction
        self.project = nn.Conv2d(widths[-1], dim, kernel_size=patch, stride=patch)
        self.row = nn.Parameter(torch.randn(grid, 1, dim) * 0.02)
        self.col = nn.Parameter(torch.randn(1, grid, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        # channels_last (NHWC): oneDNN's convolutions then skip their layout reorders, 10-18% less encoder time
        # (forward + backward, CPU) at the default widths (32, 64); but GroupNorm's NHWC kernel is slow on narrow
        # layers and makes the smoke widths (8, 16) 35% slower, hence only from 32 channels up (benchmarks/README.md).
        # Results differ from NCHW only in float rounding.
        self.memory_format = torch.channels_last if min(channels) >= 32 else torch.contiguous_format

    @classmethod
    def from_config(cls, settings: EncoderSettings, frame_encoder: nn.Module | None = None) -> ImageEncoder:
        """The run's scratch image encoder (``frame_encoder`` is for video encoders; unused here)."""
        return cls(
            settings.dim, image_size=settings.image_size, channels=tuple(settings.image_channels),
            dropout=settings.dropout,
        )  # fmt: skip

    def forward(self, images: Tensor) -> Tokens:
        if tuple(images.shape[-3:]) != (3, self.image_size, self.image_size):
            raise UserError(
                f"image encoder expects [B, 3, {self.image_size}, {self.image_size}] images, "
                f"got shape {tuple(images.shape)}; set data.image_size to match"
            )
        x = ((images - self.mean) / self.std).contiguous(memory_format=self.memory_format)
        x = self.project(self.features(x))  # [B, D, grid, grid]
        return grid_tokens(self, x.flatten(2).transpose(1, 2))


def grid_tokens(encoder: nn.Module, x: Tensor) -> Tokens:
    """Row-major grid features [B, grid*grid, D] + the encoder's learned row and column positions, normalised.

    Shared by the scratch and the pretrained image encoders, which both hold ``row``, ``col``, ``norm``, ``dropout``.
    """
    position = (encoder.row + encoder.col).reshape(1, -1, x.shape[-1])
    x = encoder.dropout(encoder.norm(x + position))
    return Tokens(x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device))
