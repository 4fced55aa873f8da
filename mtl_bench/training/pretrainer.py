"""Contrastive pre-training machinery: the (visual, text) pair sources of a suite and the Lightning module that
trains the encoders on them with a symmetric InfoNCE loss (``commands/pretrain.py`` is the command around it)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import Tensor, nn

from mtl_bench.config.schema import RunConfig
from mtl_bench.core.types import IMAGE, TEXT, VIDEO
from mtl_bench.data.batches import TaskData, task_loader
from mtl_bench.data.prepare import PreparedSuite
from mtl_bench.fusion.functional import masked_mean
from mtl_bench.losses.contrastive import LogitScale, info_nce
from mtl_bench.training.system import warmup_cosine


def pair_sources(prepared: PreparedSuite) -> dict[str, dict[str, TaskData]]:
    """task name -> split -> TaskData holding one visual modality and the text (targets: the row index)."""
    sources = {}
    for name, task in sorted(prepared.tasks.items()):
        visual = [m for m in (IMAGE, VIDEO) if m in task.spec.inputs]
        if TEXT not in task.spec.inputs or not visual:
            continue
        sources[name] = {
            split: TaskData({visual[0]: d.inputs[visual[0]], TEXT: d.inputs[TEXT]}, torch.arange(len(d)))
            for split, d in prepared.splits[name].items()
        }
    return sources


def trained_keys(encoders: nn.ModuleDict, modalities: set[str]) -> list[str]:
    """Encoder weights the pairs train: the paired modalities', plus a video encoder's frame encoder when that is
    the image encoder itself (shared object); a video encoder's temporal layers are trained only by video pairs."""
    keys = [k for k in encoders.state_dict() if k.split(".")[0] in modalities]
    if VIDEO not in modalities and IMAGE in modalities and VIDEO in encoders:
        keys += [k for k in encoders.state_dict() if k.startswith(f"{VIDEO}.frame_encoder.")]
    return keys


def flip(x: Tensor) -> Tensor:
    """The augmented view: each photo or clip mirrored left-right with probability 1/2 (captions never say left or
    right, so the pair stays true)."""
    mirror = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(mirror.view(-1, *[1] * (x.ndim - 1)), x.flip(-1), x)


class ContrastivePretrainer(L.LightningModule):
    """Encoders + one linear projection per modality + a learnable temperature; loss: mean InfoNCE over sources."""

    def __init__(self, encoders: nn.ModuleDict, dim: int, sources: dict[str, str], cfg: RunConfig, total: int):
        super().__init__()
        self.encoders = encoders
        self.project = nn.ModuleDict({m: nn.Linear(dim, dim) for m in sorted({*sources.values(), TEXT})})
        self.scale = LogitScale()
        self.sources = sources  # task name -> its visual modality
        self.names = sorted(sources)
        self.cfg = cfg
        self.total_steps = total
        self.history: list[dict[str, float]] = []
        self._val: dict[str, list[tuple[Tensor, Tensor]]] = {}
        self._train: list[Tensor] = []

    def embed(self, modality: str, x: Tensor) -> Tensor:
        tokens = self.encoders[modality](x)
        return self.project[modality](masked_mean(tokens.x, tokens.mask))

    def pair_loss(self, name: str, batch: dict[str, Tensor], augment: bool) -> tuple[Tensor, Tensor, Tensor]:
        visual = self.sources[name]
        pixels = flip(batch[visual]) if augment else batch[visual]
        v, t = self.embed(visual, pixels), self.embed(TEXT, batch[TEXT])
        return info_nce(v, t, self.scale()), v, t

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        losses = [self.pair_loss(n, b, augment=True)[0] for n, b in sorted(batch.items()) if b is not None]
        loss = torch.stack(losses).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretrain: contrastive loss is {float(loss)} at step {self.global_step}")
        self._train.append(loss.detach())
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        name = self.names[dataloader_idx]
        _, v, t = self.pair_loss(name, batch, augment=False)
        self._val.setdefault(name, []).append((v, t))

    def on_validation_epoch_end(self) -> None:
        """Per source, text -> image Recall@1 over the whole validation split (chance: 1 / split size)."""
        row: dict[str, float] = {"epoch": float(self.current_epoch), "temperature": float(1 / self.scale())}
        if self._train:
            row["train_loss"] = float(torch.stack(self._train).mean())
        for name, parts in sorted(self._val.items()):
            v = nn.functional.normalize(torch.cat([p[0] for p in parts]), dim=-1)
            t = nn.functional.normalize(torch.cat([p[1] for p in parts]), dim=-1)
            row[f"{name}/t2i_r1"] = float(((t @ v.T).argmax(1) == torch.arange(len(t), device=t.device)).float().mean())
            row[f"{name}/val_loss"] = float(info_nce(v, t, self.scale(), gather=False))
        self.history.append(row)
        self.log_dict({f"pretrain/{k}": v for k, v in row.items() if k != "epoch"})
        self._val, self._train = {}, []

    def configure_optimizers(self) -> Any:
        train = self.cfg.train
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, train.warmup_steps, self.total_steps)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def pair_loaders(sources: dict[str, dict[str, TaskData]], split: str, batch: int, seed: int, train: bool) -> Any:
    loaders = {
        name: task_loader(s[split], batch, shuffle=train, seed=seed * 1000 + i)
        for i, (name, s) in enumerate(sorted(sources.items()))
    }
    return CombinedLoader(loaders, mode="max_size_cycle" if train else "sequential")
