"""CIDEr-D on resampled items, vectorised: n-gram counts once, then sparse products per block of replicates.

``cider_d`` on a multiset corpus (``data.take(indices)``) treats every drawn copy of an item as its own document:
the document frequency of an n-gram counts a repeated item's references as often as the item was drawn, and N in
the idf is the multiset's size. Only the idf depends on the multiset, and CIDEr-D is built from it through squares:
with w = log(N) - log(max(1, df)) >= 0 (df never exceeds N), a candidate / reference pair's similarity at order o is

    sum_g min(h_g, r_g) r_g w_g²  /  (sqrt(sum_g h_g² w_g²) · sqrt(sum_g r_g² w_g²))

(the numerator alone when a norm is 0, where it is 0 too), times the length penalty, which does not depend on the
multiset. So three sparse matrices of raw counts (min(h, r)·r per pair, h² per item, r² per pair) times the [G, R]
matrix of w² give every item's score under R replicates at once; the corpus score is the count-weighted mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from mtl_bench.metrics.cider import NGram, ngram_counts
from mtl_bench.metrics.resample import CHUNK, ItemScorer, item_counts


class CiderScorer(ItemScorer):
    """Corpus CIDEr-D (``metrics/cider.py``: ``cider_d``) of already-tokenised captions on item multisets.

    >>> import math
    >>> from mtl_bench.metrics.cider import cider_d
    >>> preds, refs = ["a cat sits", "a dog runs", "a cat"], [["a cat sits"], ["a dog runs fast"], ["a bird"]]
    >>> scorer, idx = CiderScorer(preds, refs), np.array([0, 0, 2, 1])
    >>> math.isclose(scorer.score(idx), cider_d([preds[i] for i in idx], [refs[i] for i in idx]), rel_tol=1e-12)
    True
    """

    def __init__(self, preds: Sequence[str], target: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0) -> None:
        super().__init__(len(preds))
        if len(preds) != len(target) or any(len(refs) == 0 for refs in target):
            raise ValueError(f"CIDEr-D needs one or more references for each of the {len(preds)} predictions")
        self.n = n
        hyps = [ngram_counts(p, n) for p in preds]
        refs = [[ngram_counts(r, n) for r in rs] for rs in target]
        ngrams = sorted({g for c in (*hyps, *(r for rs in refs for r in rs)) for g in c}, key=lambda g: (len(g), g))
        column = {g: j for j, g in enumerate(ngrams)}
        sizes = np.bincount([len(g) for g in ngrams], minlength=n + 1)
        self.bounds = np.concatenate([[0], np.cumsum(sizes[1:])])  # order o (0-based) owns columns bounds[o]:[o+1]
        shape = len(preds), len(ngrams)
        pair_item = np.repeat(np.arange(len(preds)), [len(rs) for rs in refs])
        pairs = [(hyps[i], ref) for i, rs in enumerate(refs) for ref in rs]
        self.clipped = _matrix([{g: min(h.get(g, 0), c) * c for g, c in r.items() if g in h} for h, r in pairs],
                               column, (len(pairs), shape[1]))
        self.hyp_squares = _matrix([{g: c * c for g, c in h.items()} for h in hyps], column, shape)
        self.ref_squares = _matrix([{g: c * c for g, c in r.items()} for _, r in pairs], column, (len(pairs), shape[1]))
        self.in_refs = _matrix([dict.fromkeys({g for r in rs for g in r}, 1) for rs in refs], column, shape).T.tocsr()
        lengths = np.array([_bigrams(h) for h in hyps]), np.array([_bigrams(r) for _, r in pairs])
        penalty = np.exp(-((lengths[0][pair_item] - lengths[1]) ** 2.0) / (2 * sigma**2))
        n_refs = np.array([len(rs) for rs in refs], dtype=float)
        # item i's score = sum over its pairs of penalty · (sum over orders of similarity) · 10 / n / len(refs_i)
        scale = penalty * 10.0 / n / n_refs[pair_item]
        self.pair_item = pair_item
        self.to_items = sparse.csr_matrix((scale, (pair_item, np.arange(len(pairs)))), shape=(len(preds), len(pairs)))

    def item_scores(self, counts: np.ndarray) -> np.ndarray:
        """[N, R] every item's CIDEr-D under the document frequencies of the R multisets given as counts [R, N]."""
        size = counts.sum(1)
        df = self.in_refs @ counts.T  # [G, R]
        with np.errstate(divide="ignore"):
            idf = np.log(size)[None, :] - np.log(np.maximum(1.0, df))
        w2 = idf**2
        summed = np.zeros((self.clipped.shape[0], len(counts)))
        for order in range(self.n):
            lo, hi = self.bounds[order], self.bounds[order + 1]
            if lo == hi:
                continue
            block = w2[lo:hi]
            numerator = self.clipped[:, lo:hi] @ block
            norms = np.sqrt(self.hyp_squares[:, lo:hi] @ block)[self.pair_item] * np.sqrt(
                self.ref_squares[:, lo:hi] @ block)
            summed += np.divide(numerator, norms, out=numerator.copy(), where=norms != 0)
        return self.to_items @ summed

    def _scores(self, index_matrix: np.ndarray) -> np.ndarray:
        out = np.empty(len(index_matrix))
        for start in range(0, len(index_matrix), CHUNK):
            counts = item_counts(index_matrix[start : start + CHUNK], self.n_items)
            out[start : start + CHUNK] = (counts * self.item_scores(counts).T).sum(1) / counts.sum(1)
        return out


def _bigrams(counts: dict[NGram, int]) -> int:
    """The reference's length for the penalty: the number of bigrams (0 when n = 1)."""
    return sum(c for g, c in counts.items() if len(g) == 2)


def _matrix(rows: list[dict[NGram, float]], column: dict[NGram, int], shape: tuple[int, int]) -> sparse.csr_matrix:
    """CSR matrix whose row k holds ``rows[k]``'s values at their n-grams' columns."""
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.fromiter((column[g] for r in rows for g in r), dtype=np.int64, count=int(indptr[-1]))
    data = np.fromiter((v for r in rows for v in r.values()), dtype=float, count=int(indptr[-1]))
    return sparse.csr_matrix((data, indices, indptr), shape=shape)

