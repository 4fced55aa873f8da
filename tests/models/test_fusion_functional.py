"""The pure fusion helpers against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from mtl_bench.core.layers import key_padding_mask
from mtl_bench.core.options import reject_options
from mtl_bench.core.types import Tokens
from mtl_bench.errors import UserError
from mtl_bench.fusion import functional as F


def test_masked_mean_ignores_padding_and_gives_zeros_for_empty_rows() -> None:
    x = torch.tensor([[[1.0, 10.0], [3.0, 30.0], [100.0, 100.0]], [[5.0, 5.0], [6.0, 6.0], [7.0, 7.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert torch.equal(F.masked_mean(x, mask), torch.tensor([[2.0, 20.0], [0.0, 0.0]]))


def test_concat_tokens_joins_features_and_masks() -> None:
    a = Tokens(torch.zeros(2, 1, 3), torch.tensor([[True], [False]]))
    b = Tokens(torch.ones(2, 2, 3), torch.tensor([[True, False], [True, True]]))
    out = F.concat_tokens([a, b])
    assert out.x.shape == (2, 3, 3) and torch.equal(out.x[:, 1:], torch.ones(2, 2, 3))
    assert torch.equal(out.mask, torch.tensor([[True, True, False], [False, True, True]]))


def test_concat_with_zeros_keeps_a_slot_per_name() -> None:
    vectors = {"c": torch.tensor([[5.0]]), "a": torch.tensor([[1.0]])}
    assert torch.equal(F.concat_with_zeros(vectors, ["a", "b", "c"]), torch.tensor([[1.0, 0.0, 5.0]]))


def test_gated_sum_is_the_softmax_weighted_average() -> None:
    vectors = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    scores = torch.tensor([[0.0, torch.log(torch.tensor(3.0))]])  # weights 1/4 and 3/4
    assert torch.allclose(F.gated_sum(vectors, scores), torch.tensor([[0.25, 0.75]]))


def test_key_padding_mask_inverts_and_keeps_empty_rows_attendable() -> None:
    mask = torch.tensor([[True, True, False], [False, True, False], [False, False, False]])
    expected = torch.tensor([[False, False, True], [True, False, True], [False, True, True]])
    assert torch.equal(key_padding_mask(mask), expected)


def test_present_modalities_sorts_and_rejects_bad_sets() -> None:
    t = Tokens(torch.zeros(1, 1, 1), torch.ones(1, 1, dtype=torch.bool))
    assert F.present_modalities({"video": t, "image": t}, ["image", "text", "video"], "x") == ["image", "video"]
    with pytest.raises(UserError, match="no inputs"):
        F.present_modalities({}, ["image"], "x")
    with pytest.raises(UserError, match="built for modalities"):
        F.present_modalities({"audio": t}, ["image"], "x")


def test_reject_options_names_the_unknown_keys() -> None:
    reject_options("fusion 'x'", {})
    with pytest.raises(UserError, match="combin"):
        reject_options("fusion 'x'", {"combin": "gate"})


def test_cross_attention_by_hand_with_a_masked_key() -> None:
    # d = 4, so scores are q.k / 2. Query 0 is zero: equal scores, so half weight on each real key. Query 1 scores
    # key 0 at 0 and key 1 at 2 * ln 3 / 2 = ln 3: weights 1/4 and 3/4. Key 2 is padding (huge, to be noticed).
    q = torch.tensor([[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]])
    ln3 = float(torch.log(torch.tensor(3.0)))
    k = torch.tensor([[0.0, 0.0, 0.0, 0.0], [ln3, 0.0, 0.0, 0.0], [50.0, 9.0, 9.0, 9.0]])
    v = torch.tensor([[2.0, 0.0], [6.0, 4.0], [100.0, 100.0]])
    key_mask = torch.tensor([True, True, False])
    weights = F.attention_weights(q, k, key_mask)
    assert torch.allclose(weights, torch.tensor([[0.5, 0.5, 0.0], [0.25, 0.75, 0.0]]))
    assert torch.allclose(weights.sum(-1), torch.ones(2)) and torch.equal(weights[:, 2], torch.zeros(2))
    # Query 0: (2 + 6) / 2 = 4, (0 + 4) / 2 = 2. Query 1: 2/4 + 6 * 3/4 = 5, 4 * 3/4 = 3.
    assert torch.allclose(F.cross_attend(q, k, v, key_mask), torch.tensor([[4.0, 2.0], [5.0, 3.0]]))


def test_cross_attention_with_no_real_key_gives_zeros_and_finite_grads() -> None:
    q = torch.randn(2, 3, 4, requires_grad=True)
    k = torch.randn(2, 5, 4, requires_grad=True)
    v = torch.randn(2, 5, 4, requires_grad=True)
    key_mask = torch.tensor([[True, False, True, False, False], [False] * 5])
    out = F.cross_attend(q, k, v, key_mask)
    assert torch.equal(out[1], torch.zeros(3, 4)) and torch.isfinite(out).all()
    out.square().sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_cross_attention_matches_torch_scaled_dot_product_attention() -> None:
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 5)  # [B, H, N, d]
    key_mask = torch.rand(2, 1, 6) > 0.4
    key_mask[..., 0] = True  # torch's reference gives NaN for a row with no real key
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=key_mask.unsqueeze(-2))
    assert torch.allclose(F.cross_attend(q, k, v, key_mask), expected, atol=1e-6)
