"""CIDEr-D, the consensus-based captioning metric, as in the coco-caption reference.

The maths lives in pure functions that follow ``pycocoevalcap.cider.cider_scorer`` step by step, so the scores match
the numbers reported in captioning papers; :class:`CIDErD` is a thin ``torchmetrics.Metric`` that only stores text.

Quirks of the reference that are kept on purpose, because they define the published numbers:

- document frequencies are counted over the references of the evaluated corpus only (one document = one item's set of
  references), and the idf is ``log(N) - log(max(1, df))`` with ``N`` the number of items;
- term frequencies are raw n-gram counts (the cosine similarity makes their scale irrelevant);
- the "length" in the Gaussian length penalty is the number of bigrams, ``max(len(tokens) - 1, 0)``;
- candidate tf-idf weights are clipped by the reference ones (``min(h, r) * r``), which is what makes it CIDEr-D;
- per item, the score is the mean over n = 1..n of the summed similarities, divided by the number of references,
  times 10; the corpus score is the mean over items.

Text states are stored as UTF-8 byte tensors with length tensors beside them, so they sync across processes with
torchmetrics' ordinary ``cat`` reduction (plain lists of strings cannot be gathered).
"""

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors

NGram = tuple[str, ...]


class TfIdf(NamedTuple):
    """Tf-idf weights of one sentence, split by n-gram order (index 0 holds unigrams)."""

    weights: list[dict[NGram, float]]
    norms: list[float]
    length: int  # number of bigrams, the reference's length for the penalty


def ngram_counts(sentence: str, n: int = 4) -> Counter[NGram]:
    """Count every 1..n-gram of a whitespace-tokenised sentence.

    >>> sorted(ngram_counts("a cat a", n=2).items())
    [(('a',), 2), (('a', 'cat'), 1), (('cat',), 1), (('cat', 'a'), 1)]
    """
    words = sentence.split()
    counts: Counter[NGram] = Counter()
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i : i + k])] += 1
    return counts


def document_frequency(ref_counts: Sequence[Sequence[Counter[NGram]]]) -> Counter[NGram]:
    """Number of items whose references contain each n-gram; an item counts once however many refs hold it.

    >>> df = document_frequency([[ngram_counts("a b", 1), ngram_counts("a", 1)], [ngram_counts("b", 1)]])
    >>> df[("a",)], df[("b",)]
    (1, 2)
    """
    df: Counter[NGram] = Counter()
    for refs in ref_counts:
        df.update({ngram for counts in refs for ngram in counts})
    return df


def tfidf(counts: Counter[NGram], df: Counter[NGram], log_num_docs: float, n: int = 4) -> TfIdf:
    """Tf-idf vector of one sentence: ``count * (log(N) - log(max(1, df)))`` per n-gram, with one norm per order.

    N-grams absent from every reference get ``df = 1`` (idf ``log(N)``), as in the reference.
    """
    weights: list[dict[NGram, float]] = [{} for _ in range(n)]
    squares = [0.0] * n
    length = 0
    for ngram, term_freq in counts.items():
        order = len(ngram) - 1
        weight = float(term_freq) * (log_num_docs - math.log(max(1.0, float(df[ngram]))))
        weights[order][ngram] = weight
        squares[order] += weight**2
        if order == 1:
            length += term_freq
    return TfIdf(weights, [math.sqrt(s) for s in squares], length)


def cider_d_similarity(hyp: TfIdf, ref: TfIdf, sigma: float = 6.0) -> list[float]:
    """Clipped cosine similarity per n-gram order between a candidate and one reference, times the length penalty.

    The candidate weight is clipped by the reference weight (``min(h, r) * r``) so repeating a reference n-gram
    cannot raise the score; ``exp(-delta^2 / (2 sigma^2))`` penalises candidates longer or shorter than the reference.
    """
    penalty = math.exp(-(float(hyp.length - ref.length) ** 2) / (2 * sigma**2))
    values = []
    for order in range(len(hyp.weights)):
        ref_weights = ref.weights[order]
        value = 0.0
        for ngram, weight in hyp.weights[order].items():
            ref_weight = ref_weights.get(ngram, 0.0)
            value += min(weight, ref_weight) * ref_weight
        if hyp.norms[order] != 0 and ref.norms[order] != 0:
            value /= hyp.norms[order] * ref.norms[order]
        values.append(value * penalty)
    return values


