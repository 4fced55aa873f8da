"""build_backbone with every fusion and modality subset; the image encoder is shared with video frames."""

from __future__ import annotations

import pytest
import torch

from mtl_bench.core.backbone import Backbone
from mtl_bench.core.types import IMAGE, MODALITIES, TEXT, VIDEO
from mtl_bench.errors import UserError
from mtl_bench.fusion import FUSIONS
from mtl_bench.models.backbone import build_backbone

from .tiny import BATCH, DIM, FRAMES, IMAGE_SIZE, VOCAB, assert_finite_grads, raw_input, subsets


def tiny_backbone(modalities: list[str], fusion: str = "early") -> Backbone:
    return build_backbone(
        modalities, DIM, VOCAB, fusion=fusion, image_size=IMAGE_SIZE, image_channels=(8, 16),
        num_frames=FRAMES, max_text_len=8, heads=2,
    )  # fmt: skip


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
    late = build_backbone([IMAGE, TEXT], DIM, VOCAB, fusion="late", fusion_opts={"combine": "gate"}, image_size=16)
    assert late.fusion.combine == "gate"
    with pytest.raises(UserError, match="non-empty subset"):
        build_backbone(["audio"], DIM, VOCAB)
    with pytest.raises(UserError, match="unknown fusion"):
        build_backbone([IMAGE], DIM, VOCAB, fusion="earl")
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
