"""build_backbone with every fusion and modality subset; the image encoder is shared with video frames; encoders
are built in a fixed order (image, text, video, then fusion), checked against a construction written out by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtl_bench.core.backbone import Backbone
from mtl_bench.core.types import IMAGE, MODALITIES, TEXT, VIDEO
from mtl_bench.encoders.image import ImageEncoder
from mtl_bench.encoders.text import TextEncoder
from mtl_bench.encoders.video import VideoEncoder
from mtl_bench.errors import UserError
from mtl_bench.fusion import FUSIONS
from mtl_bench.models.backbone import build_backbone

from .tiny import BATCH, DIM, FRAMES, IMAGE_SIZE, VOCAB, assert_finite_grads, raw_input, settings, subsets


def tiny_backbone(modalities: list[str], fusion: str = "early") -> Backbone:
    tiny = settings(image_size=IMAGE_SIZE, image_channels=(8, 16), num_frames=FRAMES, max_text_len=8, heads=2)
    return build_backbone(modalities, tiny, fusion=fusion)


@pytest.mark.parametrize("fusion", FUSIONS.names())
@pytest.mark.parametrize("built", subsets(), ids="+".join)
def test_backbone_runs_every_subset_of_its_modalities(fusion: str, built: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    backbone = tiny_backbone(list(built), fusion)
    for present in subsets(built):
        backbone.zero_grad()
        out = backbone({m: raw_input(m) for m in present})
        assert out.pooled.shape == (BATCH, DIM) and torch.isfinite(out.tokens).all()
        out.pooled.sum().backward()
        assert_finite_grads(backbone)


def test_image_encoder_is_shared_with_video_frames() -> None:
    backbone = tiny_backbone([IMAGE, VIDEO])
    assert backbone.encoders[VIDEO].frame_encoder is backbone.encoders[IMAGE]
    backbone({VIDEO: raw_input(VIDEO)}).pooled.sum().backward()
    assert all(p.grad is not None for p in backbone.encoders[IMAGE].parameters())
    alone = tiny_backbone([VIDEO])
    assert IMAGE not in alone.encoders and alone.encoders[VIDEO].frame_encoder.image_size == IMAGE_SIZE


def test_build_backbone_passes_fusion_options_and_checks_modalities() -> None:
    assert tiny_backbone([TEXT]).fusion.modalities == [TEXT]
    late = build_backbone([IMAGE, TEXT], settings(image_size=16), fusion="late", fusion_opts={"combine": "gate"})
    assert late.fusion.combine == "gate"
    with pytest.raises(UserError, match="non-empty subset"):
        build_backbone(["audio"], settings())
    with pytest.raises(UserError, match="unknown fusion"):
        build_backbone([IMAGE], settings(), fusion="earl")
    with pytest.raises(UserError, match="no encoder"):
        tiny_backbone([IMAGE])({TEXT: raw_input(TEXT)})


def test_same_seed_gives_identical_outputs() -> None:
    outputs = []
    for _ in range(2):
        torch.manual_seed(3)
        backbone = tiny_backbone(list(MODALITIES)).eval()
        inputs = {m: raw_input(m) for m in MODALITIES}
        outputs.append(backbone(inputs).tokens)
    assert torch.equal(outputs[0], outputs[1])


def hand_built(modalities: list[str], fusion: str) -> Backbone:
    """The backbone of the test below built by hand, in the order a seed's weights depend on: the image encoder
    (also the frame encoder, so built even without the image modality), text, video, then fusion; the encoders
    registered in sorted order (the order of the state_dict keys that checkpoints are loaded by)."""
    wanted = set(modalities)
    image = ImageEncoder(DIM, IMAGE_SIZE, channels=(8, 16), dropout=0.2) if wanted & {IMAGE, VIDEO} else None
    text = TextEncoder(VOCAB, DIM, layers=2, heads=2, max_len=8, dropout=0.2) if TEXT in wanted else None
    video = VideoEncoder(DIM, image, num_frames=FRAMES, layers=0, heads=2, dropout=0.2) if VIDEO in wanted else None
    fuse = FUSIONS.get(fusion)(DIM, sorted(wanted), layers=2, heads=2, dropout=0.2)
    encoders = {IMAGE: image, TEXT: text, VIDEO: video}
    return Backbone(nn.ModuleDict({m: encoders[m] for m in sorted(wanted)}), fuse)


@pytest.mark.parametrize("fusion", ["early", "hierarchical"])
@pytest.mark.parametrize("built", subsets(), ids="+".join)
def test_encoders_are_built_in_a_fixed_order_so_a_seed_gives_the_same_weights(fusion: str, built: tuple[str]) -> None:
    ordered_settings = settings(
        image_size=IMAGE_SIZE, image_channels=(8, 16), num_frames=FRAMES, max_text_len=8, text_layers=2,
        video_layers=0, heads=2, dropout=0.2,
    )  # fmt: skip
    torch.manual_seed(11)
    backbone = build_backbone(list(reversed(built)), ordered_settings, fusion=fusion, fusion_layers=2)
    after = torch.rand(5)  # the build drew as many numbers as the hand-built one
    torch.manual_seed(11)
    reference = hand_built(list(built), fusion)
    assert torch.equal(after, torch.rand(5))
    ours, theirs = backbone.state_dict(), reference.state_dict()
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert list(backbone.encoders) == sorted(built)
