"""Pure tensor helpers behind the fusion modules (and every attention mask in the model).

They hold no parameters, so they are unit-tested against hand-computed values and reused by encoders and heads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from mtl_bench.core.types import Tokens
from mtl_bench.errors import UserError


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over the real tokens of each row of ``x`` [B, N, D] -> [B, D]; a row with no real token gives zeros.

    >>> masked_mean(torch.tensor([[[1.0], [3.0], [9.0]]]), torch.tensor([[True, True, False]]))
    tensor([[2.]])
    """
    weight = mask.to(x.dtype).unsqueeze(-1)
    return (x * weight).sum(1) / weight.sum(1).clamp(min=1.0)


def concat_tokens(parts: Sequence[Tokens]) -> Tokens:
    """Join token sequences along the sequence axis (features and masks alike)."""
    return Tokens(torch.cat([p.x for p in parts], dim=1), torch.cat([p.mask for p in parts], dim=1))


def concat_with_zeros(vectors: Mapping[str, Tensor], names: Sequence[str]) -> Tensor:
    """Concatenate one [B, D] vector per name in ``names`` order, with zeros for names missing from ``vectors``.

    Gives a fixed-width input whatever subset of modalities a task supplies.

    >>> concat_with_zeros({"b": torch.tensor([[1.0, 2.0]])}, ["a", "b"])
    tensor([[0., 0., 1., 2.]])
    """
    like = next(iter(vectors.values()))
    return torch.cat([vectors[n] if n in vectors else torch.zeros_like(like) for n in names], dim=-1)


def gated_sum(vectors: Tensor, scores: Tensor) -> Tensor:
    """Softmax-weighted sum of ``vectors`` [B, M, D] with one score per vector ``scores`` [B, M] -> [B, D].

    >>> gated_sum(torch.tensor([[[2.0], [4.0]]]), torch.zeros(1, 2))
    tensor([[3.]])
    """
    return (scores.softmax(dim=-1).unsqueeze(-1) * vectors).sum(dim=1)


def attention_weights(q: Tensor, k: Tensor, key_mask: Tensor) -> Tensor:
    """Scaled dot-product attention weights of queries ``q`` [..., Nq, d] over keys ``k`` [..., Nk, d] -> [..., Nq, Nk].

    Scores ``e_ij = q_i . k_j / sqrt(d)`` are softmax-normalised over the real keys only (``key_mask`` [..., Nk],
    True = real, broadcast over the query axis), so padded keys get weight exactly 0. A row with no real key at all
    (an empty title) gets all-zero weights instead of the NaN a softmax over only -inf would give.

    >>> attention_weights(torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [2.0], [9.0]]),
    ...                   torch.tensor([True, True, False]))
    tensor([[0.5000, 0.5000, 0.0000],
            [0.1192, 0.8808, 0.0000]])
    """
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    real = key_mask.unsqueeze(-2)  # [..., 1, Nk]
    # A finite fill (not -inf) keeps all-padded rows finite; the product with ``real`` then zeroes them.
    scores = scores.masked_fill(~real, torch.finfo(scores.dtype).min)
    return scores.softmax(dim=-1) * real.to(scores.dtype)


def cross_attend(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor) -> Tensor:
    """Each query's weighted sum of the values ``v`` [..., Nk, dv] of the real keys -> [..., Nq, dv].

    Weights are :func:`attention_weights`; a query whose keys are all padding gets a zero vector.

    >>> cross_attend(torch.tensor([[0.0]]), torch.tensor([[0.0], [5.0]]), torch.tensor([[2.0], [4.0]]),
    ...              torch.tensor([True, True]))
    tensor([[3.]])
    """
    return attention_weights(q, k, key_mask) @ v


def present_modalities(inputs: Mapping[str, Tokens], modalities: Sequence[str], fusion: str) -> list[str]:
    """The sorted modality names of ``inputs``; an error naming the fusion when the set is empty or unknown."""
    names = sorted(inputs)
    if not names:
        raise UserError(f"fusion {fusion!r} got no inputs; a task must supply at least one of {sorted(modalities)}")
    unknown = [n for n in names if n not in modalities]
    if unknown:
        raise UserError(
            f"fusion {fusion!r} was built for modalities {sorted(modalities)} but got {unknown}; "
            "build the model with every modality the tasks use"
        )
    return names
