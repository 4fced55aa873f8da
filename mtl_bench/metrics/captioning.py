"""Metric collection for captioning tasks: BLEU-4, ROUGE-L and CIDEr-D, each a single float, plus the coco-caption
variants of BLEU-4 and ROUGE-L where our convention differs from it.

Every metric takes ``update(preds: list[str], target: list[list[str]])``: one generated caption per item and one or
more reference captions. Both sides first go through one tokenisation, the caption tokenizer's own
(``mtl_bench.data.text.caption_text``: lower-case, punctuation split off, words joined by single spaces), so a
prediction decoded from the tokenizer can equal its reference exactly, and every metric scores the same
whitespace-separated tokens that pycocoevalcap's scorers would be given (they split on whitespace).

Conventions, ours against coco-caption's (pycocoevalcap):

- ``bleu4``: corpus BLEU-4 without smoothing (torchmetrics ``BLEUScore``); the brevity penalty uses, per item, the
  reference length *closest* to the prediction's, ties going to the reference listed first. ``bleu4_coco``: also
  closest, ties going to the *shortest* reference, as coco-caption's ``Bleu`` (``option='closest'``). With one
  reference per item (every built-in task) the two are the same number. coco-caption also adds 1e-15 / 1e-9 to every
  n-gram precision: a relative difference below 1e-8, except that an order with no match at all gives BLEU 0 here
  and about 1e-4 there.
- ``rougeL``: ROUGE-L F1 (beta = 1), the best F1 over an item's references, averaged over items (torchmetrics
  ``ROUGEScore``). ``rougeL_coco``: coco-caption's ``Rouge``, F-measure with beta = 1.2 (recall weighted more) on
  the *largest precision and largest recall* over the references (possibly from different references). With one
  reference they differ only by beta; a perfect prediction scores 1.0 under both.
- ``cider``: CIDEr-D exactly as coco-caption's ``Cider`` (``metrics/cider.py``).

The defaults stay the torchmetrics conventions so that stored results keep their meaning; a task file that lists
``bleu4_coco`` / ``rougeL_coco`` in ``metrics`` reports the coco-caption numbers as well (or instead).
"""

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.text import BLEUScore, ROUGEScore
from torchmetrics.utilities import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors

from mtl_bench.data.text import caption_text
from mtl_bench.metrics.cider import CIDErD

COCO_ROUGE_BETA = 1.2  # pycocoevalcap.rouge.Rouge.beta


def tokenised(preds: Sequence[str], target: Sequence[Sequence[str]]) -> tuple[list[str], list[list[str]]]:
    """Predictions and references in the caption tokenisation (``data.text.caption_text``).

    >>> tokenised(["A T-shirt"], [["a t-shirt", "Blue T-Shirt!"]])
    (['a t - shirt'], [['a t - shirt', 'blue t - shirt !']])
    """
    if isinstance(preds, str) or any(isinstance(refs, str) for refs in target):
        raise ValueError("caption metrics expect preds as a list of strings and target as a list of lists of strings")
    return [caption_text(p) for p in preds], [[caption_text(r) for r in refs] for refs in target]


class BLEU4(BLEUScore):
    """Corpus BLEU-4 without smoothing (the captioning standard) on the caption tokenisation.

    ``coco=False``: torchmetrics' brevity penalty, the closest reference length with ties to the first listed
    reference. ``coco=True``: coco-caption's, ties to the shortest reference (references are passed on sorted by
    length, so torchmetrics' first-of-the-closest is the shortest of them; n-gram clipping does not depend on order).

    >>> metric = BLEU4(coco=True)
    >>> metric.update(["a cat sits on the mat"], [["a cat sits on the red mat", "a cat sits on mat"]])
    >>> round(metric.compute().item(), 4)  # precisions 6/6, 4/5, 3/4, 2/3; refs of 7 and 5 words: 5, no penalty
    0.7953
    >>> metric = BLEU4()
    >>> metric.update(["a cat sits on the mat"], [["a cat sits on the red mat", "a cat sits on mat"]])
    >>> round(metric.compute().item(), 4)  # torchmetrics takes 7 (listed first): 0.7953 * exp(1 - 7/6)
    0.6732
    """

    def __init__(self, coco: bool = False, **kwargs: Any) -> None:
        super().__init__(n_gram=4, smooth=False, **kwargs)
        self.coco = coco

    def update(self, preds: Sequence[str], target: Sequence[Sequence[str]]) -> None:
        """Add a batch's clipped n-gram counts and lengths."""
        preds, target = tokenised(preds, target)
        if self.coco:
            target = [sorted(refs, key=lambda r: len(r.split())) for refs in target]
        super().update(preds, target)


