"""Captioning (text generation): teacher-forced cross-entropy, BLEU-4 / ROUGE-L / CIDEr-D on decoded captions,
most-frequent-caption trivial baseline.

References are stored in the caption tokenisation (``data.text.caption_text``: lower-cased, punctuation split off),
the same one the tokenizer's ``decode`` produces, so a model can generate its reference exactly; the metrics apply it
again to both sides (it is idempotent), which also normalises captions submitted as JSON.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_bench.config.schema import ModelConfig
from mtl_bench.core.distributed import mean_over_workers
from mtl_bench.data.batches import TaskData
from mtl_bench.data.text import PAD_ID, caption_text
from mtl_bench.heads import HEADS
from mtl_bench.losses.distillation import softmax_kl
from mtl_bench.metrics.captioning import caption_metrics, tokenised
from mtl_bench.metrics.cider_resample import CiderScorer
from mtl_bench.metrics.resample import ItemScorer
from mtl_bench.tasks import TASK_TYPES
from mtl_bench.tasks.base import TaskType


@TASK_TYPES.register("captioning")
class Captioning(TaskType):
    head = "caption"
    directions = {"bleu4": True, "bleu4_coco": True, "rougeL": True, "rougeL_coco": True, "cider": True}
    beam_size = 1

    def encode_targets(self, column: list[Any], tokenize: Any) -> tuple[Tensor, list[list[str]]]:
        """Token ids [N, L] (BOS .. EOS, padded) and the captions, in the caption tokenisation, as single references."""
        texts = [str(c) for c in column]
        return tokenize(texts, bos_eos=True), [[caption_text(t)] for t in texts]

    def build_head(self, cfg: ModelConfig) -> nn.Module:
        self.beam_size = cfg.beam_size
        return HEADS.get(self.head)(
            cfg.dim, self.ctx.vocab_size, layers=cfg.caption_layers, heads=cfg.heads,
            max_len=self.ctx.max_text_len, dropout=cfg.dropout,
        )

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> Tensor:
        ids = batch["target"]
        logits = model(self.spec.name, self.inputs(batch), ids=ids[:, :-1])
        targets = ids[:, 1:].flatten()
        total = F.cross_entropy(logits.flatten(0, 1), targets, ignore_index=PAD_ID, reduction="sum")
        # Mean over the real tokens of the GLOBAL batch: under DDP each process divides by the mean token count of
        # the processes, so averaging the processes' gradients gives exactly the one-process gradient.
        return total / mean_over_workers((targets != PAD_ID).sum().float()).clamp(min=1.0)

    def distill_loss(self, student: nn.Module, teacher: nn.Module, batch: dict[str, Any], temperature: float) -> Tensor:
        """Token-level KL(teacher || student) of the next-token distributions at temperature T, both teacher-forced
        on the ground-truth caption, averaged over the real (non-padding) target tokens, * T**2."""
        ids, inputs = batch["target"], self.inputs(batch)
        with torch.no_grad():
            target = teacher(self.spec.name, inputs, ids=ids[:, :-1])
        logits = student(self.spec.name, inputs, ids=ids[:, :-1])
        return softmax_kl(logits, target, temperature, mask=ids[:, 1:] != PAD_ID)

    def all_metrics(self) -> dict[str, Any]:
        return dict(caption_metrics().items())

    def predict(self, model: nn.Module, batch: dict[str, Any]) -> list[str]:
        features = model.features(self.spec.name, self.inputs(batch))
        return self.ctx.decode(model.heads[self.spec.name].generate(features, beam_size=self.beam_size))

    def item_scorer(self, predictions: list[str], data: TaskData, metric: str | None = None) -> ItemScorer:
        """CIDEr-D: n-gram counts once, document frequencies and scores per block of replicates from sparse products
        (``metrics/cider_resample.py``; a repeated item counts as often as drawn, as ``cider_d`` on the taken
        corpus does). BLEU and ROUGE take the generic recomputation."""
        metric = self.scored_metric(metric)
        if metric != "cider":
            return super().item_scorer(predictions, data, metric)
        cider = self.all_metrics()["cider"]
        return CiderScorer(*tokenised(predictions, self.metric_target(data.target, data.references)), cider.n,
                           cider.sigma)

    def metric_target(self, target: Tensor, references: list[list[str]] | None) -> list[list[str]]:
        return references or []

    def predictions_from_json(self, rows: list[Any]) -> list[str]:
        """One generated caption (a string) per image."""
        for i, value in enumerate(rows):
            if not isinstance(value, str):
                raise ValueError(f"sample {i}: {str(value)[:80]!r} is not a caption (a string)")
        return list(rows)

    def trivial_predictions(self, train: TaskData, test: TaskData) -> list[str]:
        """Every image gets the most frequent training caption."""
        most_common = Counter(refs[0] for refs in train.references or []).most_common(1)[0][0]
        return [most_common] * len(test)
