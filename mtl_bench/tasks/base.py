"""The task-type interface: how one kind of task turns a dataset column into targets, a head, a loss and metrics.

A task *type* is code (this file and its subclasses); a task *instance* is a YAML file whose fields fill TaskSpec.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection

from mtl_bench.config.schema import ModelConfig
from mtl_bench.heads import HEADS
from mtl_bench.metrics.resample import ItemScorer, RecomputeScorer
from mtl_bench.tasks.spec import TaskSpec

if TYPE_CHECKING:
    from mtl_bench.data.batches import TaskData


@dataclass(frozen=True)
class TaskContext:
    """What a task type needs to know beyond its spec: the label names and the shared tokenizer."""

    label_names: list[str]  # class or tag names (empty for captioning and retrieval)
    vocab_size: int
    max_text_len: int
    decode: Any = None  # callable ids -> list[str] (captioning)


class TaskType(ABC):
    """Base class of classification, captioning, tagging and retrieval; subclasses register in ``TASK_TYPES``."""

    head: ClassVar[str]  # name in the heads registry
    directions: ClassVar[dict[str, bool]]  # metric name -> higher is better
    # Robustness ablation (evaluation/measures.py): may one input be removed while another remains? False when the
    # inputs are the two sides of a pair (retrieval), not alternative evidence for one prediction.
    ablate_inputs: ClassVar[bool] = True

    def __init__(self, spec: TaskSpec, ctx: TaskContext) -> None:
        self.spec = spec
        self.ctx = ctx

    @classmethod
    def metric_directions(cls) -> dict[str, bool]:
        return dict(cls.directions)

    @classmethod
    def check_spec(cls, spec: TaskSpec) -> str | None:
        """What is wrong with a task file of this type beyond the schema ("field 'x' = v: expected ..."), or None."""
        return None

    @abstractmethod
    def encode_targets(self, column: list[Any], tokenize: Any) -> tuple[Tensor, list[list[str]] | None]:
        """Targets tensor from the dataset's target column (and text references, for captioning)."""

    def build_head(self, cfg: ModelConfig) -> nn.Module:
        """The task head, fed with the sharing strategy's Fused features: by default one output per label name."""
        return HEADS.get(self.head)(cfg.dim, len(self.ctx.label_names), dropout=cfg.dropout)

    @abstractmethod
    def loss(self, model: nn.Module, batch: dict[str, Any]) -> Tensor:
        """Training loss of one batch of this task."""

    @abstractmethod
    def distill_loss(self, student: nn.Module, teacher: nn.Module, batch: dict[str, Any], temperature: float) -> Tensor:
        """The knowledge-distillation term alone (the caller mixes it with ``loss``): the student's outputs against
        the teacher's softened by ``temperature``, times T**2 (``losses/distillation.py``). Only outputs are
        compared, so the two models may differ in width. The teacher runs under ``torch.no_grad()``; the caller
        sets its mode.
        """

    @abstractmethod
    def all_metrics(self) -> dict[str, Any]:
        """Every metric this type offers, by name (the spec picks a subset)."""

    @abstractmethod
    def predict(self, model: nn.Module, batch: dict[str, Any]) -> Any:
        """Predictions of a batch (eval mode) in the form the metrics take: class ids, tag scores or caption texts."""

    @abstractmethod
    def predictions_from_json(self, rows: list[Any]) -> Any:
        """Predictions read back from JSON rows (one per sample), checked; ValueError says what is wrong."""

    @abstractmethod
    def trivial_predictions(self, train: TaskData, test: TaskData) -> Any:
        """Predictions of the trivial predictor (fit on train) for every sample of ``test``."""

    def metric_target(self, target: Tensor, references: list[list[str]] | None) -> Any:
        """What the metrics compare predictions with: the targets tensor by default."""
        return target

    def update_metrics(self, metrics: MetricCollection, model: nn.Module, batch: dict[str, Any]) -> None:
        """Predict a batch (eval mode) and update the metrics with it."""
        metrics.update(self.predict(model, batch), self.metric_target(batch["target"], batch.get("references")))

    def score_predictions(self, predictions: Any, data: TaskData) -> dict[str, float]:
        """This task's metrics of ``predictions`` (one per sample of ``data``, in order) against ``data``'s labels."""
        metrics = self.make_metrics()
        metrics.update(predictions, self.metric_target(data.target, data.references))
        return self.scores(metrics)

    def item_scorer(self, predictions: Any, data: TaskData, metric: str | None = None) -> ItemScorer:
        """``metric`` (default: the main score) of ``predictions`` on multisets of ``data``'s items, for resampling
        test items (``metrics/resample.py``): ``scorer.score(idx)`` is
        ``score_predictions(predictions[idx], data.take(idx))[metric]``.

        This default recomputes that literally (one metric, every call): always right, slow for corpus metrics.
        Task types override it with precomputed fast paths that give the same numbers.
        """
        metric = self.scored_metric(metric)

        def recompute(indices: np.ndarray) -> float:
            if isinstance(predictions, Tensor):
                taken = predictions[torch.as_tensor(indices, dtype=torch.long)]
            else:
                taken = [predictions[i] for i in indices.tolist()]
            part = data.take(indices)
            one = MetricCollection({metric: self.all_metrics()[metric]}, compute_groups=False)
            one.update(taken, self.metric_target(part.target, part.references))
            return self.scores(one)[metric]

        return RecomputeScorer(recompute, len(data))

    def scored_metric(self, metric: str | None) -> str:
        """``metric``, or the main score when None; a ValueError names an unknown one."""
        metric = metric or self.spec.main_score
        if metric not in self.all_metrics():
            raise ValueError(f"task {self.spec.name!r}: metric {metric!r} is not one of "
                             f"{', '.join(sorted(self.all_metrics()))}")
        return metric

    def trivial_baseline(self, train: TaskData, test: TaskData) -> dict[str, float]:
        """Scores of the trivial predictor (fit on train, scored on test) under this task's metrics."""
        return self.score_predictions(self.trivial_predictions(train, test), test)

    @staticmethod
    def concat(parts: list[Any]) -> Any:
        """Per-batch predictions joined in order (tensors on CPU, or lists)."""
        if isinstance(parts[0], Tensor):
            return torch.cat([p.cpu() for p in parts])
        return [row for part in parts for row in part]

    @staticmethod
    def predictions_to_json(predictions: Any) -> list[Any]:
        """One JSON value per sample; float32 scores round-trip exactly through Python floats."""
        return predictions.tolist() if isinstance(predictions, Tensor) else list(predictions)

    def make_metrics(self) -> MetricCollection:
        available = self.all_metrics()
        return MetricCollection({name: available[name] for name in self.spec.metrics}, compute_groups=False)

    def inputs(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """The modality tensors of a batch, keyed by modality name (a modality left out of the batch is absent)."""
        return {m: batch[m] for m in self.spec.modalities() if m in batch}

    @staticmethod
    def scores(metrics: MetricCollection) -> dict[str, float]:
        return {name: float(torch.as_tensor(value).float()) for name, value in metrics.compute().items()}
