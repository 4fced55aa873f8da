"""The Lightning Trainer of every training command (run, pretrain), and the settings it runs under."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.utilities.warnings import PossibleUserWarning

from mtl_bench.config.schema import RunConfig
from mtl_bench.training.checkpoint_io import AtomicCheckpointIO
from mtl_bench.training.system import SCORE


class TrainerSettings(NamedTuple):
    accelerator: str  # "cpu" or "gpu"
    precision: str  # Lightning precision, e.g. "32-true" or "bf16-mixed"
    deterministic: bool  # exact, repeatable kernels (on CPU)


def trainer_settings(cfg: RunConfig) -> TrainerSettings:
    """(accelerator, precision, deterministic): GPU with bf16 autocast when present, exact float32 on CPU."""
    accelerator = cfg.train.accelerator
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    precision = cfg.train.precision
    if precision == "auto":
        precision = "bf16-mixed" if accelerator == "gpu" else "32-true"
    return TrainerSettings(accelerator, precision, accelerator == "cpu")


def quiet_libraries() -> None:
    """Keep the terminal to our progress bar and table: no Lightning tips, no MLflow schema-migration lines."""
    import mlflow  # noqa: F401  (mlflow sets its loggers' levels on import; ours must come after)

    for name in ("lightning.pytorch", "lightning.fabric", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=PossibleUserWarning)
    warnings.filterwarnings("ignore", message=".*treespec.*", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*treespec.*", category=FutureWarning)


def make_trainer(
    cfg: RunConfig,
    out: Path,
    logger: Any,
    accelerator: str,
    precision: str,
    deterministic: bool,
    callbacks: list[Any] | None = None,
    best_checkpoint: bool = True,
    **overrides: Any,
) -> L.Trainer:
    """The Trainer of a run: best-validation checkpoint, atomic checkpoint writes, rich progress, epoch logging."""
    callbacks = list(callbacks or [])
    if best_checkpoint and overrides.get("limit_val_batches") != 0:
        callbacks.insert(  # first: ckpt_path="best" means the first ModelCheckpoint's best
            0, ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor=SCORE, mode="max", save_top_k=1)
        )
    if cfg.train.progress:
        callbacks.append(RichProgressBar(leave=True))
    settings: dict[str, Any] = dict(
        accelerator=accelerator,
        devices=cfg.train.devices,
        strategy=cfg.train.strategy,  # ddp: Lightning launches one process per device (training/distributed.py)
        num_nodes=cfg.train.num_nodes,
        precision=precision,
        max_epochs=cfg.train.epochs,
        limit_train_batches=cfg.train.limit_train_batches,
        deterministic=deterministic,
        logger=logger,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        num_sanity_val_steps=0,
        enable_progress_bar=cfg.train.progress,
        enable_model_summary=False,
        log_every_n_steps=10**9,  # metrics are logged per epoch only
        default_root_dir=str(out),
    )
    return L.Trainer(**(settings | overrides))
