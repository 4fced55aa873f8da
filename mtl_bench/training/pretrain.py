"""``mtl-bench pretrain``: CLIP-style contrastive pre-training of a suite's encoders on its unlabelled pairs.

Pairs come from every task of the suite that has a text input and an image or video input (ecommerce: photo and
title from product-classification, photo and caption from product-search), training splits only. Each pair source
gets a symmetric InfoNCE loss with one learnable temperature; under DDP the negatives are gathered from every
worker. The encoders are those a run of the same config builds (a scratch or pretrained image encoder also encodes
video frames), so ``mtl-bench run --init-from DIR/pretrained.pt`` fine-tunes from them.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import Tensor, nn

from mtl_bench.config.schema import RunConfig
from mtl_bench.core.types import IMAGE, TEXT, VIDEO
from mtl_bench.data.batches import TaskData, task_loader
from mtl_bench.data.prepare import PreparedSuite, prepare_suite
from mtl_bench.errors import UserError
from mtl_bench.fusion.functional import masked_mean
from mtl_bench.losses.contrastive import LogitScale, info_nce
from mtl_bench.models.build import build_model
from mtl_bench.models.init_from import FORMAT, backbones, encoder_settings
from mtl_bench.results.io import write_bytes_atomic, write_json_atomic
from mtl_bench.tasks.catalog import suite_tasks
from mtl_bench.training.signals import Stopped, check, epochs_phrase, fitting, handle_stops, later, stop_callbacks
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


def _loaders(sources: dict[str, dict[str, TaskData]], split: str, batch: int, seed: int, train: bool) -> Any:
    loaders = {
        name: task_loader(s[split], batch, shuffle=train, seed=seed * 1000 + i)
        for i, (name, s) in enumerate(sorted(sources.items()))
    }
    return CombinedLoader(loaders, mode="max_size_cycle" if train else "sequential")


def pretrain(cfg: RunConfig, output_dir: str | Path, tracking_uri: str | None = None) -> dict[str, Any]:
    """Pre-train, then write ``output_dir/pretrained.pt`` (encoder weights + the settings they fit) and
    ``output_dir/pretrain.json`` (per-epoch losses, validation Recall@1, temperature, time).

    SIGTERM or SIGINT stops training at the end of the current batch and raises ``Stopped`` (the MLflow run is
    marked KILLED). Pre-training keeps no epoch checkpoints, so it does not resume: the same command starts over.
    """
    with handle_stops():
        try:
            return _pretrain(cfg, Path(output_dir), tracking_uri)
        except Stopped as stop:
            if stop.epochs is None:
                stop.epochs, stop.where = (0, cfg.train.epochs), epochs_phrase(None, cfg.train.epochs)
            stop.advice = "pretrain keeps no epoch checkpoints and cannot resume; rerunning starts over"
            raise


def _pretrain(cfg: RunConfig, out: Path, tracking_uri: str | None) -> dict[str, Any]:
    from mtl_bench.tracking.tracker import (
        EXPERIMENT_PREFIX,
        EpochMetricsLogger,
        NullTracker,
        Tracker,
        default_tracking_uri,
    )
    from mtl_bench.training.fit import make_trainer, quiet_libraries
    from mtl_bench.training.run import _trainer_settings, check_writable

    check_writable(out)
    quiet_libraries()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    prepared = prepare_suite(suite_tasks(cfg.suite), cfg.data, cfg.model.text_encoder)
    sources = pair_sources(prepared)
    if not sources:
        raise UserError(f"suite {cfg.suite}: no task pairs a text input with an image or video input to pre-train on")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    encoders = backbones(build_model(cfg, prepared.tasks, prepared.vocab_size))[0].encoders
    visual = {name: next(m for m in s["train"].inputs if m != TEXT) for name, s in sources.items()}
    steps = max(-(-len(s["train"]) // cfg.train.batch_size) for s in sources.values())
    system = ContrastivePretrainer(encoders, cfg.model.dim, visual, cfg, steps * cfg.train.epochs)
    accelerator, precision, deterministic = _trainer_settings(cfg)
    logger = EpochMetricsLogger(None)
    trainer = make_trainer(cfg, out, logger, accelerator, precision, deterministic, stop_callbacks(),
                           best_checkpoint=False, enable_checkpointing=False)
    uri = tracking_uri or default_tracking_uri()
    with later(check=False):  # a stop signal waits for the MLflow run: `fitting` raises it, and the run is marked
        if trainer.is_global_zero:  # under DDP only rank 0 opens the MLflow run and writes files
            tracker = Tracker(uri, f"{EXPERIMENT_PREFIX}/{cfg.suite}/pretrain", run_name=out.name)
            tracker.log_params(cfg.model_dump(mode="json") | {"data_fingerprint": prepared.fingerprint})
        else:
            tracker = NullTracker(uri)
    logger.tracker = tracker
    start = time.perf_counter()
    try:
        with fitting(trainer):  # SIGTERM / SIGINT stop at the end of the current batch (signals.py)
            trainer.fit(system, _loaders(sources, "train", cfg.train.batch_size, cfg.seed, True),
                        _loaders(sources, "validation", 2 * cfg.train.batch_size, 0, False))
    except Stopped as stop:
        tracker.finish("KILLED")
        done = trainer.fit_loop.epoch_progress.current.completed
        stop.epochs, stop.where = (done, cfg.train.epochs), epochs_phrase(done, cfg.train.epochs)
        raise
    except BaseException:
        tracker.finish("FAILED")
        raise
    seconds = time.perf_counter() - start
    state = encoders.state_dict()
    keys = trained_keys(encoders, {*visual.values(), TEXT})
    ckpt = {
        "format": FORMAT, "suite": cfg.suite, "data_fingerprint": prepared.fingerprint,
        "vocab_size": prepared.vocab_size, "settings": encoder_settings(cfg), "config": cfg.model_dump(mode="json"),
        "encoders": {k: state[k].detach().cpu().clone() for k in keys},
    }
    summary = {
        "suite": cfg.suite, "seed": cfg.seed, "sources": visual, "train_seconds": round(seconds, 3),
        "pairs": {n: {sp: len(d) for sp, d in s.items()} for n, s in sources.items()},
        "history": system.history, "checkpoint": str(out / "pretrained.pt"), "mlflow_run_id": tracker.run_id,
    }
    with later(check=False):  # pretrained.pt, pretrain.json and the FINISHED mark: all of them, or the stop first
        if trainer.global_rank == 0:
            buffer = io.BytesIO()
            torch.save(ckpt, buffer)
            write_bytes_atomic(out / "pretrained.pt", buffer.getvalue())
            write_json_atomic(out / "pretrain.json", summary)
            tracker.log_artifact(out / "pretrain.json")
        tracker.finish("FINISHED")
    try:
        check()
    except Stopped as stop:
        stop.epochs = (cfg.train.epochs, cfg.train.epochs)
        stop.where = f"{epochs_phrase(cfg.train.epochs, cfg.train.epochs)} (finished: {out / 'pretrained.pt'})"
        raise
    return summary
