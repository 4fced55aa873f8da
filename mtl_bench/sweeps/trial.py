"""One Optuna trial: suggested params -> a run config per seed -> ordinary runs -> objective values.

Each seed is a ``commands.run.run()`` into ``<out>/trials/<number>/seed<k>`` (results.json, checkpoint, an MLflow
run with per-epoch metrics). Those runs are children of the trial's MLflow run, itself a child of the study's
parent run; the trial run holds the suggested params, the objective values, the mean validation score per epoch
and the Optuna study name and trial number as tags. Every MLflow call goes through an explicit client (``Tracker``),
so two trials in one process, or many workers, never write into each other's runs.

Pruning (one objective and a pruner): optuna-integration's Lightning callback reports the validation selection
score ``val/score`` after every epoch of seed 0 and stops the trial when the pruner says so; later seeds only run
for a trial that survived.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from mtl_bench.config.load import build_config
from mtl_bench.results.schema import Results
from mtl_bench.sweeps.objectives import objective_values
from mtl_bench.sweeps.space import suggest, to_sets
from mtl_bench.sweeps.spec import SweepSpec
from mtl_bench.tracking.tracker import EXPERIMENT_PREFIX, Tracker

SCORE = "val/score"  # training.system.SCORE, repeated so this module imports without torch


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one worker shares."""

    spec: SweepSpec
    study: str  # Optuna study name
    out: Path  # the sweep's output folder
    tracking_uri: str
    parent_run_id: str  # the study's MLflow run
    worker: str  # host:pid
    baselines_dir: Path | None = None

    @property
    def prunes(self) -> bool:
        return len(self.spec.objectives) == 1 and self.spec.pruner != "none"


def trial_folder(out: Path, number: int) -> Path:
    return out / "trials" / str(number)


def run_trial(trial: optuna.Trial, ctx: TrialContext) -> float | list[float]:
    """Train the trial's configuration on each seed and return its objective value(s)."""
    from mtl_bench.commands.run import run  # heavy imports (torch, lightning) only when a trial runs

    spec = ctx.spec
    params = suggest(trial, spec.space)
    sets = [*spec.sets, *to_sets(params)]
    configs = [build_config(spec.suite, spec.profile, flags={"seed": k}, sets=sets) for k in range(spec.seeds)]
    tags = {
        "mlflow.parentRunId": ctx.parent_run_id,
        "mtl-bench.kind": "sweep-trial",
        "mtl-bench.worker": ctx.worker,
        "optuna.study": ctx.study,
        "optuna.trial": str(trial.number),
    }
    tracker = Tracker(ctx.tracking_uri, f"{EXPERIMENT_PREFIX}/{spec.suite}", f"trial {trial.number}", tags=tags)
    trial.set_user_attr("mlflow_run_id", tracker.run_id)
    tracker.log_params(params)
    folder = trial_folder(ctx.out, trial.number)
    seeds: list[Results] = []
    try:
        for cfg in configs:
            callbacks = [_pruning_callback(trial)] if ctx.prunes and cfg.seed == 0 else None
            seeds.append(run(cfg, folder / f"seed{cfg.seed}", ctx.tracking_uri, ctx.baselines_dir,
                             parent_run_id=tracker.run_id, callbacks=callbacks))
        values = objective_values(spec, seeds, ctx.baselines_dir)
    except optuna.TrialPruned:
        _log_curve(tracker, [*seeds, None])
        _end(tracker, "PRUNED", "KILLED")
        raise
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into SystemExit
        try:
            _end(tracker, "FAIL", "KILLED")
        except Exception:  # the interrupt may have left the MLflow store busy; stopping comes first
            pass
        raise KeyboardInterrupt from None  # so Optuna records the trial as FAIL (it lets SystemExit through)
    except BaseException:
        _end(tracker, "FAIL", "FAILED")
        raise
    _log_curve(tracker, seeds)
    tracker.log_metrics({f"objective/{o.metric}": v for o, v in zip(spec.objectives, values, strict=True)})
    _end(tracker, "COMPLETE", "FINISHED")
    return values[0] if len(values) == 1 else values


def _pruning_callback(trial: optuna.Trial) -> Any:
    from optuna_integration import PyTorchLightningPruningCallback

    return PyTorchLightningPruningCallback(trial, monitor=SCORE)


def _log_curve(tracker: Tracker, seeds: list[Results | None]) -> None:
    """The trial's ``val/score`` per epoch: the mean over its seeds' MLflow histories.

    ``None`` stands for the seed that was cut short by pruning: its history is read from the child run.
    """
    run_ids = [r.mlflow.run_id for r in seeds if r is not None]
    if None in seeds:
        running = _children(tracker, statuses=("FAILED", "RUNNING"))
        run_ids += running[:1]
    curves: dict[int, list[float]] = {}
    for run_id in run_ids:
        for metric in tracker.client.get_metric_history(run_id, SCORE):
            curves.setdefault(metric.step, []).append(metric.value)
    for step, values in sorted(curves.items()):
        tracker.log_metrics({SCORE: sum(values) / len(values)}, step=step)


def _children(tracker: Tracker, statuses: tuple[str, ...]) -> list[str]:
    """Ids of the trial's seed runs in one of ``statuses``."""
    experiment = tracker.client.get_run(tracker.run_id).info.experiment_id
    runs = tracker.client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{tracker.run_id}'")
    return [r.info.run_id for r in runs if r.info.status in statuses]


def _end(tracker: Tracker, state: str, status: str) -> None:
    """Close the trial run and any seed run an interruption left open (a pruned seed ends FAILED: phases.py)."""
    for run_id in _children(tracker, statuses=("RUNNING", "FAILED") if status == "KILLED" else ("RUNNING",)):
        tracker.client.set_terminated(run_id, status)
    tracker.client.set_tag(tracker.run_id, "optuna.state", state)
    tracker.finish(status)


def kill_runs(tracking_uri: str, trial: optuna.trial.FrozenTrial) -> None:
    """Mark a dead trial's MLflow run and its seed runs KILLED (its worker could not)."""
    run_id = trial.user_attrs.get("mlflow_run_id")
    if not run_id:
        return
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_run(run_id).info.experiment_id
    seeds = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    for run in [*seeds, client.get_run(run_id)]:
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, "KILLED")
    client.set_tag(run_id, "optuna.state", "FAIL")
