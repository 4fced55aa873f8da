"""Cross-attention fusion: the attention module against torch's, who attends to whom, empty key sets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtl_bench.core.types import MODALITIES, Tokens
from mtl_bench.errors import UserError
from mtl_bench.fusion import FUSIONS
from mtl_bench.fusion.cross_attention import CrossAttention, CrossAttentionFusion

from .tiny import BATCH, DIM, tokens


def build(layers: int = 1) -> CrossAttentionFusion:
    torch.manual_seed(0)
    fusion = FUSIONS.get("cross-attention")(DIM, list(MODALITIES), layers=layers, heads=2)
    assert isinstance(fusion, CrossAttentionFusion)
    return fusion.eval()


def segment(fusion: CrossAttentionFusion, inputs: dict[str, Tokens], modality: str) -> torch.Tensor:
    """The fused tokens of ``modality`` (``tokens`` holds the present modalities in sorted order)."""
    out = fusion(inputs)
    start = 0
    for m in sorted(inputs):
        if m == modality:
            return out.tokens[:, start : start + inputs[m].x.shape[1]]
        start += inputs[m].x.shape[1]
    raise KeyError(modality)


def shaken(t: Tokens) -> Tokens:
    """``t`` with new random real tokens (not a constant shift, which the LayerNorms would remove)."""
    return t._replace(x=torch.where(t.mask.unsqueeze(-1), torch.randn_like(t.x), t.x))


def feed_forward_only(fusion: CrossAttentionFusion, modality: str, x: torch.Tensor) -> torch.Tensor:
    """What ``modality``'s tokens become when there is nothing to attend to: feed-forward residuals, final norm."""
    x = x + fusion.modality_embed[modality]
    for layer in fusion.blocks:
        block = layer[modality]
        x = x + block.ff(block.norm_ff(x))
    return fusion.norm(x)


def test_attention_module_matches_torch_multihead_attention() -> None:
    torch.manual_seed(0)
    ours, theirs = CrossAttention(DIM, heads=2), nn.MultiheadAttention(DIM, 2, batch_first=True)
    with torch.no_grad():
        for i, proj in enumerate((ours.q, ours.k, ours.v)):
            proj.weight.copy_(theirs.in_proj_weight[i * DIM : (i + 1) * DIM])
            proj.bias.copy_(theirs.in_proj_bias[i * DIM : (i + 1) * DIM])
        ours.out.load_state_dict(theirs.out_proj.state_dict())
    x, context = torch.randn(BATCH, 4, DIM), tokens("text")
    context.mask[-1, 0] = True  # torch's module gives NaN for a row with no real key
    expected, _ = theirs(x, context.x, context.x, key_padding_mask=~context.mask)
    assert torch.allclose(ours(x, context), expected, atol=1e-5)


def test_image_tokens_read_the_text_tokens() -> None:
    fusion = build()
    image, text = tokens("image"), tokens("text")
    before = segment(fusion, {"image": image, "text": text}, "image")
    after = segment(fusion, {"image": image, "text": shaken(text)}, "image")
    assert not torch.allclose(before[:2], after[:2])  # rows 0 and 1 have real text tokens
    assert torch.allclose(before[-1], after[-1])  # the last row's title is empty: nothing changed for the image


@pytest.mark.parametrize("layers", [1, 2])
def test_a_lone_modality_only_goes_through_the_feed_forward_part(layers: int) -> None:
    fusion = build(layers=layers)
    image = tokens("image")
    assert torch.allclose(segment(fusion, {"image": image}, "image"), feed_forward_only(fusion, "image", image.x))


def test_a_row_with_an_empty_title_skips_attention_and_stays_finite() -> None:
    fusion = build()
    image, text = tokens("image"), tokens("text")
    assert not text.mask[-1].any()
    out = fusion({"image": image, "text": text})
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()
    fused_image = segment(fusion, {"image": image, "text": text}, "image")
    assert torch.allclose(fused_image[-1], feed_forward_only(fusion, "image", image.x)[-1], atol=1e-6)
    text_only = fusion({"text": text})
    assert torch.isfinite(text_only.pooled).all() and torch.isfinite(text_only.tokens).all()


def test_every_modality_attends_in_both_directions() -> None:
    fusion = build()
    inputs = {m: tokens(m) for m in MODALITIES}
    for changed in MODALITIES:
        perturbed = dict(inputs)
        perturbed[changed] = shaken(inputs[changed])
        for reader in MODALITIES:
            if reader != changed:
                before, after = segment(fusion, inputs, reader), segment(fusion, perturbed, reader)
                assert not torch.allclose(before[:2], after[:2]), f"{reader} did not read {changed}"


def test_pooled_depends_on_every_present_modality() -> None:
    fusion = build()
    inputs = {m: tokens(m) for m in MODALITIES}
    pooled = fusion(inputs).pooled
    for m in MODALITIES:
        perturbed = {**inputs, m: shaken(inputs[m])}
        assert not torch.allclose(fusion(perturbed).pooled[:2], pooled[:2]), m


def test_rejects_bad_sizes() -> None:
    with pytest.raises(UserError, match="layers >= 1"):
        FUSIONS.get("cross-attention")(DIM, ["image"], layers=0, heads=2)
    with pytest.raises(UserError, match="divisible by heads"):
        FUSIONS.get("cross-attention")(DIM, ["image"], heads=3)