def cider_d_scores(
    preds: Sequence[str], target: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0
) -> list[float]:
    """Per-item CIDEr-D of a corpus; the idf comes from the references of this corpus, so scores depend on it all.

    >>> preds = ["a cat sits", "a dog runs"]
    >>> target = [["a cat sits", "a cat is sitting"], ["a dog runs fast"]]
    >>> [round(s, 4) for s in cider_d_scores(preds, target)]
    [4.7565, 5.7696]
    """
    _check_inputs(preds, target, n, sigma)
    if not preds:
        return []
    hyp_counts = [ngram_counts(p, n) for p in preds]
    ref_counts = [[ngram_counts(r, n) for r in refs] for refs in target]
    df = document_frequency(ref_counts)
    log_num_docs = math.log(float(len(ref_counts)))

    scores = []
    for hyp, refs in zip(hyp_counts, ref_counts, strict=True):
        hyp_vec = tfidf(hyp, df, log_num_docs, n)
        summed = [0.0] * n
        for ref in refs:
            sims = cider_d_similarity(hyp_vec, tfidf(ref, df, log_num_docs, n), sigma)
            summed = [s + v for s, v in zip(summed, sims, strict=True)]
        scores.append(sum(summed) / n / len(refs) * 10.0)
    return scores


def cider_d(preds: Sequence[str], target: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0) -> float:
    """Corpus CIDEr-D: the mean of the per-item scores (0.0 for an empty corpus).

    >>> round(cider_d(["a cat sits", "a dog runs"], [["a cat sits", "a cat is sitting"], ["a dog runs fast"]]), 4)
    5.2631
    """
    scores = cider_d_scores(preds, target, n, sigma)
    return sum(scores) / len(scores) if scores else 0.0


def _check_inputs(preds: Sequence[str], target: Sequence[Sequence[str]], n: int, sigma: float) -> None:
    """Reject inputs the reference would assert on, with a message that says what was wrong."""
    if n < 1:
        raise ValueError(f"CIDEr-D n-gram order n must be >= 1, got {n}")
    if sigma <= 0:
        raise ValueError(f"CIDEr-D sigma must be > 0, got {sigma}")
    if isinstance(preds, str) or any(isinstance(refs, str) for refs in target):
        raise ValueError("CIDEr-D expects preds as a list of strings and target as a list of lists of strings")
    if len(preds) != len(target):
        raise ValueError(f"CIDEr-D got {len(preds)} predictions but {len(target)} reference lists")
    for i, refs in enumerate(target):
        if len(refs) == 0:
            raise ValueError(f"CIDEr-D needs at least one reference per prediction; item {i} has none")


def _encode(texts: Sequence[str], device: torch.device) -> tuple[Tensor, Tensor]:
    """UTF-8 bytes of all texts back to back, and each text's byte length, so boundaries survive concatenation."""
    encoded = [t.encode("utf-8") for t in texts]
    data = torch.tensor(list(b"".join(encoded)), dtype=torch.uint8, device=device)
    lengths = torch.tensor([len(e) for e in encoded], dtype=torch.long, device=device)
    return data, lengths


def _decode(data: Tensor, lengths: Tensor) -> list[str]:
    """Inverse of :func:`_encode`."""
    raw = data.to(torch.uint8).cpu().numpy().tobytes()
    texts, start = [], 0
    for length in lengths.to(torch.long).tolist():
        texts.append(raw[start : start + length].decode("utf-8"))
        start += length
    return texts


