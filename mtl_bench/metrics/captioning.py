"""Metric collection for captioning tasks: BLEU-4, ROUGE-L and CIDEr-D, each a single float.

Every metric takes ``update(preds: list[str], target: list[list[str]])``: one generated caption per item and one or
more reference captions, already lower-cased and whitespace-tokenised.
"""

from collections.abc import Sequence
from typing import Any

from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.text import BLEUScore, ROUGEScore

from mtl_bench.metrics.cider import CIDErD


class ROUGEL(ROUGEScore):
    """ROUGE-L F-measure as one scalar, best over the references of each item, averaged over items.

    torchmetrics' ``ROUGEScore`` returns a dict of F-measure, precision and recall; a collection entry must be a
    single float, so this keeps only ``rougeL_fmeasure``. Only the ``rougeL`` key is computed: ``rougeLsum`` needs
    nltk's punkt data, which is not available offline.

    >>> metric = ROUGEL()
    >>> metric.update(["a cat sits on the mat"], [["a cat sits on the mat", "a dog"]])
    >>> metric.compute().item()
    1.0
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(rouge_keys=("rougeL",), accumulate="best", **kwargs)

    def update(self, preds: Sequence[str], target: Sequence[Sequence[str]]) -> None:
        """Store the per-item ROUGE-L scores of a batch."""
        super().update(list(preds), [list(refs) for refs in target])

    def compute(self) -> Tensor:
        """Mean ROUGE-L F-measure over all items seen."""
        return super().compute()["rougeL_fmeasure"]


def caption_metrics() -> MetricCollection:
    """The captioning metrics under the keys ``bleu4``, ``rougeL`` and ``cider``.

    BLEU-4 is corpus BLEU without smoothing (the standard for captioning); ``compute_groups=False`` keeps the three
    metrics' states separate, since they share an ``update`` signature but nothing else.

    >>> metrics = caption_metrics()
    >>> metrics.update(["a cat sits on the mat"], [["a cat sits on the mat"]])
    >>> sorted(metrics.compute())
    ['bleu4', 'cider', 'rougeL']
    """
    return MetricCollection(
        {"bleu4": BLEUScore(n_gram=4, smooth=False), "rougeL": ROUGEL(), "cider": CIDErD(n=4, sigma=6.0)},
        compute_groups=False,
    )
