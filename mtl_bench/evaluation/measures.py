"""Evaluation outside the Trainer: test predictions, FLOPs per sample and robustness to a missing modality.

Predictions, scores and robustness run the trained model in eval mode over batches of the tasks' data, on whatever
device the model is on; the FLOP count runs one training-mode forward (dropout on, the RNG state forked and restored).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mtl_bench.core.types import IMAGE, TEXT, VIDEO
from mtl_bench.data.batches import TaskData, task_loader
from mtl_bench.data.text import PAD_ID
from mtl_bench.tasks.base import TaskType


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _drop_image(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if k != IMAGE}


def _empty_title(batch: dict[str, Any]) -> dict[str, Any]:
    return batch | {TEXT: torch.full_like(batch[TEXT], PAD_ID)}


def _drop_frames(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if k != VIDEO}


# The ablation per modality: a missing photo, an empty title (all padding), a clip without frames.
ABLATIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    IMAGE: _drop_image,
    TEXT: _empty_title,
    VIDEO: _drop_frames,
}
ABLATION_NAMES = {IMAGE: "no_image", TEXT: "empty_title", VIDEO: "no_frames"}


@torch.no_grad()
def flops_per_sample(model: nn.Module, tasks: dict[str, TaskType], data: dict[str, TaskData]) -> dict[str, int]:
    """Forward FLOPs of one training sample per task (teacher-forced loss), counted by torch's FlopCounterMode.

    Counted in training mode: in eval mode PyTorch runs transformer encoder layers through one fused kernel that
    the counter does not see. Dropout draws random numbers in training mode, so the RNG state is restored after.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.train()
    out = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for name, task in sorted(tasks.items()):
            batch = _to(next(iter(task_loader(data[name], batch_size=8, shuffle=False, seed=0))), device)
            with FlopCounterMode(display=False) as counter:
                task.loss(model, batch)
            out[name] = int(counter.get_total_flops() // len(batch["target"]))
    model.train(was_training)
    return out


@torch.no_grad()
def score(model: nn.Module, task: TaskType, data: TaskData, batch_size: int, ablate: Callable | None = None) -> float:
    """The task's main score on ``data``, optionally with a modality ablated from every batch."""
    device = next(model.parameters()).device
    metrics = task.make_metrics().to(device)
    for batch in task_loader(data, batch_size, shuffle=False, seed=0):
        batch = _to(batch, device)
        task.update_metrics(metrics, model, ablate(batch) if ablate else batch)
    return TaskType.scores(metrics)[task.spec.main_score]


@torch.no_grad()
def predict(model: nn.Module, task: TaskType, data: TaskData, batch_size: int) -> Any:
    """The task's predictions for every sample of ``data``, in order (eval mode; the model's mode is restored)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = task_loader(data, batch_size, shuffle=False, seed=0)
    parts = [task.predict(model, _to(batch, device)) for batch in loader]
    model.train(was_training)
    return task.concat(parts)


def robustness(
    model: nn.Module, tasks: dict[str, TaskType], data: dict[str, TaskData], batch_size: int, full: dict[str, float]
) -> dict[str, dict[str, float]]:
    """Per task, the drop of the main score on ``data`` when one input modality is missing (``full`` - ablated).

    A drop is signed so that positive always means worse. Only modalities a task has are ablated, and only when
    at least one other modality remains (a task with a single input has nothing left to predict from). A task
    whose inputs are the two sides of a pair (``ablate_inputs`` False: retrieval) gets no ablation: {}.
    """
    was_training = model.training
    model.eval()
    out: dict[str, dict[str, float]] = {}
    for name, task in sorted(tasks.items()):
        modalities = task.spec.modalities()
        sign = 1.0 if task.spec.higher_is_better else -1.0
        drops = {}
        for modality in modalities if task.ablate_inputs else []:
            if modality != TEXT and len(modalities) == 1:
                continue  # removing the only input leaves nothing (an empty title still is an input)
            ablated = score(model, task, data[name], batch_size, ABLATIONS[modality])
            drops[ABLATION_NAMES[modality]] = sign * (full[name] - ablated)
        out[name] = drops
    model.train(was_training)
    return out