class ROUGEL(ROUGEScore):
    """ROUGE-L F1 (beta = 1) as one scalar, best over the references of each item, averaged over items.

    torchmetrics' ``ROUGEScore`` returns a dict of F-measure, precision and recall; a collection entry must be a
    single float, so this keeps only ``rougeL_fmeasure``. Only the ``rougeL`` key is computed: ``rougeLsum`` needs
    nltk's punkt data, which is not available offline. Text goes through the caption tokenisation instead of
    torchmetrics' default (which deletes every character outside a-z and 0-9), so ROUGE-L sees BLEU's and CIDEr-D's
    tokens. coco-caption's variant (beta = 1.2) is :class:`COCORougeL`.

    >>> metric = ROUGEL()
    >>> metric.update(["a cat sits on the mat"], [["a cat sits on the mat", "a dog"]])
    >>> metric.compute().item()
    1.0
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(rouge_keys=("rougeL",), accumulate="best", normalizer=caption_text, tokenizer=str.split,
                         **kwargs)

    def update(self, preds: Sequence[str], target: Sequence[Sequence[str]]) -> None:
        """Store the per-item ROUGE-L scores of a batch."""
        super().update(list(preds), [list(refs) for refs in target])

    def compute(self) -> Tensor:
        """Mean ROUGE-L F-measure over all items seen."""
        return super().compute()["rougeL_fmeasure"]


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (dynamic programming, one row at a time).

    >>> lcs_length("the cat sat on the mat".split(), "the cat on a mat".split())
    4
    """
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l_coco(pred: str, refs: Sequence[str], beta: float = COCO_ROUGE_BETA) -> float:
    """coco-caption's ROUGE-L of one whitespace-tokenised prediction: ``(1 + b^2) P R / (R + b^2 P)`` with P the
    largest LCS precision and R the largest LCS recall over the references; 0 when either is 0.

    >>> round(rouge_l_coco("the cat sat", ["the cat ran"]), 6)  # P = R = 2/3, so any beta gives 2/3
    0.666667
    >>> round(rouge_l_coco("the cat", ["the cat sat on the mat"]), 4)  # P = 1, R = 1/3: 2.44/3 / (1/3 + 1.44)
    0.4586
    """
    words = pred.split()
    if not refs:
        raise ValueError("ROUGE-L needs at least one reference per prediction")
    precision = recall = 0.0
    for ref in refs:
        ref_words = ref.split()
        lcs = lcs_length(ref_words, words)
        if words:
            precision = max(precision, lcs / len(words))
        if ref_words:
            recall = max(recall, lcs / len(ref_words))
    if precision == 0 or recall == 0:
        return 0.0
    return (1 + beta**2) * precision * recall / (recall + beta**2 * precision)


class COCORougeL(Metric):
    """coco-caption's ROUGE-L (``pycocoevalcap.rouge.Rouge``): beta = 1.2 on the best precision and best recall over
    an item's references, averaged over items; text in the caption tokenisation.

    >>> metric = COCORougeL()
    >>> metric.update(["the cat", "a dog"], [["the cat sat on the mat"], ["a dog"]])
    >>> round(metric.compute().item(), 4)  # (0.4586 + 1) / 2
    0.7293
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    scores: list[Tensor]

    def __init__(self, beta: float = COCO_ROUGE_BETA, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if beta <= 0:
            raise ValueError(f"ROUGE-L beta must be > 0, got {beta}")
        self.beta = beta
        self.add_state("scores", default=[], dist_reduce_fx="cat")

    def update(self, preds: Sequence[str], target: Sequence[Sequence[str]]) -> None:
        """Store the per-item scores of a batch."""
        preds, target = tokenised(preds, target)
        if len(preds) != len(target):
            raise ValueError(f"ROUGE-L got {len(preds)} predictions but {len(target)} reference lists")
        values = [rouge_l_coco(p, refs, self.beta) for p, refs in zip(preds, target, strict=True)]
        self.scores.append(torch.tensor(values, dtype=torch.float64, device=self.device))

    def _sync_dist(self, dist_sync_fn: Callable = gather_all_tensors, process_group: Any | None = None) -> None:
        """A rank without data sends an empty float64 tensor (torchmetrics' placeholder is float32, which cannot be
        gathered with the other ranks' float64 scores); ``unsync`` restores the cached state."""
        if isinstance(self.scores, list) and not self.scores:
            self.scores.append(torch.empty(0, dtype=torch.float64, device=self.device))
        super()._sync_dist(dist_sync_fn, process_group)

    def compute(self) -> Tensor:
        """Mean over all items seen (0.0 if none)."""
        if isinstance(self.scores, list) and not self.scores:
            return torch.tensor(0.0, dtype=torch.float64, device=self.device)
        scores = dim_zero_cat(self.scores)
        return scores.mean() if scores.numel() else torch.tensor(0.0, dtype=torch.float64, device=self.device)


class CaptionCIDErD(CIDErD):
    """CIDEr-D (coco-caption's ``Cider``) on the caption tokenisation."""

    def update(self, preds: Sequence[str], target: Sequence[Sequence[str]]) -> None:
        """Store a batch of predictions and their references, tokenised."""
        super().update(*tokenised(preds, target))


def caption_metrics() -> MetricCollection:
    """Every captioning metric, by name: ``bleu4``, ``rougeL`` and ``cider`` (what the built-in tasks report), and
    ``bleu4_coco`` and ``rougeL_coco`` (coco-caption's conventions; see the module docstring).

    ``compute_groups=False`` keeps the metrics' states separate, since they share an ``update`` signature but nothing
    else.

    >>> metrics = caption_metrics()
    >>> metrics.update(["a cat sits on the mat"], [["a cat sits on the mat"]])
    >>> sorted(metrics.compute())
    ['bleu4', 'bleu4_coco', 'cider', 'rougeL', 'rougeL_coco']
    """
    return MetricCollection(
        {
            "bleu4": BLEU4(), "bleu4_coco": BLEU4(coco=True), "rougeL": ROUGEL(), "rougeL_coco": COCORougeL(),
            "cider": CaptionCIDErD(n=4, sigma=6.0),
        },
        compute_groups=False,
    )
