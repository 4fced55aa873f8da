"""Text <-> item retrieval over a whole split: Recall@1/5/10 and MRR in both directions, and their mean recall.

Every sample brings a text embedding, an item embedding (its image or video) and its id (position in the split).
``t2i`` ranks every item of the split for each text, ``i2t`` every text for each item: the gallery is the whole
split, not one batch, so the metric keeps the per-sample embeddings (list states, ``dist_reduce_fx="cat"``, so DDP
workers see the whole split) and builds the [N, N] cosine-similarity matrix at ``compute()`` (O(N^2) memory).

Relevance: only the sample's own item (own text) is relevant. Another sample with the same caption text, or a
look-alike product, is a negative: the generated captions name only colour, pattern, shape and background, so some
are identical, which caps R@1 below 1 even for a perfect model; R@5, R@10 and ``mean_recall`` are barely affected.

The ranking itself is torchmetrics' ``RetrievalRecall`` / ``RetrievalMRR`` with ``indexes`` = query, ``preds`` =
similarity and ``target`` = is-the-pair. Those functions count a relevant candidate only when its score is > 0
(torchmetrics 1.x), so the cosine similarity is shifted by +2 into [1, 3] first: same ranking, nothing dropped.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.retrieval import RetrievalMRR, RetrievalRecall
from torchmetrics.utilities.data import dim_zero_cat

DIRECTIONS = ("t2i", "i2t")  # text -> item (image or video), item -> text
TOP_K = (1, 5, 10)
RECALLS = tuple(f"{d}_r{k}" for d in DIRECTIONS for k in TOP_K)
MEAN_RECALL = "mean_recall"  # mean of the six recalls (R@sum / 6 of the image-text retrieval literature)
RETRIEVAL_METRICS = (*RECALLS, *(f"{d}_mrr" for d in DIRECTIONS), MEAN_RECALL)
_SHIFT = 2.0  # cosine in [-1, 1] -> [1, 3]: torchmetrics ignores relevant candidates scored <= 0


def unique_samples(text: Tensor, item: Tensor, ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The first row of every sample id, ordered by id (a distributed sampler pads its last batch with repeats)."""
    order = torch.argsort(ids, stable=True)
    sorted_ids = ids[order]
    keep = torch.ones_like(sorted_ids, dtype=torch.bool)
    keep[1:] = sorted_ids[1:] != sorted_ids[:-1]
    rows = order[keep]
    return text[rows], item[rows], ids[rows]


def ranking_inputs(queries: Tensor, candidates: Tensor, query_ids: Tensor, candidate_ids: Tensor) -> dict[str, Tensor]:
    """torchmetrics retrieval inputs: every (query, candidate) pair's shifted cosine similarity, relevance, query."""
    sim = F.normalize(queries.double(), dim=-1) @ F.normalize(candidates.double(), dim=-1).T + _SHIFT
    target = query_ids.unsqueeze(1) == candidate_ids.unsqueeze(0)
    indexes = torch.arange(len(queries), device=sim.device).unsqueeze(1).expand_as(sim)
    return {"preds": sim.flatten(), "target": target.flatten(), "indexes": indexes.flatten()}


def retrieval_score(text: Tensor, item: Tensor, ids: Tensor, name: str) -> Tensor:
    """One of RETRIEVAL_METRICS for per-sample text [N, D] and item [N, D] embeddings with sample ids [N].

    >>> text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> item = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # each text's own item ranks second
    >>> float(retrieval_score(text, item, torch.tensor([0, 1]), "t2i_r1")), float(retrieval_score(text, item, torch.tensor([0, 1]), "t2i_mrr"))
    (0.0, 0.5)
    """  # noqa: E501
    if name == MEAN_RECALL:
        return torch.stack([retrieval_score(text, item, ids, r) for r in RECALLS]).mean()
    direction, measure = name.split("_")
    queries, candidates = (text, item) if direction == "t2i" else (item, text)
    # sync_on_compute=False: the states are already the whole split here; syncing again would repeat them.
    metric: Any = (
        RetrievalMRR(sync_on_compute=False) if measure == "mrr"
        else RetrievalRecall(top_k=int(measure[1:]), sync_on_compute=False)
    )  # fmt: skip
    metric.update(**ranking_inputs(queries, candidates, ids, ids))
    return metric.compute().float()


class RetrievalScore(Metric):
    """One retrieval figure (``t2i_r1``, ..., ``mean_recall``) over every sample seen.

    ``update(preds, target)``: ``preds`` [B, 2, D] holds each sample's (text, item) embeddings, ``target`` [B] its
    sample id. A query's only relevant candidate is the other side of its own sample.

    >>> metric = RetrievalScore("i2t_r1")
    >>> metric.update(torch.tensor([[[1.0, 0.0], [0.9, 0.1]], [[0.0, 1.0], [0.2, 0.8]]]), torch.tensor([0, 1]))
    >>> float(metric.compute())
    1.0
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    text: list[Tensor]
    item: list[Tensor]
    ids: list[Tensor]

    def __init__(self, score: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if score not in RETRIEVAL_METRICS:
            raise ValueError(f"unknown retrieval metric {score!r}; expected one of {', '.join(RETRIEVAL_METRICS)}")
        self.score = score
        self.add_state("text", default=[], dist_reduce_fx="cat")
        self.add_state("item", default=[], dist_reduce_fx="cat")
        self.add_state("ids", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor) -> None:
        if preds.ndim != 3 or preds.shape[1] != 2 or target.shape != preds.shape[:1]:
            raise ValueError(f"expected preds [B, 2, D] and sample ids [B], got {tuple(preds.shape)} and "
                             f"{tuple(target.shape)}")
        self.text.append(preds[:, 0].float())
        self.item.append(preds[:, 1].float())
        self.ids.append(target.long())

    def compute(self) -> Tensor:
        if isinstance(self.ids, list) and not self.ids:  # after a DDP sync the states are tensors
            return torch.tensor(0.0, device=self.device)
        text, item, ids = (dim_zero_cat(s) for s in (self.text, self.item, self.ids))
        return retrieval_score(*unique_samples(text, item, ids), self.score)
