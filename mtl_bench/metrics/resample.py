"""A task's score on resampled test items: precompute once per (predictions, split), then score any item multiset.

A paired bootstrap (``results/paired.py``) draws N test items with replacement hundreds of times and needs every
seed's main score on each draw. ``TaskType.item_scorer(predictions, data)`` returns an :class:`ItemScorer` for that:

- ``per_item``: float64 per-item values whose mean over ANY multiset of items is the score on it (accuracy); the
  caller may then use the matrix-product fast path (``paired.replicate_means``); None for corpus metrics.
- ``score(indices)``: the score on the multiset ``indices`` (repeats allowed), i.e. what
  ``task.score_predictions(predictions[indices], data.take(indices))[metric]`` returns. That generic path rounds to
  float32 (``TaskType.scores``) and torchmetrics computes partly in float32; the scorers here compute in float64, so
  they agree with it to float32 rounding (relative 1e-6) and with float64 references (``cider_d``, torchmetrics'
  functionals under a float64 default dtype, hand formulas) to 1e-9 relative (tests/tasks/test_item_scorer.py).
- ``scores(index_matrix)``: ``score`` of every row of an [R, N] index matrix, vectorised where that pays.

A multiset enters the vectorised scorers as item counts (how often each item was drawn): a corpus metric that
treats a repeated item as two documents (CIDEr-D's document frequencies, AP's ranked list) is a function of them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

CHUNK = 64  # replicates per vectorised block: bounds the [chunk, N, ...] temporaries


def checked_indices(indices: np.ndarray, n_items: int, ndim: int) -> np.ndarray:
    """``indices`` as an int64 array of ``ndim`` dimensions with every value in [0, n_items) and rows non-empty."""
    idx = np.asarray(indices)
    if idx.ndim != ndim or idx.shape[-1] == 0 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise ValueError(f"item indices: expected a non-empty {ndim}-d integer array, got shape {idx.shape} "
                         f"of {idx.dtype}")
    if idx.min() < 0 or idx.max() >= n_items:
        raise ValueError(f"item indices: expected values in [0, {n_items}), got {idx.min()}..{idx.max()}")
    return idx.astype(np.int64, copy=False)


def item_counts(index_matrix: np.ndarray, n_items: int) -> np.ndarray:
    """counts[r, i] = how often item i occurs in row r of ``index_matrix`` [R, M] (float64, one ``bincount``).

    >>> item_counts(np.array([[0, 0, 2], [1, 2, 2]]), 3).tolist()
    [[2.0, 0.0, 1.0], [0.0, 1.0, 2.0]]
    """
    replicates = len(index_matrix)
    offsets = index_matrix + n_items * np.arange(replicates)[:, None]
    return np.bincount(offsets.ravel(), minlength=replicates * n_items).reshape(replicates, n_items).astype(float)


class ItemScorer:
    """One (predictions, split)'s score on item multisets.

    ``score`` and ``scores`` check the indices, then call ``_score`` (one row) or ``_scores`` (a matrix): a subclass
    overrides one of the two; by default ``_scores`` loops over ``_score`` and ``_score`` scores a one-row matrix.
    """

    n_items: int
    per_item: np.ndarray | None = None

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items

    def score(self, indices: np.ndarray) -> float:
        """The score on the item multiset ``indices`` (1-d, repeats allowed)."""
        return float(self._scores(checked_indices(indices, self.n_items, 1)[None])[0])

    def scores(self, index_matrix: np.ndarray) -> np.ndarray:
        """[R] scores of the R multisets in the rows of ``index_matrix`` [R, M]."""
        return self._scores(checked_indices(index_matrix, self.n_items, 2))

    def _scores(self, index_matrix: np.ndarray) -> np.ndarray:
        return np.array([self._score(row) for row in index_matrix], dtype=float)

    def _score(self, indices: np.ndarray) -> float:
        return float(self._scores(indices[None])[0])


class RecomputeScorer(ItemScorer):
    """The generic path: ``recompute(indices)`` re-runs the task's metric on the taken items (slow, always right)."""

    def __init__(self, recompute: Callable[[np.ndarray], float], n_items: int) -> None:
        super().__init__(n_items)
        self.recompute = recompute

    def _score(self, indices: np.ndarray) -> float:
        return float(self.recompute(indices))


