"""CIDEr-D against coco-caption's reference implementation, and the captioning metric collection."""

import math
import multiprocessing
import random
from collections.abc import Sequence

import pytest
import torch

from mtl_bench.metrics.captioning import ROUGEL, caption_metrics
from mtl_bench.metrics.cider import CIDErD, cider_d, cider_d_scores, ngram_counts

from .two_ranks import on_two_ranks

Cider = pytest.importorskip("pycocoevalcap.cider.cider").Cider

HAND_PREDS = [
    "a man riding a horse on a beach",
    "two dogs playing in the snow",
    "a plate of food with broccoli",
    "a red bus parked on the street",
]
HAND_TARGET = [
    ["a man rides a horse along the beach", "a person on a horse at the seaside", "man riding a brown horse"],
    ["two dogs play in the snow", "a pair of dogs running through snow"],
    ["a plate with broccoli and meat", "food on a white plate", "a plate of broccoli", "dinner with vegetables"],
    ["a red double decker bus on a street", "a bus parked by the side of the road"],
]


def reference(preds: Sequence[str], target: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
    """Corpus and per-item CIDEr-D from pycocoevalcap (dicts keyed by item index, one candidate each)."""
    gts = {i: list(refs) for i, refs in enumerate(target)}
    res = {i: [pred] for i, pred in enumerate(preds)}
    score, scores = Cider().compute_score(gts, res)
    return float(score), [float(s) for s in scores]


def random_corpus(seed: int, size: int = 200) -> tuple[list[str], list[list[str]]]:
    """Captions of 1-12 words over a small vocabulary, so n-grams repeat and idf varies; 1-5 refs per item."""
    rng = random.Random(seed)
    vocab = "a the man woman dog cat on in with red blue sits runs table street grass ball".split()

    def caption() -> str:
        return " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 12)))

    preds = [caption() for _ in range(size)]
    target = [[caption() for _ in range(rng.randint(1, 5))] for _ in range(size)]
    return preds, target


def metric_score(preds: Sequence[str], target: Sequence[Sequence[str]], batch_size: int) -> float:
    metric = CIDErD()
    for start in range(0, len(preds), batch_size):
        metric.update(preds[start : start + batch_size], target[start : start + batch_size])
    return metric.compute().item()


def test_ngram_counts_cover_orders_one_to_n() -> None:
    counts = ngram_counts("a b a b", n=4)
    assert counts[("a",)] == 2 and counts[("a", "b")] == 2 and counts[("b", "a")] == 1
    assert counts[("a", "b", "a", "b")] == 1
    assert sum(counts.values()) == 4 + 3 + 2 + 1


def test_hand_corpus_matches_reference() -> None:
    ref_score, ref_scores = reference(HAND_PREDS, HAND_TARGET)
    assert cider_d_scores(HAND_PREDS, HAND_TARGET) == pytest.approx(ref_scores, rel=1e-6)
    assert cider_d(HAND_PREDS, HAND_TARGET) == pytest.approx(ref_score, rel=1e-6)
    assert metric_score(HAND_PREDS, HAND_TARGET, batch_size=len(HAND_PREDS)) == pytest.approx(ref_score, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_corpus_matches_reference(seed: int) -> None:
    preds, target = random_corpus(seed)
    ref_score, ref_scores = reference(preds, target)
    assert ref_score > 0
    assert cider_d_scores(preds, target) == pytest.approx(ref_scores, rel=1e-6, abs=1e-12)
    assert metric_score(preds, target, batch_size=len(preds)) == pytest.approx(ref_score, rel=1e-6)


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_batched_updates_accumulate_to_corpus_score(batch_size: int) -> None:
    # The idf depends on the whole corpus, so batches must be pooled, not averaged.
    preds, target = random_corpus(seed=3, size=100)
    assert metric_score(preds, target, batch_size) == pytest.approx(reference(preds, target)[0], rel=1e-6)


def test_empty_prediction_scores_zero_like_reference() -> None:
    preds = ["", *HAND_PREDS[1:]]
    ref_score, ref_scores = reference(preds, HAND_TARGET)
    scores = cider_d_scores(preds, HAND_TARGET)
    assert scores[0] == 0.0 == ref_scores[0]
    assert scores == pytest.approx(ref_scores, rel=1e-6)
    assert metric_score(preds, HAND_TARGET, batch_size=2) == pytest.approx(ref_score, rel=1e-6)


def test_identical_prediction_and_reference() -> None:
    # Each item's single reference equals its prediction: cosine 1 at every order, no length penalty -> 10.
    preds = ["a cat on a mat", "a dog in the park", "two birds on a wire"]
    target = [[p] for p in preds]
    ref_score, _ = reference(preds, target)
    assert cider_d(preds, target) == pytest.approx(ref_score, rel=1e-6)
    assert cider_d(preds, target) == pytest.approx(10.0, rel=1e-6)


def test_single_item_corpus_scores_zero() -> None:
    # With one item every idf is log(1) - log(1) = 0, in the reference as here.
    assert cider_d(["a cat"], [["a cat"]]) == 0.0 == reference(["a cat"], [["a cat"]])[0]


def test_metric_contract() -> None:
    metric = CIDErD()
    assert CIDErD.higher_is_better is True and CIDErD.full_state_update is False
    metric.update(HAND_PREDS, HAND_TARGET)
    value = metric.compute()
    assert isinstance(value, torch.Tensor) and value.ndim == 0 and value.is_floating_point()
    metric.reset()
    assert metric.compute().item() == 0.0  # empty corpus after reset


def test_non_ascii_text_round_trips_through_byte_states() -> None:
    preds = ["un café au lait", "ein großer hund", "a cat"]
    target = [["un café noir", "café au lait"], ["ein großer hund läuft"], ["a small cat", "a cat"]]
    assert metric_score(preds, target, batch_size=2) == pytest.approx(reference(preds, target)[0], rel=1e-6)


def test_bad_inputs_raise_actionable_errors() -> None:
    with pytest.raises(ValueError, match="2 predictions but 1"):
        CIDErD().update(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="item 1 has none"):
        CIDErD().update(["a", "b"], [["a"], []])
    with pytest.raises(ValueError, match="list of lists"):
        CIDErD().update(["a"], ["a"])
    with pytest.raises(ValueError, match="sigma"):
        CIDErD(sigma=0.0)


def _distributed_worker(rank: int, init_file: str, split: int, results: "multiprocessing.Queue[float]") -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        preds, target = random_corpus(seed=5, size=60)
        metric = CIDErD()
        # Uneven shards with several updates per rank, so byte and length tensors differ in size across ranks;
        # split=60 leaves rank 1 without any update.
        shard = slice(0, split) if rank == 0 else slice(split, 60)
        shard_preds, shard_target = preds[shard], target[shard]
        for start in range(0, len(shard_preds), 10):
            metric.update(shard_preds[start : start + 10], shard_target[start : start + 10])
        results.put(metric.compute().item())
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize("split", [25, 60], ids=["uneven", "empty-rank"])
def test_states_sync_across_processes(tmp_path, split: int) -> None:
    got = on_two_ranks(_distributed_worker, tmp_path, split)
    preds, target = random_corpus(seed=5, size=60)
    expected = reference(preds, target)[0]
    assert got == pytest.approx([expected, expected], rel=1e-6)


def test_caption_metrics_keys_and_perfect_match() -> None:
    metrics = caption_metrics()
    names = {"bleu4", "bleu4_coco", "rougeL", "rougeL_coco", "cider"}
    assert set(metrics.keys()) == names
    preds = ["a man riding a horse on a beach", "two dogs playing in the snow"]
    metrics.update(preds, [[p, "something else entirely"] for p in preds])
    values = metrics.compute()
    assert set(values) == names
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in values.values())
    for name in ("bleu4", "bleu4_coco", "rougeL", "rougeL_coco"):
        assert values[name].item() == pytest.approx(1.0), name
    assert values["cider"].item() > 0


def test_caption_metrics_hand_checked_values() -> None:
    # pred: "the cat sat on the mat"; refs: "the cat sat on a mat", "there is a cat on the mat".
    # BLEU clipped precisions: 1-grams 5/6 ("the" clipped to 1), 2-grams 5/5, 3-grams 3/4, 4-grams 1/3; the closest
    # reference length is 6, so no brevity penalty. ROUGE-L: LCS with ref 1 is 5 words -> P = R = F = 5/6 (best ref).
    metrics = caption_metrics()
    metrics.update(["the cat sat on the mat"], [["the cat sat on a mat", "there is a cat on the mat"]])
    values = metrics.compute()
    assert values["bleu4"].item() == pytest.approx((5 / 6 * 1 * 3 / 4 * 1 / 3) ** 0.25, rel=1e-5)
    assert values["rougeL"].item() == pytest.approx(5 / 6, rel=1e-5)
    assert values["cider"].item() == 0.0  # one-item corpus: every idf is zero, as in coco-caption


def test_rouge_l_is_a_single_float_without_nltk() -> None:
    metric = ROUGEL()
    metric.update(["the cat sat"], [["the cat ran"]])  # LCS 2 of 3 words each way
    value = metric.compute()
    assert isinstance(value, torch.Tensor) and value.ndim == 0
    assert value.item() == pytest.approx(2 / 3, rel=1e-5)
    assert not math.isnan(value.item())
