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

from mtl_bench.config.schema import RunConfig
from mtl_bench.core.types import TEXT
from mtl_bench.data.prepare import prepare_suite
from mtl_bench.errors import UserError
from mtl_bench.models.build import build_model
from mtl_bench.models.init_from import FORMAT, backbones, encoder_settings
from mtl_bench.results.io import write_bytes_atomic, write_json_atomic
from mtl_bench.tasks.catalog import suite_tasks
from mtl_bench.training.pretrainer import ContrastivePretrainer, pair_loaders, pair_sources, trained_keys
from mtl_bench.training.signals import Stopped, check, epochs_phrase, fitting, handle_stops, later, stop_callbacks


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
    from mtl_bench.training.disk import check_writable
    from mtl_bench.training.trainer import quiet_libraries

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
    trainer, tracker = _session(cfg, out, tracking_uri, prepared.fingerprint)
    seconds = _fit(cfg, trainer, tracker, system, sources)
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
    _write(cfg, out, trainer, tracker, ckpt, summary)
    return summary


def _session(cfg: RunConfig, out: Path, tracking_uri: str | None, fingerprint: str) -> tuple[L.Trainer, Any]:
    """The Trainer (no checkpoints) and the MLflow run, opened by rank 0 alone under DDP."""
    from mtl_bench.tracking.tracker import (
        EXPERIMENT_PREFIX,
        EpochMetricsLogger,
        NullTracker,
        Tracker,
        default_tracking_uri,
    )
    from mtl_bench.training.trainer import make_trainer, trainer_settings

    logger = EpochMetricsLogger(None)
    trainer = make_trainer(cfg, out, logger, *trainer_settings(cfg), stop_callbacks(),
                           best_checkpoint=False, enable_checkpointing=False)
    uri = tracking_uri or default_tracking_uri()
    with later(check=False):  # a stop signal waits for the MLflow run: `fitting` raises it, and the run is marked
        if trainer.is_global_zero:  # under DDP only rank 0 opens the MLflow run and writes files
            tracker = Tracker(uri, f"{EXPERIMENT_PREFIX}/{cfg.suite}/pretrain", run_name=out.name)
            tracker.log_params(cfg.model_dump(mode="json") | {"data_fingerprint": fingerprint})
        else:
            tracker = NullTracker(uri)
    logger.tracker = tracker
    return trainer, tracker


def _fit(cfg: RunConfig, trainer: L.Trainer, tracker: Any, system: ContrastivePretrainer, sources: Any) -> float:
    """Train; on a stop signal say after which epoch (no resume: nothing is kept); returns the seconds it took."""
    start = time.perf_counter()
    try:
        with fitting(trainer):  # SIGTERM / SIGINT stop at the end of the current batch (signals.py)
            trainer.fit(system, pair_loaders(sources, "train", cfg.train.batch_size, cfg.seed, True),
                        pair_loaders(sources, "validation", 2 * cfg.train.batch_size, 0, False))
    except Stopped as stop:
        tracker.finish("KILLED")
        done = trainer.fit_loop.epoch_progress.current.completed
        stop.epochs, stop.where = (done, cfg.train.epochs), epochs_phrase(done, cfg.train.epochs)
        raise
    except BaseException:
        tracker.finish("FAILED")
        raise
    return time.perf_counter() - start


def _write(cfg: RunConfig, out: Path, trainer: L.Trainer, tracker: Any, ckpt: dict[str, Any],
           summary: dict[str, Any]) -> None:
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