class MeanScorer(ItemScorer):
    """A metric that is the mean of per-item values (accuracy, a query's recall): score = mean of ``per_item``.

    >>> MeanScorer(np.array([1.0, 0.0, 1.0])).score(np.array([0, 0, 1]))  # items 0, 0, 1: (1 + 1 + 0) / 3
    0.6666666666666666
    """

    def __init__(self, per_item: np.ndarray) -> None:
        super().__init__(len(per_item))
        self.per_item = np.asarray(per_item, dtype=float)

    def _scores(self, index_matrix: np.ndarray) -> np.ndarray:
        return item_counts(index_matrix, self.n_items) @ self.per_item / index_matrix.shape[1]


class MacroF1Scorer(ItemScorer):
    """Macro-F1 of single-label predictions as torchmetrics' ``MulticlassF1Score(average="macro")`` computes it:
    per class F1 = 2 tp / (2 tp + fp + fn) (0 when that is 0/0), averaged over the classes with tp + fp + fn > 0
    (a class neither present nor predicted in the multiset is left out; 0 if none is left).

    Per replicate the confusion counts are item counts times one-hot columns: three [R, N] @ [N, K] products.

    >>> scorer = MacroF1Scorer(np.array([0, 1, 1]), np.array([0, 1, 0]), 3)  # predicted, target, classes
    >>> scorer.score(np.array([0, 1, 2]))  # class 0: tp 1, fn 1; class 1: tp 1, fp 1 (F1 2/3 each); class 2 left out
    0.6666666666666666
    >>> scorer.score(np.array([0, 0, 1]))  # class 0: tp 2 (F1 1); class 1: tp 1 (F1 1)
    1.0
    """

    def __init__(self, predicted: np.ndarray, target: np.ndarray, n_classes: int) -> None:
        super().__init__(len(target))
        eye = np.eye(n_classes)
        self.predicted, self.actual = eye[np.asarray(predicted)], eye[np.asarray(target)]
        self.hits = self.predicted * self.actual

    def _scores(self, index_matrix: np.ndarray) -> np.ndarray:
        counts = item_counts(index_matrix, self.n_items)
        tp = counts @ self.hits
        denominator = counts @ self.predicted + counts @ self.actual  # 2 tp + fp + fn
        f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
        present = (denominator > 0).sum(1)
        return np.divide(f1.sum(1), present, out=np.zeros(len(f1)), where=present > 0)


class AveragePrecisionScorer(ItemScorer):
    """Macro mAP as torchmetrics' ``MultilabelAveragePrecision(average="macro")`` (exact, ``thresholds=None``).

    Per tag, items are ranked by score, equal scores forming one threshold (scikit-learn's step curve):
    AP = sum over thresholds of (R_t - R_{t-1}) P_t, i.e. sum over positive items of weight / P times the precision
    tp / (tp + fp) at the end of the item's tie group. A repeated item is that many tied entries. A tag without any
    positive in the multiset gets AP 0 and still counts in the mean over all tags (torchmetrics 1.x sets its recall
    to 1 and its precision is 0; it warns but does not drop it). Scores are used as given: torchmetrics applies a
    sigmoid only when some score lies outside [0, 1], so callers pass scores in [0, 1].
    """

    def __init__(self, scores: np.ndarray, target: np.ndarray) -> None:
        super().__init__(len(scores))
        scores = np.asarray(scores, dtype=float)
        self.order = np.argsort(-scores, axis=0, kind="stable")  # [N, K] items by descending score, per tag
        ranked = np.take_along_axis(scores, self.order, axis=0)
        self.positive = np.take_along_axis(np.asarray(target) == 1, self.order, axis=0)
        n = len(scores)
        last = np.vstack([ranked[1:] != ranked[:-1], np.ones((1, ranked.shape[1]), dtype=bool)])
        ends = np.where(last, np.arange(n)[:, None], n)
        self.group_end = np.minimum.accumulate(ends[::-1], axis=0)[::-1]  # [N, K] last rank of each item's ties

    def _scores(self, index_matrix: np.ndarray) -> np.ndarray:
        out = np.empty(len(index_matrix))
        for start in range(0, len(index_matrix), CHUNK):
            counts = item_counts(index_matrix[start : start + CHUNK], self.n_items)
            total = np.zeros(len(counts))
            for tag in range(self.order.shape[1]):
                weight = counts[:, self.order[:, tag]]
                hits = weight * self.positive[:, tag]
                end = self.group_end[:, tag]
                tp, seen = np.cumsum(hits, axis=1)[:, end], np.cumsum(weight, axis=1)[:, end]
                precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
                positives = hits.sum(1)
                total += np.divide((hits * precision).sum(1), positives, out=np.zeros(len(counts)),
                                   where=positives > 0)
            out[start : start + CHUNK] = total / self.order.shape[1]
        return out
