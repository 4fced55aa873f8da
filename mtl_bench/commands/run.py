"""``mtl-bench run``: one benchmark run from a resolved config to results.json and an MLflow run.

This module checks the input, handles ``--resume`` and stop signals, and hands the run to its phases
(``commands/phases.py``). Order matters for bad input: every name, file and the output folder are checked before
any data is generated, any model is built, or anything is written.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mtl_bench.commands.options import RunOptions
from mtl_bench.config.schema import RunConfig
from mtl_bench.fusion import FUSIONS
from mtl_bench.sharing import SHARINGS
from mtl_bench.tasks.catalog import suite_tasks
from mtl_bench.training.disk import check_free_space, check_writable
from mtl_bench.training.distributed import check_strategy
from mtl_bench.training.failures import RunFailed, explain
from mtl_bench.training.signals import Stopped, epochs_phrase, handle_stops
from mtl_bench.weighting import WEIGHTINGS

if TYPE_CHECKING:
    from mtl_bench.losses.distillation import Distillation
    from mtl_bench.results.schema import Results


def default_output_dir(cfg: RunConfig) -> Path:
    return Path("runs") / cfg.suite / f"{cfg.sharing.name}-{cfg.fusion.name}-{cfg.weighting.name}" / f"seed{cfg.seed}"


def validate(cfg: RunConfig, output_dir: Path) -> None:
    suite_tasks(cfg.suite)  # the suite and every task it names
    SHARINGS.get(cfg.sharing.name)
    FUSIONS.get(cfg.fusion.name)
    WEIGHTINGS.get(cfg.weighting.name)
    if cfg.model.init_from:
        from mtl_bench.models.init_from import read_checkpoint

        read_checkpoint(cfg.model.init_from)
    check_strategy(cfg.train.strategy)
    check_writable(output_dir)
    check_free_space(output_dir, cfg.train.min_free_mb * 2**20, f"a run (train.min_free_mb={cfg.train.min_free_mb})")


def run(
    cfg: RunConfig,
    output_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    baselines_dir: str | Path | None = None,
    parent_run_id: str | None = None,
    callbacks: list[Any] | None = None,
    distillation: Distillation | None = None,
    resume: bool = False,
) -> Results | None:
    """Train, select the best validation checkpoint, test it, write ``output_dir/results.json`` and return its
    ``Results`` (the typed schema of results.json, ``results/schema.py``).

    ``resume``: continue the run in ``output_dir`` from its last epoch checkpoint, in the same MLflow run
    (``training/resume.py``); a finished run is not run again: its results are read back and returned. Under DDP,
    processes other than rank 0 return None. A NaN loss or running out of GPU memory raises ``RunFailed`` with one
    line; SIGTERM or SIGINT raises ``Stopped`` (``training/signals.py``), saying after which epoch and how to continue
    (``--resume``).

    ``callbacks``: extra Lightning callbacks for the Trainer (a sweep's pruning callback); none by default.
    ``distillation``: a ``losses.distillation.Distillation`` (teacher, temperature, weight) to train as a student.
    """
    out = Path(output_dir) if output_dir is not None else default_output_dir(cfg)
    with handle_stops():
        try:
            root = Path(baselines_dir) if baselines_dir is not None else None
            options = RunOptions(tracking_uri, root, parent_run_id, list(callbacks or []), distillation)
            return _run(cfg, out, options, resume)
        except Stopped as stop:
            stop.resumable = stop.resumable or resume
            describe_stop(stop, out, cfg.train.epochs)
            raise


def last_finished_epoch(out: Path) -> int | None:
    """The epochs ``out/checkpoints/last.ckpt`` holds (what ``--resume`` continues after), None without one."""
    last = out / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None
    try:  # mmap: only the few bytes of the counter are read, however large the model
        return int(torch.load(last, map_location="cpu", weights_only=True, mmap=True)["epoch"]) + 1
    except Exception:  # unreadable: then it is not something to resume from
        return None


def describe_stop(stop: Stopped, out: Path, epochs: int) -> None:
    """Fill in after which epoch ``stop`` came and how to go on; a run whose folder holds no checkpoint of its own
    yet starts again (a fresh run clears the folder's old checkpoints only once training is about to start)."""
    if stop.epochs is not None:  # set by an inner layer
        return
    done = last_finished_epoch(out) if stop.resumable else None
    stop.epochs = (done or 0, epochs)
    stop.where = epochs_phrase(done, epochs)
    if (out / "results.json").is_file() and stop.resumable:
        stop.where += f" (the run had finished: {out / 'results.json'})"
    if done:
        stop.advice, stop.add_resume = "continue with", True


def _run(cfg: RunConfig, out: Path, options: RunOptions, resume: bool) -> Results | None:
    from mtl_bench.commands.phases import run_phases  # heavy imports (lightning, datasets) after checks
    from mtl_bench.training.resume import finished_results, resume_point
    from mtl_bench.training.trainer import trainer_settings

    validate(cfg, out)
    point = None
    if resume:
        finished = finished_results(out)
        if finished is not None:
            print(f"mtl-bench: {out} holds a finished run (results.json); nothing to resume", file=sys.stderr)
            return finished
        point = resume_point(cfg.model_dump(mode="json"), out)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    settings = trainer_settings(cfg)
    if settings.accelerator == "gpu":
        torch.set_float32_matmul_precision("high")  # TF32 for the float32 parts outside bf16 autocast
    try:
        return run_phases(cfg, out, settings, replace(options, resume_from=point))
    except (FloatingPointError, torch.cuda.OutOfMemoryError) as exc:
        raise RunFailed(explain(exc, cfg)) from exc
