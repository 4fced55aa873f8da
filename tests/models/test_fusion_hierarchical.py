"""Hierarchical fusion: a joint (early) transformer below, a late combiner of per-modality summaries on top."""

from __future__ import annotations

import pytest
import torch

from mtl_bench.core.types import Tokens
from mtl_bench.errors import UserError
from mtl_bench.fusion import FUSIONS
from mtl_bench.fusion.hierarchical import HierarchicalFusion

from .tiny import subsets, tokens


def build(combine: str) -> HierarchicalFusion:
    torch.manual_seed(0)
    fusion = FUSIONS.get("hierarchical")(16, ["image", "text", "video"], layers=1, heads=2, combine=combine)
    assert isinstance(fusion, HierarchicalFusion)
    return fusion.eval()


def shaken(t: Tokens) -> Tokens:
    """``t`` with new random real tokens (not a constant shift, which the LayerNorms would remove)."""
    return t._replace(x=torch.where(t.mask.unsqueeze(-1), torch.randn_like(t.x), t.x))


@pytest.mark.parametrize("combine", ["concat", "gate"])
@pytest.mark.parametrize("present", subsets(), ids="+".join)
def test_pooled_depends_on_every_present_modality(combine: str, present: tuple[str, ...]) -> None:
    fusion = build(combine)
    inputs = {m: tokens(m) for m in present}
    pooled = fusion(inputs).pooled
    assert torch.isfinite(pooled).all()
    for m in present:
        changed = fusion({**inputs, m: shaken(inputs[m])}).pooled
        assert not torch.allclose(changed[:2], pooled[:2]), f"pooled ignores {m} given {present}"


@pytest.mark.parametrize("combine", ["concat", "gate"])
def test_tokens_are_the_joint_early_fusion_sequence(combine: str) -> None:
    fusion = build(combine)
    inputs = {m: tokens(m) for m in ["image", "text"]}
    out, early = fusion(inputs), fusion.early(inputs)
    assert torch.equal(out.tokens, early.tokens) and torch.equal(out.mask, early.mask)
    assert not torch.allclose(out.pooled, early.pooled)  # the late combiner, not the [CLS] token


def test_rejects_bad_options_naming_hierarchical() -> None:
    with pytest.raises(UserError, match="'hierarchical' option combine='sum'"):
        FUSIONS.get("hierarchical")(16, ["image"], heads=2, combine="sum")
    with pytest.raises(UserError, match="'hierarchical' needs layers >= 1"):
        FUSIONS.get("hierarchical")(16, ["image"], layers=0, heads=2)
