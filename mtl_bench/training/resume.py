"""Resume after a crash: ``mtl-bench run ... --resume`` continues from the output folder's last epoch checkpoint, in
the same MLflow run, and ends with the same numbers as a run that never stopped (CPU; see README).

What makes that exact:
- ``checkpoints/last.ckpt`` is written (atomically) at the end of every training epoch, after the epoch-end hooks
  (so DWA's weights for the next epoch and the cleared loss lists are in it). Lightning stores the model, the
  optimiser, the LR schedule, the loop counters and the callbacks (the best-checkpoint tracker); the weightings
  keep every piece of their state in ``state_dict`` (buffers, parameters, ``get_extra_state``); ``RunState`` adds
  what Lightning does not know: the validation history, step time, samples seen, training time and the torch,
  numpy and Python RNG states.
- Batch order depends only on (seed, epoch), never on a generator's history (``data/batches.py``).
The granularity is one epoch: a run killed mid-epoch redoes that epoch from its start.

``run-state.json`` (written atomically when the run starts) holds the MLflow run id, the tracking URI and the
resolved config; ``results.json``, written last, marks a finished run.
"""

from __future__ import annotations

import json
import random
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from mtl_bench.errors import UserError
from mtl_bench.results.io import read_results, write_json_atomic
from mtl_bench.results.schema import Results
from mtl_bench.tracking.tracker import EXPERIMENT_PREFIX, NullTracker, Tracker, default_tracking_uri, flatten

CHECKPOINTS = "checkpoints"
LAST = "last"
RUN_STATE = "run-state.json"
RESULTS = "results.json"
DONE_FILES = (RESULTS, "predictions.json", RUN_STATE)
# Settings a resumed run may change: where and how fast it runs, not what it computes.
MAY_CHANGE = ("train.progress", "train.num_threads", "train.devices", "train.strategy", "train.num_nodes",
              "train.accelerator", "train.precision", "train.min_free_mb", "data.dir")


@dataclass(frozen=True)
class ResumePoint:
    checkpoint: Path
    run_id: str
    tracking_uri: str


def finished_results(out: Path) -> Results | None:
    """The results of a finished run in ``out`` (results.json is written last), validated, else None."""
    path = out / RESULTS
    return read_results(path) if path.is_file() else None


def resume_point(config: dict[str, Any], out: Path) -> ResumePoint:
    """Where ``--resume`` continues from; a UserError when there is nothing to resume or the config changed."""
    last = out / CHECKPOINTS / f"{LAST}.ckpt"
    if not last.is_file():
        raise UserError(f"--resume: no checkpoint to resume from in {out} (expected {last}; one is written at the "
                        "end of every epoch); run without --resume to start")
    try:
        state = json.loads((out / RUN_STATE).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"--resume: {out / RUN_STATE} is missing or unreadable ({err}); run without --resume") from err
    before, now = flatten(state["config"]), flatten(config)
    changed = [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k) and k not in MAY_CHANGE]
    if changed:
        key = changed[0]
        raise UserError(f"--resume: {key} is {now.get(key)!r} but the interrupted run used {before.get(key)!r} "
                        f"({len(changed)} setting(s) differ); resume with the same settings or start a new run")
    return ResumePoint(last, state["mlflow_run_id"], state["tracking_uri"])


def _remove_temp_files(out: Path) -> None:
    """Half-written files a killed run left behind (atomic writes go through ``.NAME...tmp``)."""
    for folder in (out, out / CHECKPOINTS):
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def open_run(
    is_rank_zero: bool,
    config: dict[str, Any],
    out: Path,
    tracking_uri: str | None,
    tags: dict[str, str],
    fingerprint: str,
    point: ResumePoint | None,
) -> Tracker | NullTracker:
    """Rank 0: a new MLflow run in a clean folder, or (``point``) the interrupted run reopened. Other ranks: none."""
    uri = tracking_uri or (point.tracking_uri if point else None) or default_tracking_uri()
    if not is_rank_zero:
        return NullTracker(uri)
    out.mkdir(parents=True, exist_ok=True)
    _remove_temp_files(out)
    experiment = f"{EXPERIMENT_PREFIX}/{config['suite']}"
    if point is not None:
        tracker = Tracker(uri, experiment, run_name=out.name, tags=tags, run_id=point.run_id)
        if tracker.run_id == point.run_id:
            return tracker
    else:  # a rerun into the same folder starts clean
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        for name in DONE_FILES:
            (out / name).unlink(missing_ok=True)
        tracker = Tracker(uri, experiment, run_name=out.name, tags=tags)
    tracker.log_params(config)
    tracker.log_params({"data_fingerprint": fingerprint})
    write_json_atomic(out / RUN_STATE, {"mlflow_run_id": tracker.run_id, "tracking_uri": uri, "config": config})
    return tracker


def last_checkpoint(out: Path) -> ModelCheckpoint:
    """``checkpoints/last.ckpt`` at the end of every training epoch, after the epoch-end hooks, overwritten."""
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r".*multiple `ModelCheckpoint` callbacks")  # "best" is the first
    return ModelCheckpoint(dirpath=out / CHECKPOINTS, filename=LAST, save_on_train_epoch_end=True,
                           enable_version_counter=False)


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and Python RNG states, in types ``torch.load(weights_only=True)`` accepts."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(internal), py_gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, py_gauss = state["python"]
    random.setstate((version, tuple(internal), py_gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RunState(Callback):
    """Checkpoints what Lightning does not: the system's histories and counters, training time, RNG states.

    Training starts from the RNG state of ``seed_everything(seed)`` whatever the number of processes (Lightning's
    DDP strategy re-seeds every process that way; one process is re-seeded the same way here), so random choices
    inside a step (PCGrad's task order, RLW's weights, dropout) are the same with 1 or N processes. After a resume
    the saved states are put back at the start of the first epoch, where the uninterrupted run stood when it saved
    them (nothing between the end-of-epoch save and the next epoch draws random numbers: the data loaders have
    generators of their own).
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.seconds_before = 0.0  # training time before this process resumed the run
        self._started = time.perf_counter()
        self._rng: dict[str, Any] | None = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._started = time.perf_counter()

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        seed_everything(self.seed, workers=True, verbose=False)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        checkpoint["mtl_bench"] = {
            "val_history": pl_module.val_history,
            "step_seconds": pl_module.step_seconds,
            "samples_seen": pl_module.samples_seen,
            "train_seconds": self.seconds_before + time.perf_counter() - self._started,
            "rng": rng_state(),
        }

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn != "fit" or "mtl_bench" not in checkpoint:  # testing loads the best checkpoint too
            return
        state = checkpoint["mtl_bench"]
        pl_module.val_history = state["val_history"]
        pl_module.step_seconds = state["step_seconds"]
        pl_module.samples_seen = state["samples_seen"]
        self.seconds_before = state["train_seconds"]
        self._rng = state["rng"]

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self._rng is not None:
            set_rng_state(self._rng)
            self._rng = None
