"""``run(cfg)``: one benchmark run from a resolved config to results.json and an MLflow run.

Order matters for bad input: every name, file and the output folder are checked before any data is generated,
any model is built, or anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mtl_bench.config.schema import RunConfig
from mtl_bench.errors import UserError
from mtl_bench.fusion import FUSIONS
from mtl_bench.sharing import SHARINGS
from mtl_bench.tasks.catalog import suite_tasks
from mtl_bench.weighting import WEIGHTINGS


def default_output_dir(cfg: RunConfig) -> Path:
    return Path("runs") / cfg.suite / f"{cfg.sharing.name}-{cfg.fusion.name}-{cfg.weighting.name}" / f"seed{cfg.seed}"


def check_writable(path: Path) -> None:
    """Fail before training, not after, when results could not be written."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"--output-dir {path}: {probe} exists and is not a folder")
    if not os.access(probe, os.W_OK):
        raise UserError(f"--output-dir {path}: {probe} is not writable")


def validate(cfg: RunConfig, output_dir: Path) -> None:
    suite_tasks(cfg.suite)  # the suite and every task it names
    SHARINGS.get(cfg.sharing.name)
    FUSIONS.get(cfg.fusion.name)
    WEIGHTINGS.get(cfg.weighting.name)
    check_writable(output_dir)


def _trainer_settings(cfg: RunConfig) -> tuple[str, str, bool]:
    """(accelerator, precision, deterministic): GPU with bf16 autocast when present, exact float32 on CPU."""
    accelerator = cfg.train.accelerator
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    precision = cfg.train.precision
    if precision == "auto":
        precision = "bf16-mixed" if accelerator == "gpu" else "32-true"
    return accelerator, precision, accelerator == "cpu"


def run(
    cfg: RunConfig,
    output_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    baselines_dir: str | Path | None = None,
    parent_run_id: str | None = None,
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """Train, select the best validation checkpoint, test it, and write ``output_dir/results.json``.

    ``callbacks``: extra Lightning callbacks for the Trainer (a sweep's pruning callback); none by default.
    """
    from mtl_bench.training.fit import fit_and_test  # heavy imports (lightning, datasets) after validation

    out = Path(output_dir) if output_dir is not None else default_output_dir(cfg)
    validate(cfg, out)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    accelerator, precision, deterministic = _trainer_settings(cfg)
    if accelerator == "gpu":
        torch.set_float32_matmul_precision("high")  # TF32 for the float32 parts outside bf16 autocast
    root = Path(baselines_dir) if baselines_dir is not None else None
    return fit_and_test(cfg, out, tracking_uri, accelerator, precision, deterministic, root, parent_run_id, callbacks)
