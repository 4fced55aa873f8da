"""The Lightning system: one step over a batch of every task, per-task metrics, best-checkpoint selection score.

The model is a plain nn.Module (``models/multitask.py``); this class only adds the training recipe around it.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from mtl_bench.config.schema import TrainConfig
from mtl_bench.losses.distillation import Distillation
from mtl_bench.tasks.base import TaskType
from mtl_bench.training.distributed import average_gradients, reduce_step, without_reducer
from mtl_bench.weighting.base import Weighting

SCORE = "val/score"  # checkpoint selection: mean over tasks of the main score (negated when lower is better)


def selection_score(scores: dict[str, dict[str, float]], tasks: dict[str, TaskType]) -> float:
    """Mean over tasks of each main score, signed so that higher is always better."""
    signed = [
        scores[name][task.spec.main_score] * (1.0 if task.spec.higher_is_better else -1.0)
        for name, task in sorted(tasks.items())
    ]
    return sum(signed) / len(signed)


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate multiplier: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def trainable(params: list[nn.Parameter]) -> list[nn.Parameter]:
    return [p for p in params if p.requires_grad]


def last_shared_layer(sharing: nn.Module, shared: list[nn.Parameter]) -> list[nn.Parameter]:
    """The direct parameters of the last-registered module that owns shared parameters (GradNorm's W)."""
    ids = {id(p) for p in shared}
    for module in reversed(list(sharing.modules())):
        direct = [p for p in module.parameters(recurse=False) if id(p) in ids]
        if direct:
            return direct
    return []


def bind_weighting(weighting: Weighting, model: nn.Module) -> None:
    """Tell the weighting which trainable parameters are shared between tasks and which belong to one task."""
    shared = trainable(model.sharing.shared_parameters())
    ids = {id(p) for p in shared}
    specific = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    weighting.bind(shared, specific, last_shared_layer(model.sharing, shared))


class MultiTaskSystem(L.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        tasks: dict[str, TaskType],
        weighting: Weighting,
        train: TrainConfig,
        total_steps: int,
        distillation: Distillation | None = None,
    ) -> None:
        """``distillation``: train as a student of its frozen teacher (``losses/distillation.py``); None: plainly."""
        super().__init__()
        self.model = model
        self.weighting = weighting
        self.tasks = dict(sorted(tasks.items()))
        self.names = list(self.tasks)  # dataloader_idx -> task name, in the loaders' (sorted) order
        self.train_cfg = train
        self.total_steps = total_steps
        self.val_metrics = nn.ModuleDict({n: t.make_metrics() for n, t in self.tasks.items()})
        self.val_history: list[dict[str, dict[str, float]]] = []  # per epoch: task -> metric -> value
        self._epoch_losses: dict[str, list[Tensor]] = {n: [] for n in self.names}
        self.samples_seen = 0
        self.step_seconds = 0.0  # summed wall time of training steps (forward, backward, update; no data loading)
        self.automatic_optimization = False  # weightings own the backward pass (gradient-based ones need it)
        bind_weighting(weighting, model)
        self.distillation = distillation
        if distillation is not None:
            self.teacher = distillation.teacher  # a submodule, so it moves to the student's device

    # training -------------------------------------------------------------------------------------------------
    def task_loss(self, name: str, batch: dict[str, Any]) -> Tensor:
        """Task ``name``'s training loss on ``batch``; for a student, mixed with the teacher's soft targets."""
        task, d = self.tasks[name], self.distillation
        if d is None:
            return task.loss(self.model, batch)
        d.teacher.eval()  # Lightning puts every submodule in train mode at each epoch; the teacher stays in eval
        kd = task.distill_loss(self.model, d.teacher, batch, d.temperature)
        return d.alpha * kd + (1 - d.alpha) * task.loss(self.model, batch)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        start = time.perf_counter()
        losses = {name: self.task_loss(name, b) for name, b in sorted(batch.items()) if b is not None}
        # DDP: losses averaged and samples summed over the processes, so all of them stop together on a NaN
        stacked, samples = reduce_step(
            torch.stack([loss.detach() for loss in losses.values()]),
            sum(len(b["target"]) for b in batch.values() if b is not None),
        )
        if not torch.isfinite(stacked).all():  # one host sync per step, whatever the number of tasks
            name, value = next((n, v) for n, v in zip(losses, stacked.tolist(), strict=True) if not math.isfinite(v))
            raise FloatingPointError(f"task {name}: loss is {value} at step {self.global_step}")
        for name, loss in zip(losses, stacked, strict=True):
            self._epoch_losses[name].append(loss)
        self.samples_seen += samples
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        with without_reducer(self._trainer):  # DDP: gradients are averaged below instead (training/distributed.py)
            self.weighting.backward(losses, self.model.sharing.regularization(), backward=self.manual_backward)
        average_gradients(self.parameters())
        if self.train_cfg.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.train_cfg.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()
        if self.weighting.needs_losses_after_step:  # FAMO after=same_batch: the same batches, re-scored, no graph
            with torch.no_grad():
                after = {n: self.task_loss(n, b) for n, b in sorted(batch.items()) if b is not None}
            self.weighting.after_step(after)
        self.lr_schedulers().step()
        if stacked.is_cuda:
            torch.cuda.synchronize(stacked.device)  # host time must cover the device work it launched
        self.step_seconds += time.perf_counter() - start

    def on_train_epoch_end(self) -> None:
        means = {n: float(torch.stack(v).mean()) for n, v in self._epoch_losses.items() if v}
        self.log_dict({f"train/{n}/loss": v for n, v in means.items()})
        self.weighting.on_epoch_end(means)
        self._epoch_losses = {n: [] for n in self.names}

    def configure_optimizers(self) -> Any:
        cfg = self.train_cfg
        decay = [p for p in self.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, cfg.warmup_steps, self.total_steps)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # validation (per epoch, for checkpoint selection; the test split is scored outside: commands/phases.py) ----
    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        name = self.names[dataloader_idx]
        self.tasks[name].update_metrics(self.val_metrics[name], self.model, batch)

    def on_validation_epoch_end(self) -> None:
        scores = {name: TaskType.scores(self.val_metrics[name]) for name in self.names}
        for name in self.names:
            self.val_metrics[name].reset()
        self.val_history.append(scores)
        flat = {f"val/{t}/{m}": v for t, ms in scores.items() for m, v in ms.items()}
        flat[SCORE] = selection_score(scores, self.tasks)
        self.log_dict(flat)
