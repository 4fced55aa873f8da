"""``run(cfg)``: one benchmark run from a resolved config to results.json and an MLflow run.

Order matters for bad input: every name, file and the output folder are checked before any data is generated,
any model is built, or anything is written.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from mtl_bench.config.schema import RunConfig
from mtl_bench.errors import UserError
from mtl_bench.fusion import FUSIONS
from mtl_bench.sharing import SHARINGS
from mtl_bench.tasks.catalog import suite_tasks
from mtl_bench.training.distributed import check_strategy
from mtl_bench.training.failures import RunFailed, explain
from mtl_bench.training.signals import Stopped, epochs_phrase, handle_stops
from mtl_bench.weighting import WEIGHTINGS


def default_output_dir(cfg: RunConfig) -> Path:
    return Path("runs") / cfg.suite / f"{cfg.sharing.name}-{cfg.fusion.name}-{cfg.weighting.name}" / f"seed{cfg.seed}"


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return probe


def check_writable(path: Path) -> None:
    """Fail before training, not after, when results could not be written (permissions or a read-only disk)."""
    probe = _nearest_existing(path)
    if not probe.is_dir():
        raise UserError(f"--output-dir {path}: {probe} exists and is not a folder")
    if not os.access(probe, os.W_OK):
        raise UserError(f"--output-dir {path}: {probe} is not writable")
    try:
        tempfile.TemporaryFile(dir=probe).close()  # root passes os.access everywhere, but not on a read-only disk
    except OSError as err:
        raise UserError(f"--output-dir {path}: cannot write in {probe} ({err.strerror})") from err


def check_free_space(path: Path, need_bytes: int, what: str) -> None:
    """Fail before training when the output folder's disk cannot hold ``what`` (``need_bytes``)."""
    free = shutil.disk_usage(_nearest_existing(path)).free
    if free < need_bytes:
        raise UserError(f"--output-dir {path}: {free / 2**20:.0f} MB free on its disk, but {what} needs about "
                        f"{need_bytes / 2**20:.0f} MB; free some space or choose another --output-dir")


def checkpoint_bytes(module: torch.nn.Module) -> int:
    """Size of one training checkpoint: every parameter and buffer, plus AdamW's two moments per trainable value."""
    tensors = [*module.parameters(), *module.buffers()]
    trainable = sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad)
    return sum(t.numel() * t.element_size() for t in tensors) + 2 * trainable


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
    distill: Any = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train, select the best validation checkpoint, test it, and write ``output_dir/results.json``.

    ``resume``: continue the run in ``output_dir`` from its last epoch checkpoint, in the same MLflow run
    (``training/resume.py``); a finished run is not run again: its results are returned. Under DDP, processes other
    than rank 0 return ``{}``. A NaN loss or running out of GPU memory raises ``RunFailed`` with one line; SIGTERM or
    SIGINT raises ``Stopped`` (``training/signals.py``), saying after which epoch and how to continue (``--resume``).

    ``callbacks``: extra Lightning callbacks for the Trainer (a sweep's pruning callback); none by default.
    ``distill``: a ``training.distill.Distillation`` (teacher, temperature, weight) to train this run as a student.
    """
    out = Path(output_dir) if output_dir is not None else default_output_dir(cfg)
    with handle_stops():
        try:
            return _run(cfg, out, tracking_uri, baselines_dir, parent_run_id, callbacks, distill, resume)
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


def _run(
    cfg: RunConfig,
    out: Path,
    tracking_uri: str | None,
    baselines_dir: str | Path | None,
    parent_run_id: str | None,
    callbacks: list[Any] | None,
    distill: Any,
    resume: bool,
) -> dict[str, Any]:
    from mtl_bench.training.fit import fit_and_test  # heavy imports (lightning, datasets) after validation
    from mtl_bench.training.resume import finished_results, resume_point

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
    accelerator, precision, deterministic = _trainer_settings(cfg)
    if accelerator == "gpu":
        torch.set_float32_matmul_precision("high")  # TF32 for the float32 parts outside bf16 autocast
    root = Path(baselines_dir) if baselines_dir is not None else None
    try:
        return fit_and_test(cfg, out, tracking_uri, accelerator, precision, deterministic, root, parent_run_id,
                            callbacks, distill, resume_from=point)
    except (FloatingPointError, torch.cuda.OutOfMemoryError) as exc:
        raise RunFailed(explain(exc, cfg)) from exc
