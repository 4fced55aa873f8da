"""Every registered head: builds, runs forward/backward with finite gradients; caption decoding contracts."""

from __future__ import annotations

import inspect
import itertools

import pytest
import torch

from mtl_bench.core.types import Fused
from mtl_bench.errors import UserError
from mtl_bench.heads import HEADS
from mtl_bench.heads.caption import CaptionDecoder

from .tiny import BATCH, DIM, TINY, VOCAB, assert_finite_grads, build_tiny

PAD, BOS, EOS = 0, 1, 2


def fused(batch: int = BATCH, length: int = 5, empty_rows: int = 0) -> Fused:
    """Random fused features; the last ``empty_rows`` rows have no real memory token at all."""
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, 3:] = False
    if empty_rows:
        mask[-empty_rows:] = False
    return Fused(torch.randn(batch, DIM, requires_grad=True), torch.randn(batch, length, DIM, requires_grad=True), mask)


def caption_ids(batch: int = BATCH, length: int = 6) -> torch.Tensor:
    ids = torch.randint(3, VOCAB, (batch, length))
    ids[:, 0] = BOS
    ids[0, 3], ids[0, 4:] = EOS, PAD
    return ids


def head_kwargs(head: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Extra forward inputs a head names (teacher-forcing ids for a decoder)."""
    return {"ids": caption_ids()} if "ids" in inspect.signature(head.forward).parameters else {}


@pytest.mark.parametrize("name", HEADS.names())
@pytest.mark.parametrize("empty_rows", [0, 1])
def test_head_runs_forward_backward(name: str, empty_rows: int) -> None:
    torch.manual_seed(0)
    head = build_tiny(HEADS.get(name))
    f = fused(empty_rows=empty_rows)
    out = head(f, **head_kwargs(head))
    assert out.shape[0] == BATCH and torch.isfinite(out).all()
    loss = out.square().mean()
    if hasattr(head, "logit_scale"):  # a contrastive head's temperature is used by its task's loss, not forward
        loss = loss + head.logit_scale()
    loss.backward()
    assert_finite_grads(head, require_all=True)
    assert f.pooled.grad is not None and torch.isfinite(f.pooled.grad).all()


def test_classifier_and_tagger_shapes() -> None:
    assert build_tiny(HEADS.get("classifier"))(fused()).shape == (BATCH, TINY["num_classes"])
    assert build_tiny(HEADS.get("tagger"))(fused()).shape == (BATCH, TINY["num_tags"])


def test_caption_forward_is_causal_and_shaped() -> None:
    torch.manual_seed(0)
    head = build_tiny(CaptionDecoder).eval()
    f, ids = fused(), caption_ids()
    logits = head(f, ids)
    assert logits.shape == (BATCH, ids.shape[1], VOCAB)
    changed = ids.clone()
    changed[:, -1] = 3 + (ids[:, -1] - 2) % (VOCAB - 3)  # a different last token changes nothing before it
    assert torch.allclose(head(f, changed)[:, :-1], logits[:, :-1], atol=1e-5)
    with pytest.raises(UserError, match="max_len=8"):
        head(f, torch.ones(1, 9, dtype=torch.long))


def check_decoded(out: torch.Tensor) -> None:
    """No bos; after the first eos only pad."""
    for row in out.tolist():
        if EOS in row:
            assert all(t == PAD for t in row[row.index(EOS) + 1 :])


@pytest.mark.parametrize("seed", range(3))
def test_greedy_generate_equals_argmax_of_teacher_forcing(seed: int) -> None:
    torch.manual_seed(seed)
    head = build_tiny(CaptionDecoder, vocab_size=6, max_len=8).eval()  # a small vocabulary makes eos likely
    f = fused(batch=8, empty_rows=1)
    out = head.generate(f)
    assert out.shape[0] == 8 and 1 <= out.shape[1] <= 7
    check_decoded(out)
    prefix = torch.cat([torch.full((8, 1), BOS), out[:, :-1]], dim=1)
    expected = head(f, prefix).argmax(-1)
    finished = torch.zeros(8, dtype=torch.bool)
    for step in range(out.shape[1]):  # before a row's eos the tokens are the argmax; after it, pad
        assert torch.equal(out[~finished, step], expected[~finished, step])
        finished |= out[:, step] == EOS
    assert finished.all() or out.shape[1] == 7


def test_generate_stops_early_and_respects_max_len() -> None:
    torch.manual_seed(0)
    head = build_tiny(CaptionDecoder, vocab_size=6).eval()
    with torch.no_grad():  # make eos the overwhelming choice
        head.out.weight[EOS] += 10.0
        head.decoder.norm.bias.fill_(1.0)
    assert head.generate(fused()).shape[1] == 1
    assert build_tiny(CaptionDecoder).generate(fused(), max_len=3).shape[1] <= 3
    with pytest.raises(UserError, match="max_len"):
        head.generate(fused(), max_len=9)


def test_beam_size_one_is_greedy() -> None:
    torch.manual_seed(0)
    head = build_tiny(CaptionDecoder).eval()
    f = fused()
    assert torch.equal(head.generate(f), head.generate(f, beam_size=1))
    beams = head.generate(f, beam_size=3)
    assert beams.shape[0] == BATCH
    check_decoded(beams)


def test_wide_beam_finds_the_most_likely_caption() -> None:
    """With a beam wider than every candidate set, beam search is exhaustive: compare with brute force."""
    torch.manual_seed(0)
    vocab, steps = 5, 3
    head = build_tiny(CaptionDecoder, vocab_size=vocab, max_len=steps).eval()
    f = fused(batch=2)
    out = head.generate(f, max_len=steps, beam_size=100)
    words = [t for t in range(vocab) if t != EOS]
    candidates = (
        [(EOS,)]
        + [(w, EOS) for w in words]
        + [(a, b, c) for a, b in itertools.product(words, words) for c in range(vocab)]
    )
    for row in range(2):
        sample = Fused(*(t[row : row + 1] for t in f))

        def log_prob(seq: tuple[int, ...], sample: Fused = sample) -> float:
            ids = torch.tensor([(BOS, *seq[:-1])])
            logp = head(sample, ids).log_softmax(-1)[0]
            return float(logp[torch.arange(len(seq)), torch.tensor(seq)].sum())

        best = max(candidates, key=log_prob)
        got = tuple(t for t in out[row].tolist())
        assert got[: len(best)] == best and all(t == PAD for t in got[len(best) :])
