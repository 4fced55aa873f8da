"""Multi-label tagging: binary cross-entropy, mAP and micro/macro F1, tag-prior trivial baseline."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MultilabelAveragePrecision, MultilabelF1Score

from mtl_bench.data.batches import TaskData
from mtl_bench.losses.distillation import sigmoid_bce
from mtl_bench.metrics.resample import AveragePrecisionScorer, ItemScorer
from mtl_bench.tasks import TASK_TYPES
from mtl_bench.tasks.base import TaskType


@TASK_TYPES.register("tagging")
class Tagging(TaskType):
    head = "tagger"
    directions = {"map": True, "micro_f1": True, "macro_f1": True}

    def encode_targets(self, column: list[Any], tokenize: Any) -> tuple[Tensor, None]:
        """Multi-hot float targets [N, K] from lists of tag ids."""
        target = torch.zeros(len(column), len(self.ctx.label_names))
        for row, tags in enumerate(column):
            target[row, list(tags)] = 1.0
        return target, None

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> Tensor:
        return F.binary_cross_entropy_with_logits(model(self.spec.name, self.inputs(batch)), batch["target"])

    def distill_loss(self, student: nn.Module, teacher: nn.Module, batch: dict[str, Any], temperature: float) -> Tensor:
        """Binary cross-entropy of student logits / T against sigmoid(teacher logits / T), every tag independent,
        * T**2 (mean over clips and tags, like ``loss``)."""
        inputs = self.inputs(batch)
        with torch.no_grad():
            soft = teacher(self.spec.name, inputs)
        return sigmoid_bce(student(self.spec.name, inputs), soft, temperature)

    def all_metrics(self) -> dict[str, Any]:
        k = len(self.ctx.label_names)
        return {
            "map": MultilabelAveragePrecision(num_labels=k, average="macro"),
            "micro_f1": MultilabelF1Score(num_labels=k, average="micro"),
            "macro_f1": MultilabelF1Score(num_labels=k, average="macro"),
        }

    def predict(self, model: nn.Module, batch: dict[str, Any]) -> Tensor:
        return torch.sigmoid(model(self.spec.name, self.inputs(batch)).float())

    def item_scorer(self, predictions: Tensor, data: TaskData, metric: str | None = None) -> ItemScorer:
        """mAP: per-tag rankings sorted once, AP per replicate from cumulative item counts
        (``metrics/resample.AveragePrecisionScorer``; tags without positives in the multiset count as 0, as in
        torchmetrics). F1 figures, and scores outside [0, 1] (which torchmetrics would pass through a sigmoid),
        take the generic recomputation."""
        metric = self.scored_metric(metric)
        scores = predictions.double().numpy()
        if metric != "map" or not ((scores >= 0) & (scores <= 1)).all():
            return super().item_scorer(predictions, data, metric)
        return AveragePrecisionScorer(scores, data.target.long().numpy())

    def metric_target(self, target: Tensor, references: list[list[str]] | None) -> Tensor:
        return target.long()

    def predictions_from_json(self, rows: list[Any]) -> Tensor:
        """Per clip, one score in [0, 1] for every tag."""
        k = len(self.ctx.label_names)
        for i, row in enumerate(rows):
            ok = isinstance(row, list) and len(row) == k
            ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1 for v in row)
            if not ok:
                raise ValueError(f"sample {i}: expected a list of {k} tag scores in [0, 1], got {str(row)[:80]}")
        return torch.as_tensor(rows, dtype=torch.float32).reshape(len(rows), k)

    def trivial_predictions(self, train: TaskData, test: TaskData) -> Tensor:
        """Every clip gets the training tag frequencies as scores (so F1 counts the tags present in over half)."""
        prior = train.target.float().mean(0)
        return prior.expand_as(test.target).clone()
