"""Every registered fusion, with every non-empty modality subset: shapes, finite outputs and gradients."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from mtl_bench.core.types import MODALITIES
from mtl_bench.errors import UserError
from mtl_bench.fusion import FUSIONS

from .tiny import BATCH, DIM, assert_finite_grads, subsets, tokens

# Option sets worth covering per fusion; a fusion not listed is tested with its defaults.
OPTIONS: dict[str, list[dict[str, Any]]] = {
    "late": [{"combine": "concat"}, {"combine": "gate"}],
    "hierarchical": [{"combine": "concat"}, {"combine": "gate"}],
}
CASES = [(name, opts) for name in FUSIONS.names() for opts in OPTIONS.get(name, [{}])]


@pytest.mark.parametrize("name,opts", CASES, ids=[f"{n}-{o}" for n, o in CASES])
@pytest.mark.parametrize("present", subsets(), ids="+".join)
def test_fusion_runs_on_any_modality_subset(name: str, opts: dict[str, Any], present: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    fusion = FUSIONS.get(name)(DIM, list(MODALITIES), layers=1, heads=2, dropout=0.1, **opts)
    inputs = {m: tokens(m) for m in present}
    out = fusion(inputs)
    assert out.pooled.shape == (BATCH, DIM)
    assert out.tokens.shape[0] == BATCH and out.tokens.shape[2] == DIM
    assert out.mask.shape == out.tokens.shape[:2] and out.mask.dtype == torch.bool
    assert out.tokens.shape[1] >= sum(t.x.shape[1] for t in inputs.values())
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()
    (out.pooled.square().mean() + out.tokens.square().mean()).backward()
    assert_finite_grads(fusion, require_all=len(present) == len(MODALITIES))
    assert all(t.x.grad is not None and torch.isfinite(t.x.grad).all() for t in inputs.values())


@pytest.mark.parametrize("name", FUSIONS.names())
def test_fusion_output_ignores_padded_tokens(name: str) -> None:
    torch.manual_seed(0)
    fusion = FUSIONS.get(name)(DIM, list(MODALITIES), heads=2).eval()
    inputs = {m: tokens(m) for m in MODALITIES}
    changed = dict(inputs)
    text = inputs["text"]
    changed["text"] = text._replace(x=torch.where(text.mask.unsqueeze(-1), text.x, 1e3))
    assert torch.allclose(fusion(inputs).pooled, fusion(changed).pooled, atol=1e-5)


@pytest.mark.parametrize("name", FUSIONS.names())
def test_fusion_rejects_modalities_it_was_not_built_for(name: str) -> None:
    fusion = FUSIONS.get(name)(DIM, ["image"], heads=2)
    with pytest.raises(UserError, match="built for modalities"):
        fusion({"text": tokens("text")})


@pytest.mark.parametrize("name", FUSIONS.names())
def test_fusion_rejects_unknown_options(name: str) -> None:
    with pytest.raises(UserError, match="unknown options"):
        FUSIONS.get(name)(DIM, ["image"], heads=2, not_an_option=1)


def test_late_fusion_rejects_unknown_combine() -> None:
    with pytest.raises(UserError, match="combine='sum'"):
        FUSIONS.get("late")(DIM, ["image"], combine="sum")


def test_early_fusion_tokens_start_with_the_pooled_cls_token() -> None:
    fusion = FUSIONS.get("early")(DIM, ["image", "text"], heads=2).eval()
    out = fusion({"image": tokens("image"), "text": tokens("text")})
    assert torch.equal(out.pooled, out.tokens[:, 0]) and out.mask[:, 0].all()


# Outputs recorded before early.py and late.py were refactored to share their parts with hierarchical and
# cross-attention fusion (seed 0, all three modalities, eval mode): a refactor must not change them.
REFERENCE: dict[str, list[list[float]]] = {
    "early": [
        [-1.538108, 0.611076, 0.663457, -1.911628],
        [-1.336713, -0.247169, 1.003771, -2.340331],
        [-0.861355, -1.049374, -0.130462, -0.453066],
    ],
    "late-concat": [
        [0.405907, -1.084691, 0.068629, 0.594454],
        [-1.687936, -0.428824, 0.440794, 0.032195],
        [-1.260504, 0.469564, 1.239403, -1.852241],
    ],
    "late-gate": [
        [-1.259157, 0.848387, -0.552364, 0.754751],
        [0.180688, -1.259138, 0.261781, 0.567549],
        [0.048400, -0.913576, -0.713387, 0.700032],
    ],
}


@pytest.mark.parametrize("key", sorted(REFERENCE))
def test_fusion_output_matches_the_recorded_reference(key: str) -> None:
    name, _, combine = key.partition("-")
    torch.manual_seed(0)
    fusion = FUSIONS.get(name)(DIM, list(MODALITIES), heads=2, **({"combine": combine} if combine else {})).eval()
    inputs = {m: tokens(m) for m in MODALITIES}
    with torch.no_grad():
        pooled = fusion(inputs).pooled
    assert torch.allclose(pooled[:, :4], torch.tensor(REFERENCE[key]), atol=1e-5)