class CIDErD(Metric):
    """Corpus CIDEr-D (coco-caption's ``Cider``), accumulated over batches.

    ``n`` is the largest n-gram order (4 is the reference's and the only value it supports), ``sigma`` the width of
    the Gaussian length penalty. Text is only stored in ``update``; all scoring happens in ``compute`` because the
    idf depends on every reference in the corpus, so per-batch scores cannot be averaged.

    Distributed: states are byte/length tensors reduced by ``cat``, so they sync like any torchmetrics list state,
    in rank order; a rank that saw no data takes part with empty tensors of the right dtypes.

    >>> metric = CIDErD()
    >>> metric.update(["a cat sits"], [["a cat sits", "a cat is sitting"]])
    >>> metric.update(["a dog runs"], [["a dog runs fast"]])
    >>> round(metric.compute().item(), 4)
    5.2631
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    text_bytes: list[Tensor]
    text_lengths: list[Tensor]
    num_refs: list[Tensor]

    def __init__(self, n: int = 4, sigma: float = 6.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _check_inputs([], [], n, sigma)
        self.n = n
        self.sigma = sigma
        # Per item: the prediction followed by its references, as UTF-8 bytes plus one byte length per text.
        self.add_state("text_bytes", default=[], dist_reduce_fx="cat")
        self.add_state("text_lengths", default=[], dist_reduce_fx="cat")
        # Per item: how many references follow the prediction.
        self.add_state("num_refs", default=[], dist_reduce_fx="cat")

    def update(self, preds: Sequence[str], target: Sequence[Sequence[str]]) -> None:
        """Store a batch of predictions, each with one or more references, already tokenised: words split on
        whitespace, as coco-caption's scorers take them (``metrics.captioning`` applies the caption tokenisation)."""
        _check_inputs(preds, target, self.n, self.sigma)
        if not preds:
            return
        texts = [text for pred, refs in zip(preds, target, strict=True) for text in (pred, *refs)]
        data, lengths = _encode(texts, self.device)
        self.text_bytes.append(data)
        self.text_lengths.append(lengths)
        self.num_refs.append(torch.tensor([len(refs) for refs in target], dtype=torch.long, device=self.device))

    def compute(self) -> Tensor:
        """Corpus CIDEr-D over everything stored since the last reset (0.0 if nothing was stored)."""
        preds, target = self._texts()
        return torch.tensor(cider_d(preds, target, self.n, self.sigma), dtype=self.dtype, device=self.device)

    def _sync_dist(self, dist_sync_fn: Callable = gather_all_tensors, process_group: Any | None = None) -> None:
        """Give a rank without data empty *integer* states before gathering.

        torchmetrics would otherwise send a float placeholder from that rank, and gathering it with the other ranks'
        uint8/int64 tensors fails. ``sync`` caches the states before calling this, so ``unsync`` undoes the padding.
        """
        if isinstance(self.num_refs, list) and not self.num_refs:
            self.text_bytes.append(torch.empty(0, dtype=torch.uint8, device=self.device))
            self.text_lengths.append(torch.empty(0, dtype=torch.long, device=self.device))
            self.num_refs.append(torch.empty(0, dtype=torch.long, device=self.device))
        super()._sync_dist(dist_sync_fn, process_group)

    def _texts(self) -> tuple[list[str], list[list[str]]]:
        """Decode the states back into predictions and reference lists."""
        if isinstance(self.num_refs, list) and not self.num_refs:  # nothing stored; after a sync states are tensors
            return [], []
        texts = _decode(dim_zero_cat(self.text_bytes), dim_zero_cat(self.text_lengths))
        preds, target, pos = [], [], 0
        for count in dim_zero_cat(self.num_refs).to(torch.long).tolist():
            preds.append(texts[pos])
            target.append(texts[pos + 1 : pos + 1 + count])
            pos += 1 + count
        return preds, target
