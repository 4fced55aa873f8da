"""``TaskType.item_scorer``: a task's score on resampled test items (``metrics/resample.py``), for every registered
type through the fixtures of ``test_task_type_contract`` (CASES), and the fast corpus paths against references.

- ``score(idx)`` equals the generic recomputation ``score_predictions(predictions[idx], data.take(idx))[metric]`` on
  random multisets with repeats, for every metric each type offers; the generic path is rounded to float32, so the
  tolerance there is float32's (relative 1e-6);
- ``per_item``, where given, has mean equal to ``score`` on every multiset; ``scores`` equals the loop of ``score``;
- CIDEr-D equals ``cider_d`` on the taken corpus, mAP equals torchmetrics' functional under a float64 default dtype,
  macro-F1 and retrieval figures equal float64 hand computations, all to 1e-9 relative.

No timing assertions: the timings are measured separately (the report of issue 16).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multilabel_average_precision

from mtl_bench.data.batches import TaskData
from mtl_bench.metrics.captioning import tokenised
from mtl_bench.metrics.cider import cider_d
from mtl_bench.metrics.cider_resample import CiderScorer
from mtl_bench.metrics.resample import AveragePrecisionScorer, MacroF1Scorer, RecomputeScorer
from mtl_bench.metrics.retrieval import RETRIEVAL_METRICS, retrieval_score
from mtl_bench.metrics.retrieval_resample import RetrievalScorer
from mtl_bench.tasks import TASK_TYPES
from mtl_bench.tasks.base import TaskType
from tests.tasks.test_task_type_contract import TYPES, Case, batch_of, build

GENERIC = {"rel": 1e-6, "abs": 1e-7}  # the generic path returns float32
EXACT = {"rel": 1e-9, "abs": 1e-12}


def multisets(n: int, seed: int, count: int = 6) -> Iterator[np.ndarray]:
    """Bootstrap draws of n items (repeats), plus a single item, a pair of one item twice, and a larger draw."""
    rng = np.random.default_rng(seed)
    yield from (rng.integers(0, n, n) for _ in range(count))
    yield np.array([n - 1])
    yield np.array([0, 0])
    yield rng.integers(0, n, n + 3)


def taken(predictions: Any, idx: np.ndarray) -> Any:
    return predictions[torch.as_tensor(idx)] if isinstance(predictions, torch.Tensor) else [predictions[i] for i in idx]


def prediction_sets(type_name: str, case: Case, task: TaskType, model: torch.nn.Module) -> dict[str, Any]:
    """The model's (random) predictions, the perfect ones, the trivial ones, and for captioning a partly right set
    (an untrained model's captions share no n-gram with the references)."""
    model.eval()
    with torch.no_grad():
        sets = {"model": task.predict(model, batch_of(case.test)), "perfect": case.perfect,
                "trivial": task.trivial_predictions(case.train, case.test)}
    if type_name == "captioning":
        refs = [r[0] for r in case.test.references]
        sets["partial"] = [refs[0], refs[2], refs[1] + " with a red strap", "a red shirt"]
    return sets


@pytest.mark.parametrize("type_name", TYPES)
def test_score_equals_the_generic_recomputation_on_multisets(type_name):
    directions = TASK_TYPES.get(type_name).metric_directions()
    case, task, model = build(type_name, metrics=sorted(directions))
    for name, predictions in prediction_sets(type_name, case, task, model).items():
        for metric in [None, *sorted(directions)]:
            scorer = task.item_scorer(predictions, case.test, metric)
            assert scorer.n_items == len(case.test)
            for idx in multisets(len(case.test), seed=len(name)):
                expected = task.score_predictions(taken(predictions, idx), case.test.take(idx))
                got = scorer.score(idx)
                assert got == pytest.approx(expected[metric or task.spec.main_score], **GENERIC), (name, metric, idx)


@pytest.mark.parametrize("type_name", TYPES)
def test_per_item_mean_is_the_score_and_scores_is_the_loop(type_name):
    directions = TASK_TYPES.get(type_name).metric_directions()
    case, task, model = build(type_name, metrics=sorted(directions))
    for predictions in prediction_sets(type_name, case, task, model).values():
        for metric in sorted(directions):
            scorer = task.item_scorer(predictions, case.test, metric)
            matrix = np.stack(list(multisets(len(case.test), seed=3, count=8))[:8])
            loop = np.array([scorer.score(row) for row in matrix])
            assert scorer.scores(matrix) == pytest.approx(loop, **EXACT)
            if scorer.per_item is not None:
                assert scorer.per_item.dtype == np.float64 and scorer.per_item.shape == (len(case.test),)
                assert scorer.per_item[matrix].mean(1) == pytest.approx(loop, **EXACT)


def test_main_scores_of_the_built_in_types_take_a_fast_path():
    """Each type's main score has its own scorer (the generic one re-runs torchmetrics); accuracy is a mean."""
    kinds = {}
    for type_name in TYPES:
        case, task, model = build(type_name)
        scorer = task.item_scorer(prediction_sets(type_name, case, task, model)["model"], case.test)
        kinds[task.spec.main_score] = (type(scorer).__name__, scorer.per_item is not None)
    assert kinds == {"accuracy": ("MeanScorer", True), "cider": ("CiderScorer", False),
                     "map": ("AveragePrecisionScorer", False), "mean_recall": ("RetrievalScorer", False)}


def test_bad_indices_and_unknown_metrics_are_one_line_errors():
    case, task, _ = build("classification")
    with pytest.raises(ValueError, match="metric 'bleu4' is not one of accuracy, macro_f1"):
        task.item_scorer(case.perfect, case.test, "bleu4")
    scorer = task.item_scorer(case.perfect, case.test)
    with pytest.raises(ValueError, match=r"values in \[0, 5\), got 0..5"):
        scorer.score(np.array([0, 5]))
    with pytest.raises(ValueError, match="non-empty 2-d integer array"):
        scorer.scores(np.array([1, 2]))


# --- CIDEr-D against cider_d on the taken corpus ----------------------------------------------------------------

WORDS = "a the red blue green dress shirt bag with on white stripes grey background small leather".split()


def random_captions(rng: np.random.Generator, n: int) -> tuple[list[str], list[list[str]]]:
    """Captions of 1-9 words from a small vocabulary (so n-grams recur), 1-3 references per item, some references
    equal to their prediction and some items sharing a reference."""
    def sentence() -> str:
        return " ".join(rng.choice(WORDS, rng.integers(1, 10)))

    refs = [[sentence() for _ in range(rng.integers(1, 4))] for _ in range(n)]
    preds = [refs[i][0] if i % 4 == 0 else sentence() for i in range(n)]
    refs[1].append(refs[0][0])
    return preds, refs


@pytest.mark.parametrize("n_order,sigma", [(4, 6.0), (2, 3.0), (1, 6.0)])
def test_cider_scorer_equals_cider_d_on_multisets_with_repeats(n_order, sigma):
    rng = np.random.default_rng(n_order)
    preds, refs = random_captions(rng, 30)
    scorer = CiderScorer(preds, refs, n_order, sigma)
    matrix = np.stack(list(multisets(30, seed=1, count=10))[:10])
    for idx in [*matrix, np.array([4]), np.array([7, 7, 7]), np.arange(30)]:
        expected = cider_d([preds[i] for i in idx], [refs[i] for i in idx], n_order, sigma)
        assert scorer.score(idx) == pytest.approx(expected, **EXACT), idx
    assert scorer.scores(matrix) == pytest.approx([scorer.score(r) for r in matrix], **EXACT)


def test_captioning_item_scorer_equals_cider_d_of_the_tokenised_taken_corpus():
    case, task, _ = build("captioning")
    rng = np.random.default_rng(0)
    preds, refs = random_captions(rng, 12)
    preds = [p.upper() + "!" for p in preds]  # the metric's tokenisation lower-cases and splits punctuation off
    data = TaskData({}, torch.zeros(12, 2, dtype=torch.long), refs)
    scorer = task.item_scorer(preds, data)
    for idx in multisets(12, seed=5):
        expected = cider_d(*tokenised([preds[i] for i in idx], [refs[i] for i in idx]))
        assert scorer.score(idx) == pytest.approx(expected, **EXACT)


# --- mAP against torchmetrics in float64 ------------------------------------------------------------------------

@pytest.fixture
def float64_default():
    """torchmetrics divides integer tp / fp counts in the default dtype: float64 makes it a float64 reference."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def test_average_precision_scorer_equals_torchmetrics_with_ties_and_tags_without_positives(float64_default):
    rng = np.random.default_rng(2)
    n, k = 40, 5
    scores = np.round(rng.random((n, k)), 1)  # a 0.1 grid: many ties
    target = (rng.random((n, k)) < 0.3).astype(int)
    target[:, 4] = 0
    target[3, 4] = 1  # tag 4: one positive item, absent from most multisets (AP 0, still in the mean)
    scorer = AveragePrecisionScorer(scores, target)
    matrix = np.stack(list(multisets(n, seed=4, count=12))[:12])
    assert any(3 not in row for row in matrix) and any(3 in row for row in matrix)  # tag 4 with and without
    for idx in [*matrix, np.array([0, 0, 1]), np.array([3])]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchmetrics warns about tags without positives
            expected = multilabel_average_precision(torch.tensor(scores[idx]), torch.tensor(target[idx]), k,
                                                    average="macro", thresholds=None)
        assert expected.dtype == torch.float64
        assert scorer.score(idx) == pytest.approx(float(expected), **EXACT), idx
    assert scorer.scores(matrix) == pytest.approx([scorer.score(r) for r in matrix], **EXACT)


def test_average_precision_by_hand():
    """Tag 0 ranks items 0 (pos), 1 (neg), 2 (pos): AP = 1/2 * 1 + 1/2 * 2/3. With item 2 twice, ranked list
    pos, neg, pos, pos and a tie group of 2: AP = 1/3 * 1 + 2/3 * 3/4 = 5/6."""
    scorer = AveragePrecisionScorer(np.array([[0.9], [0.5], [0.2]]), np.array([[1], [0], [1]]))
    assert scorer.score(np.array([0, 1, 2])) == pytest.approx(0.5 + 1 / 3, **EXACT)
    assert scorer.score(np.array([0, 1, 2, 2])) == pytest.approx(5 / 6, **EXACT)
    assert scorer.score(np.array([1, 1])) == 0.0  # no positive: AP 0


# --- macro-F1 and retrieval against float64 hand computations ---------------------------------------------------

def macro_f1_by_hand(predicted: list[int], target: list[int]) -> float:
    values = []
    for c in set(predicted) | set(target):
        tp = sum(p == t == c for p, t in zip(predicted, target, strict=True))
        fp, fn = predicted.count(c) - tp, target.count(c) - tp
        values.append(2 * tp / (2 * tp + fp + fn))
    return sum(values) / len(values)


def test_macro_f1_scorer_equals_the_hand_formula():
    rng = np.random.default_rng(6)
    predicted, target = rng.integers(0, 5, 50), rng.integers(0, 5, 50)
    target[target == 4] = 3  # class 4 is only ever predicted: F1 0, counted
    scorer = MacroF1Scorer(predicted, target, 6)  # class 5 never occurs: left out
    for idx in multisets(50, seed=7):
        assert scorer.score(idx) == pytest.approx(macro_f1_by_hand(predicted[idx].tolist(), target[idx].tolist()),
                                                  **EXACT)


def ranks_by_hand(queries: np.ndarray, candidates: np.ndarray) -> list[int]:
    """1 + how many other candidates have a strictly larger cosine than the query's own (no ties in these data)."""
    sim = [[float(q @ c) / math.sqrt(float(q @ q) * float(c @ c)) for c in candidates] for q in queries]
    return [1 + sum(s > row[i] for j, s in enumerate(row) if j != i) for i, row in enumerate(sim)]


def retrieval_by_hand(text: np.ndarray, item: np.ndarray, metric: str) -> float:
    ranks = {"t2i": ranks_by_hand(text, item), "i2t": ranks_by_hand(item, text)}
    if metric == "mean_recall":
        return float(np.mean([retrieval_by_hand(text, item, f"{d}_r{k}") for d in ranks for k in (1, 5, 10)]))
    direction, measure = metric.split("_")
    values = [1 / r if measure == "mrr" else float(r <= int(measure[1:])) for r in ranks[direction]]
    return sum(values) / len(values)


@pytest.mark.parametrize("metric", RETRIEVAL_METRICS)
def test_retrieval_scorer_equals_the_hand_ranking_on_the_distinct_items(metric):
    rng = np.random.default_rng(8)
    n = 24
    text = rng.normal(size=(n, 4))
    item = text + rng.normal(scale=0.8, size=(n, 4))
    scorer = RetrievalScorer(torch.tensor(text, dtype=torch.float32), torch.tensor(item, dtype=torch.float32),
                             metric, generic=None)
    text32, item32 = (torch.tensor(x, dtype=torch.float32).double().numpy() for x in (text, item))
    for idx in multisets(n, seed=9):
        unique = np.unique(idx)
        assert scorer.score(idx) == pytest.approx(retrieval_by_hand(text32[unique], item32[unique], metric), **EXACT)


def test_retrieval_ties_that_decide_a_figure_take_the_generic_path():
    """Two identical texts (a repeated caption): for their items, i2t R@1 depends on how torchmetrics orders the
    tie, so those replicates are recomputed generically; the others never call it."""
    rng = np.random.default_rng(10)
    text = torch.tensor(rng.normal(size=(12, 4)), dtype=torch.float32)
    text[5] = text[4]
    item = text + 0.05 * torch.tensor(rng.normal(size=(12, 4)), dtype=torch.float32)
    ids = torch.arange(12)
    calls = []

    def generic(idx: np.ndarray) -> float:
        calls.append(idx)
        unique = torch.as_tensor(np.unique(idx))
        return float(retrieval_score(text[unique], item[unique], ids[unique], "i2t_r1"))

    scorer = RetrievalScorer(text, item, "i2t_r1", generic)
    with_both, without = np.array([4, 5, 0, 1, 1]), np.array([0, 1, 2, 4, 4])
    assert scorer.score(with_both) == generic(with_both) and len(calls) == 2
    expected = float(retrieval_score(text[[0, 1, 2, 4]], item[[0, 1, 2, 4]], ids[[0, 1, 2, 4]], "i2t_r1"))
    assert scorer.score(without) == pytest.approx(expected, **GENERIC) and len(calls) == 2


def test_the_default_is_the_literal_recomputation():
    case, task, _ = build("captioning")
    scorer = TaskType.item_scorer(task, case.perfect, case.test, "bleu4")
    assert isinstance(scorer, RecomputeScorer) and scorer.per_item is None
    idx = np.array([0, 0, 3])
    assert scorer.score(idx) == task.score_predictions(taken(case.perfect, idx), case.test.take(idx))["bleu4"]
