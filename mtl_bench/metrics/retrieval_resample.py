"""Retrieval figures on resampled items, exactly as the split's metric computes them, from one similarity matrix.

What a multiset means here. ``RetrievalScore`` keeps the first row of every sample id (``unique_samples``), so
``score_predictions(predictions[idx], data.take(idx))`` scores the SET of distinct drawn items: each is a query once,
and the gallery is those distinct items only (a bootstrap draw of N items leaves about 0.63 N of them). That is what
``RetrievalScorer.score`` equals. It has no per-item decomposition (a query's rank depends on which other items are
in the gallery), so ``per_item`` is None. The usual IR significance-testing convention (queries resampled with their
repeats, the whole test gallery fixed) is a different statistic; it is not what the generic path computes.

How. With S the [N, N] cosine similarities (float64, as ``metrics/retrieval.ranking_inputs``), query q's rank in a
gallery U is 1 + #{j in U, j != q: S[q, j] > S[q, q]}: for R replicates, one [R, N] @ [N, N] product of membership
masks with the "beats q" matrix. Candidates within ``TIE`` of the query's own score are ties, which torchmetrics
orders by its sort's internals; a replicate where a tie could change the figure (a tie straddling a cut-off k, or any
tie for MRR) is handed to the exact generic recomputation instead, so the result is always the generic one (in
those replicates rounded to float32, as the generic path returns it). The fallback costs what the generic path does
(~0.2-0.4 s per 500-item replicate): predictions with many identical text embeddings (repeated captions) make it
slow; torch's sort is not stable for such ties (checked on torch 2.13), so no fixed tie rule reproduces it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from mtl_bench.metrics.resample import CHUNK, ItemScorer, item_counts
from mtl_bench.metrics.retrieval import DIRECTIONS, MEAN_RECALL, RECALLS, RETRIEVAL_METRICS

TIE = 1e-12  # |S[q, j] - S[q, q]| at or below this is a tie (matmul rounding is ~1e-16 on values in [-1, 1])


class RetrievalScorer(ItemScorer):
    """One of ``RETRIEVAL_METRICS`` on the distinct items of each multiset, the gallery restricted to them.

    ``generic(indices)`` is the slow exact recomputation, used for replicates with a deciding tie.

    >>> import torch
    >>> text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> item = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])  # texts 0 and 1 face the other's item
    >>> scorer = RetrievalScorer(text, item, "t2i_r1", generic=None)
    >>> scorer.score(np.array([0, 1, 2]))  # only text 2 ranks its own item first
    0.3333333333333333
    >>> scorer.score(np.array([0, 0, 2]))  # items {0, 2}: text 0 prefers item 2 (0.71 > 0), text 2 its own
    0.5
    """

    def __init__(self, text: Tensor, item: Tensor, metric: str,
                 generic: Callable[[np.ndarray], float] | None) -> None:
        super().__init__(len(text))
        if metric not in RETRIEVAL_METRICS:
            raise ValueError(f"unknown retrieval metric {metric!r}; expected one of {', '.join(RETRIEVAL_METRICS)}")
        self.parts = RECALLS if metric == MEAN_RECALL else (metric,)
        self.generic = generic
        sim = (F.normalize(text.double(), dim=-1) @ F.normalize(item.double(), dim=-1).T).numpy()
        off_diagonal = ~np.eye(len(sim), dtype=bool)
        self.beats, self.ties = {}, {}
        for direction, scores in zip(DIRECTIONS, (sim, sim.T), strict=True):
            own = np.diag(scores)[:, None]
            # float32 0/1 matrices: the products count at most N candidates, exact in float32
            self.beats[direction] = ((scores > own + TIE) & off_diagonal).astype(np.float32)
            self.ties[direction] = ((np.abs(scores - own) <= TIE) & off_diagonal).astype(np.float32)

    def _scores(self, index_matrix: np.ndarray) -> np.ndarray:
        out = np.empty(len(index_matrix))
        for start in range(0, len(index_matrix), CHUNK):
            rows = index_matrix[start : start + CHUNK]
            values, unsure = self._block((item_counts(rows, self.n_items) > 0).astype(np.float32))
            for r in np.flatnonzero(unsure):
                if self.generic is None:
                    raise ValueError(f"replicate {start + r}: a tie decides the retrieval figure and no generic "
                                     "recomputation was given")
                values[r] = self.generic(rows[r])
            out[start : start + CHUNK] = values
        return out

    def _block(self, member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(figure, whether a tie could change it) for each row of the membership mask [R, N]."""
        size = member.sum(1, dtype=float)
        total, unsure = np.zeros(len(member)), np.zeros(len(member), dtype=bool)
        ranks = {}
        for part in self.parts:
            direction, measure = part.split("_")
            if direction not in ranks:
                best = 1.0 + member @ self.beats[direction].T  # [R, N] rank of each query with ties in its favour
                ranks[direction] = best, best + member @ self.ties[direction].T
            best, worst = ranks[direction]
            if measure == "mrr":
                value = member / best.astype(float)  # float64: 1/rank is not exact in float32
                unsure |= ((worst != best) & (member > 0)).any(1)
            else:
                k = int(measure[1:])
                value = member * (best <= k)
                unsure |= (((best <= k) != (worst <= k)) & (member > 0)).any(1)
            total += value.sum(1, dtype=float) / size
        return total / len(self.parts), unsure
