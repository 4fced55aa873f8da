"""Text-item retrieval with a dual encoder: symmetric InfoNCE, Recall@K / MRR over the whole split, chance baseline.

A retrieval task has two inputs, ``text`` (the query, e.g. a caption) and one item modality (``image`` or
``video``). Each side goes through the task's sharing path and ``embedding`` head ALONE (``model(task, {"text": ids})``
and ``model(task, {"image": x})``), so the two embeddings can be indexed separately, as in a search engine; the
fusion sees one modality at a time. Metrics: ``metrics/retrieval.py`` (only a sample's own item is relevant, and the
main score ``mean_recall`` averages R@1/5/10 of both directions). The target column only fixes the samples'
order: targets are sample ids.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_bench.config.schema import ModelConfig
from mtl_bench.core.types import IMAGE, TEXT, VIDEO
from mtl_bench.data.batches import TaskData
from mtl_bench.heads import HEADS
from mtl_bench.losses.contrastive import info_nce
from mtl_bench.losses.distillation import similarity_kl
from mtl_bench.metrics.resample import ItemScorer
from mtl_bench.metrics.retrieval import RETRIEVAL_METRICS, RetrievalScore
from mtl_bench.metrics.retrieval_resample import RetrievalScorer
from mtl_bench.tasks import TASK_TYPES
from mtl_bench.tasks.base import TaskType
from mtl_bench.tasks.spec import TaskSpec

ITEMS = (IMAGE, VIDEO)  # what a text can retrieve
TRIVIAL_DIM, TRIVIAL_SEED = 32, 0  # random embeddings of the chance-level baseline


@TASK_TYPES.register("retrieval")
class Retrieval(TaskType):
    head = "embedding"
    directions = dict.fromkeys(RETRIEVAL_METRICS, True)
    ablate_inputs = False  # without its text or its item a sample has nothing to match

    @classmethod
    def check_spec(cls, spec: TaskSpec) -> str | None:
        items = [m for m in spec.inputs if m in ITEMS]
        if set(spec.inputs) != {TEXT, *items} or len(items) != 1:
            return (f"field 'inputs' has {sorted(spec.inputs)}: a retrieval task needs exactly two inputs, "
                    f"{TEXT} (the query) and one of {', '.join(ITEMS)}")
        return None

    @property
    def item(self) -> str:
        """The item modality (image or video) that texts retrieve."""
        return next(m for m in self.spec.modalities() if m != TEXT)

    def encode_targets(self, column: list[Any], tokenize: Any) -> tuple[Tensor, None]:
        """Sample ids 0..N-1: a query's relevant candidate is the one with its own id."""
        return torch.arange(len(column)), None

    def build_head(self, cfg: ModelConfig) -> nn.Module:
        return HEADS.get(self.head)(cfg.dim, cfg.dim, dropout=cfg.dropout)

    def embed(self, model: nn.Module, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Text and item embeddings [B, D] of a batch, each computed from its own modality alone."""
        name = self.spec.name
        return model(name, {TEXT: batch[TEXT]}), model(name, {self.item: batch[self.item]})

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> Tensor:
        """Symmetric InfoNCE over the batch (every worker's batch under DDP) at the head's learned temperature."""
        text, item = self.embed(model, batch)
        return info_nce(text, item, model.heads[self.spec.name].logit_scale())

    def similarity_logits(self, model: nn.Module, batch: dict[str, Any]) -> Tensor:
        """In-batch logits [B texts, B items]: cosine similarity times the model's own learned inverse temperature."""
        text, item = self.embed(model, batch)
        scale = model.heads[self.spec.name].logit_scale()
        return scale * F.normalize(text.float(), dim=-1) @ F.normalize(item.float(), dim=-1).T

    def distill_loss(self, student: nn.Module, teacher: nn.Module, batch: dict[str, Any], temperature: float) -> Tensor:
        """KL(teacher || student) of the in-batch similarity distributions, text -> items and item -> texts, at
        temperature T, * T**2. Each model's logits use its own learned scale, so the student also learns how
        sharply the teacher ranks; the batch is the local one (no DDP gathering)."""
        with torch.no_grad():
            target = self.similarity_logits(teacher, batch)
        return similarity_kl(self.similarity_logits(student, batch), target, temperature)

    def all_metrics(self) -> dict[str, Any]:
        return {name: RetrievalScore(name) for name in RETRIEVAL_METRICS}

    def predict(self, model: nn.Module, batch: dict[str, Any]) -> Tensor:
        """Per sample, its L2-normalised (text, item) embeddings: [B, 2, D] float32."""
        text, item = self.embed(model, batch)
        return torch.stack([F.normalize(text.float(), dim=-1), F.normalize(item.float(), dim=-1)], dim=1)

    def item_scorer(self, predictions: Tensor, data: TaskData, metric: str | None = None) -> ItemScorer:
        """What the generic path computes on a multiset: its DISTINCT items, each a query once, against a gallery
        of those items only (``RetrievalScore`` drops repeated sample ids); ranks come from one similarity matrix
        and replicates where a tie decides the figure are recomputed generically (``metrics/retrieval_resample.py``
        says why ``per_item`` is None and how this differs from the fixed-gallery IR convention)."""
        metric = self.scored_metric(metric)
        generic = super().item_scorer(predictions, data, metric)
        if not torch.equal(data.target, torch.arange(len(data))):  # relevance is by sample id: the fast path needs
            return generic  # ids 0..N-1, which encode_targets gives
        # float32 first, as RetrievalScore.update stores them, so the similarities are the generic path's
        return RetrievalScorer(predictions[:, 0].float(), predictions[:, 1].float(), metric, generic.score)

    def predictions_to_json(self, predictions: Tensor) -> list[Any]:  # type: ignore[override]
        """One ``{"text": [D floats], ITEM: [D floats]}`` per sample."""
        return [{TEXT: text, self.item: item} for text, item in predictions.tolist()]

    def predictions_from_json(self, rows: list[Any]) -> Tensor:
        """Per sample, a text and an item embedding: lists of the same length D >= 1 of finite numbers, not all 0."""
        keys = {TEXT, self.item}
        dim = None
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or set(row) != keys:
                raise ValueError(f"sample {i}: expected an object with keys {sorted(keys)}, got {str(row)[:80]}")
            for key in sorted(keys):
                value = row[key]
                dim = dim or (len(value) if isinstance(value, list) else None)
                ok = isinstance(value, list) and len(value) == dim and dim >= 1
                ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                                for v in value)
                if not ok or not any(value):
                    raise ValueError(f"sample {i}: {key!r} must be a list of {dim or 'D >= 1'} finite numbers, "
                                     f"not all 0 (an embedding), got {str(value)[:80]}")
        return torch.as_tensor([[row[TEXT], row[self.item]] for row in rows], dtype=torch.float32)

    def trivial_predictions(self, train: TaskData, test: TaskData) -> Tensor:
        """Random unit embeddings from a fixed seed: chance level, R@K about K/N and MRR about ln(N)/N."""
        generator = torch.Generator().manual_seed(TRIVIAL_SEED)
        return F.normalize(torch.randn(len(test), 2, TRIVIAL_DIM, generator=generator), dim=-1)
