"""Single-label classification: cross-entropy, accuracy and macro-F1, majority-class trivial baseline."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from mtl_bench.data.batches import TaskData
from mtl_bench.losses.distillation import softmax_kl
from mtl_bench.metrics.resample import ItemScorer, MacroF1Scorer, MeanScorer
from mtl_bench.tasks import TASK_TYPES
from mtl_bench.tasks.base import TaskType


@TASK_TYPES.register("classification")
class Classification(TaskType):
    head = "classifier"
    directions = {"accuracy": True, "macro_f1": True}

    def encode_targets(self, column: list[Any], tokenize: Any) -> tuple[Tensor, None]:
        return torch.as_tensor(column, dtype=torch.long), None

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> Tensor:
        return F.cross_entropy(model(self.spec.name, self.inputs(batch)), batch["target"])

    def distill_loss(self, student: nn.Module, teacher: nn.Module, batch: dict[str, Any], temperature: float) -> Tensor:
        """KL(softmax(teacher / T) || softmax(student / T)) * T**2, averaged over the batch (batchmean)."""
        inputs = self.inputs(batch)
        with torch.no_grad():
            target = teacher(self.spec.name, inputs)
        return softmax_kl(student(self.spec.name, inputs), target, temperature)

    def all_metrics(self) -> dict[str, Any]:
        n = len(self.ctx.label_names)
        return {
            "accuracy": MulticlassAccuracy(num_classes=n, average="micro"),
            "macro_f1": MulticlassF1Score(num_classes=n, average="macro"),
        }

    def predict(self, model: nn.Module, batch: dict[str, Any]) -> Tensor:
        return model(self.spec.name, self.inputs(batch)).argmax(-1)

    def item_scorer(self, predictions: Tensor, data: TaskData, metric: str | None = None) -> ItemScorer:
        """Accuracy: per-item 0/1 hits (``per_item``, the mean over any multiset is the accuracy). Macro-F1: per
        replicate confusion counts (``metrics/resample.MacroF1Scorer``)."""
        metric = self.scored_metric(metric)
        predicted, target = predictions.numpy(), data.target.numpy()
        if metric == "accuracy":
            return MeanScorer((predicted == target).astype(float))
        return MacroF1Scorer(predicted, target, len(self.ctx.label_names))

    def predictions_from_json(self, rows: list[Any]) -> Tensor:
        """Class ids, each an integer in [0, number of classes)."""
        n = len(self.ctx.label_names)
        for i, value in enumerate(rows):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n:
                raise ValueError(f"sample {i}: {value!r} is not a class id (an integer from 0 to {n - 1})")
        return torch.as_tensor(rows, dtype=torch.long)

    def trivial_predictions(self, train: TaskData, test: TaskData) -> Tensor:
        """Every product gets the most frequent training class."""
        majority = torch.bincount(train.target, minlength=len(self.ctx.label_names)).argmax()
        return torch.full_like(test.target, int(majority))
