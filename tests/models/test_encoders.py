"""Every registered encoder: output Tokens shapes, finite outputs and gradients; the encoder-specific contracts."""

from __future__ import annotations

import pytest
import torch

from mtl_bench.core.types import IMAGE, TEXT, VIDEO
from mtl_bench.encoders import ENCODERS
from mtl_bench.encoders.image import ImageEncoder
from mtl_bench.encoders.video import VideoEncoder
from mtl_bench.errors import UserError

from .tiny import BATCH, DIM, FRAMES, TEXT_LEN, assert_finite_grads, build_tiny, raw_input


@pytest.mark.parametrize("name", ENCODERS.names())
def test_encoder_gives_finite_tokens_and_grads(name: str) -> None:
    torch.manual_seed(0)
    encoder = build_tiny(ENCODERS.get(name))
    out = encoder(raw_input(encoder.modality))
    assert out.x.shape[0] == BATCH and out.x.shape[2] == DIM and out.x.ndim == 3
    assert out.mask.shape == out.x.shape[:2] and out.mask.dtype == torch.bool
    assert torch.isfinite(out.x).all()
    out.x.square().mean().backward()
    assert_finite_grads(encoder)


@pytest.mark.parametrize("name", ENCODERS.names())
def test_encoder_is_deterministic_under_a_seed(name: str) -> None:
    outputs = []
    for _ in range(2):
        torch.manual_seed(1)
        encoder = build_tiny(ENCODERS.get(name)).eval()
        outputs.append(encoder(raw_input(encoder.modality)).x)
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize("layers", [0, 2])
def test_text_encoder_masks_padding_and_survives_empty_titles(layers: int) -> None:
    encoder = build_tiny(ENCODERS.get(TEXT), layers=layers)
    for mode in (encoder.train, encoder.eval):
        mode()
        ids = raw_input(TEXT)
        out = encoder(ids)
        assert out.x.shape == (BATCH, TEXT_LEN, DIM)
        assert torch.equal(out.mask, ids != 0) and not out.mask[-1].any()
        assert torch.isfinite(out.x).all()


def test_text_encoder_rejects_too_long_text() -> None:
    encoder = build_tiny(ENCODERS.get(TEXT), max_len=4)
    with pytest.raises(UserError, match="max_len=4"):
        encoder(torch.ones(1, 5, dtype=torch.long))


def test_image_encoder_makes_a_grid_of_tokens() -> None:
    encoder = ImageEncoder(DIM, image_size=32, channels=(8, 16))
    out = encoder(torch.rand(2, 3, 32, 32))
    assert out.x.shape == (2, 16, DIM) and out.mask.all()
    with pytest.raises(UserError, match="image_size"):
        encoder(torch.rand(2, 3, 16, 16))
    with pytest.raises(UserError, match="multiple of"):
        ImageEncoder(DIM, image_size=20, channels=(8, 16))


@pytest.mark.parametrize("layers", [0, 1])
def test_video_encoder_gives_one_token_per_frame(layers: int) -> None:
    encoder = build_tiny(ENCODERS.get(VIDEO), layers=layers)
    out = encoder(raw_input(VIDEO))
    assert out.x.shape == (BATCH, FRAMES, DIM) and out.mask.all()


def test_video_encoder_depends_on_frame_order() -> None:
    torch.manual_seed(0)
    encoder = build_tiny(ENCODERS.get(VIDEO)).eval()
    frames = raw_input(VIDEO)
    forward, backward = encoder(frames).x, encoder(frames.flip(1)).x.flip(1)
    assert not torch.allclose(forward, backward, atol=1e-4)


def test_video_encoder_shares_the_frame_encoder_object() -> None:
    image = build_tiny(ENCODERS.get(IMAGE))
    video = build_tiny(VideoEncoder, frame_encoder=image)
    assert video.frame_encoder is image
    video(raw_input(VIDEO)).x.sum().backward()
    assert all(p.grad is not None for p in image.parameters())
    with pytest.raises(UserError, match="num_frames=4"):
        video(torch.rand(1, 5, 3, 16, 16))


def test_wide_image_encoder_runs_channels_last_with_the_same_numbers() -> None:
    """From 32 channels up the CNN runs in NHWC (speed); outputs and gradients are those of NCHW up to rounding,
    and two runs under one seed are identical."""
    torch.manual_seed(0)
    encoder = ImageEncoder(16, image_size=16, channels=(32, 32), dropout=0.0)
    assert encoder.memory_format == torch.channels_last
    assert ImageEncoder(16, image_size=16, channels=(8, 16)).memory_format == torch.contiguous_format
    images = torch.rand(3, 3, 16, 16)

    def run(memory_format: torch.memory_format) -> tuple[torch.Tensor, torch.Tensor]:
        encoder.memory_format = memory_format
        encoder.zero_grad()
        out = encoder(images).x
        out.square().sum().backward()
        return out.detach(), encoder.features[0][0].weight.grad.clone()

    nhwc, nhwc_again, nchw = run(torch.channels_last), run(torch.channels_last), run(torch.contiguous_format)
    assert torch.equal(nhwc[0], nhwc_again[0]) and torch.equal(nhwc[1], nhwc_again[1])
    torch.testing.assert_close(nhwc[0], nchw[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(nhwc[1], nchw[1], atol=1e-4, rtol=1e-4)
