"""The phases of one run, in order; each is a short function of what the ones before it made.

    prepare -> build -> open_session -> train -> evaluate -> assemble -> write

- ``prepare``: the suite's data, tokenised and split (``data/prepare.py``), seeded.
- ``build``: model, weighting, data module and the Lightning system (a distilled run's teacher goes into the system's
  constructor), seeded again so that the model's initial weights do not depend on data preparation.
- ``open_session``: disk check, Trainer, MLflow run (reopened on ``--resume``).
- ``train``: ``Trainer.fit``; then the best validation checkpoint's weights are loaded. Under DDP only rank 0 goes on.
- ``evaluate``: the test split is predicted once; the test scores are computed from those predictions, which are
  written to predictions.json as they are (so a leaderboard re-scores exactly what the run scored); FLOPs per sample
  and robustness to a missing modality.
- ``assemble``: the typed ``Results`` (scores, cost, delta against the stored single-task baseline).
- ``write``: predictions.json, results.json (last: it marks the run finished), config.json, MLflow.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from mtl_bench.commands.options import RunOptions
from mtl_bench.config.schema import RunConfig
from mtl_bench.data.datamodule import MultiTaskDataModule
from mtl_bench.data.prepare import PreparedSuite, prepare_suite
from mtl_bench.evaluation.measures import flops_per_sample, predict, robustness
from mtl_bench.evaluation.predictions import write_predictions
from mtl_bench.losses.distillation import Distillation
from mtl_bench.models.build import build_model
from mtl_bench.results import baselines
from mtl_bench.results.io import write_json_atomic
from mtl_bench.results.schema import Cost, DataReport, MlflowInfo, Results, SkippedRows, TaskResult
from mtl_bench.tasks.catalog import get_suite, suite_tasks
from mtl_bench.tracking.tracker import EpochMetricsLogger, Tracker, flatten
from mtl_bench.training.disk import check_free_space, checkpoint_bytes
from mtl_bench.training.distributed import leave_process_group
from mtl_bench.training.provenance import peak_memory_mb, provenance
from mtl_bench.training.resume import ResumePoint, RunState, last_checkpoint, open_run
from mtl_bench.training.signals import Stopped, check, fitting, later, stop_callbacks
from mtl_bench.training.system import MultiTaskSystem, selection_score
from mtl_bench.training.trainer import TrainerSettings, make_trainer, quiet_libraries
from mtl_bench.weighting import WEIGHTINGS
from mtl_bench.weighting.base import Weighting


@dataclass
class Built:
    model: nn.Module
    weighting: Weighting
    datamodule: MultiTaskDataModule
    system: MultiTaskSystem


@dataclass
class Session:
    trainer: L.Trainer
    tracker: Tracker
    run_state: RunState


@dataclass
class Evaluation:
    scores: dict[str, dict[str, float]]  # task -> test metric -> value
    predictions: dict[str, list[Any]]  # task -> one JSON value per test sample (predictions.json)
    flops: dict[str, int]
    robustness: dict[str, dict[str, float]]


def run_phases(cfg: RunConfig, out: Path, settings: TrainerSettings, options: RunOptions) -> Results | None:
    """One run from its config to ``out/results.json``; returns the results (None on DDP ranks other than 0)."""
    quiet_libraries()
    prepared = prepare(cfg)
    built = build(cfg, prepared, options.distillation)
    session = open_session(cfg, out, settings, built, prepared.fingerprint, options)
    with marking(session.tracker):
        train_seconds = train(session, built, options.resume_from)
        if not session.trainer.is_global_zero:
            return None
        evaluation = evaluate(cfg, prepared, built.model)
    with later(check=False):  # results.json and the FINISHED mark are written together: a stop signal waits
        results = assemble(cfg, prepared, built, session, settings, evaluation, train_seconds)
        results = with_delta(results, out / "results.json", options.baselines_dir)
        write(cfg, out, results, evaluation, session.tracker)
    check(resumable=True)
    return results


def prepare(cfg: RunConfig) -> PreparedSuite:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    return prepare_suite(suite_tasks(cfg.suite), cfg.data, cfg.model.text_encoder)


def build(cfg: RunConfig, prepared: PreparedSuite, distillation: Distillation | None) -> Built:
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # model init does not depend on data preparation
    model = build_model(cfg, prepared.tasks, prepared.vocab_size)
    if cfg.model.init_from:
        from mtl_bench.models.init_from import load_encoders

        load_encoders(model, cfg, prepared.fingerprint, prepared.vocab_size)
    weighting = WEIGHTINGS.get(cfg.weighting.name)(sorted(prepared.tasks), **cfg.weighting.options)
    datamodule = MultiTaskDataModule(prepared.splits, cfg.train.batch_size, cfg.train.mixing, cfg.seed)
    steps = datamodule.steps_per_epoch() * cfg.train.epochs
    system = MultiTaskSystem(model, prepared.tasks, weighting, cfg.train, total_steps=steps, distillation=distillation)
    return Built(model, weighting, datamodule, system)


def open_session(cfg: RunConfig, out: Path, settings: TrainerSettings, built: Built, fingerprint: str,
                 options: RunOptions) -> Session:
    need = 3 * checkpoint_bytes(built.system) + cfg.train.min_free_mb * 2**20  # best, last, and one being written
    check_free_space(out, need, "this run's checkpoints (best, last and one being written)")
    logger, run_state = EpochMetricsLogger(None), RunState(cfg.seed)
    trainer = make_trainer(cfg, out, logger, *settings,
                           [*options.callbacks, run_state, last_checkpoint(out), *stop_callbacks()],
                           use_distributed_sampler=False)
    tags = {"suite": cfg.suite} | ({"mlflow.parentRunId": options.parent_run_id} if options.parent_run_id else {})
    # Under DDP only now is it known which process is rank 0: it alone opens (or reopens) the MLflow run.
    with later(check=False):  # a stop signal waits for the MLflow run and run-state.json: `fitting` raises it
        tracker = open_run(trainer.is_global_zero, cfg.model_dump(mode="json"), out, options.tracking_uri, tags,
                           fingerprint, options.resume_from)
    logger.tracker = tracker
    return Session(trainer, tracker, run_state)


@contextmanager
def marking(tracker: Tracker) -> Iterator[None]:
    """Mark the MLflow run KILLED (stop signal, Ctrl-C) or FAILED (anything else) when the block raises."""
    try:
        yield
    except (Stopped, KeyboardInterrupt, SystemExit) as exc:  # without our handlers (a sweep's trial) Lightning
        tracker.finish("KILLED")  # turns Ctrl-C into a shutdown and sys.exit(1), SIGTERM into SystemExit
        if isinstance(exc, Stopped):
            exc.resumable = True
        raise
    except BaseException:
        tracker.finish("FAILED")
        raise


def train(session: Session, built: Built, resume_from: ResumePoint | None) -> float:
    """Fit, load the best validation checkpoint's weights, leave the process group; returns training seconds."""
    trainer, system = session.trainer, built.system
    start = time.perf_counter()
    with fitting(trainer):  # SIGTERM / SIGINT stop training at the end of the current batch (signals.py)
        trainer.fit(system, datamodule=built.datamodule, ckpt_path=resume_from.checkpoint if resume_from else None)
    seconds = time.perf_counter() - start + session.run_state.seconds_before
    leave_process_group()  # DDP: the others are done; rank 0 evaluates and writes alone
    if trainer.is_global_zero:
        best = torch.load(trainer.checkpoint_callback.best_model_path, map_location=system.device, weights_only=True)
        system.load_state_dict(best["state_dict"])
    return seconds


def evaluate(cfg: RunConfig, prepared: PreparedSuite, model: nn.Module) -> Evaluation:
    """Predict the test split once, score those predictions, and measure FLOPs and robustness."""
    test = {name: splits["test"] for name, splits in prepared.splits.items()}
    batch = 2 * cfg.train.batch_size  # the evaluation batch of the data module
    predicted = {name: predict(model, task, test[name], batch) for name, task in prepared.tasks.items()}
    scores = {name: task.score_predictions(predicted[name], test[name]) for name, task in prepared.tasks.items()}
    main = {name: scores[name][task.spec.main_score] for name, task in prepared.tasks.items()}
    return Evaluation(
        scores=scores,
        predictions={name: task.predictions_to_json(predicted[name]) for name, task in prepared.tasks.items()},
        flops=flops_per_sample(model, prepared.tasks, test),
        robustness=robustness(model, prepared.tasks, test, batch, main),
    )


def task_results(prepared: PreparedSuite, system: MultiTaskSystem, scores: dict[str, dict[str, float]]
                 ) -> dict[str, TaskResult]:
    """Per task: test scores, the trivial predictor's, and the validation scores of the selected epoch."""
    history = system.val_history
    best_epoch = max(range(len(history)), key=lambda epoch: selection_score(history[epoch], prepared.tasks))
    return {
        name: TaskResult(
            type=task.spec.type,
            version=task.spec.version,
            main_score=task.spec.main_score,
            higher_is_better=task.spec.higher_is_better,
            metrics=scores[name],
            trivial_baseline=task.trivial_baseline(prepared.splits[name]["train"], prepared.splits[name]["test"]),
            best_val=history[best_epoch][name],
        )
        for name, task in prepared.tasks.items()
    }


def cost(built: Built, session: Session, device: str, flops: dict[str, int], train_seconds: float) -> Cost:
    model, weighting, system, steps = built.model, built.weighting, built.system, session.trainer.global_step
    parameters = [*model.parameters(), *weighting.parameters()]
    return Cost(
        params=sum(p.numel() for p in parameters),
        trainable_params=sum(p.numel() for p in parameters if p.requires_grad),
        train_seconds=round(train_seconds, 3),
        samples_per_second=round(system.samples_seen / train_seconds, 2),
        peak_memory_mb=round(peak_memory_mb(device), 1),
        steps=steps,
        step_ms=round(1000 * system.step_seconds / max(1, steps), 3),
        backward_passes=weighting.backward_passes(len(system.tasks)),
        flops_per_sample=flops,
    )


def assemble(cfg: RunConfig, prepared: PreparedSuite, built: Built, session: Session, settings: TrainerSettings,
             evaluation: Evaluation, train_seconds: float) -> Results:
    cpu = settings.accelerator == "cpu"
    device = str(next(built.model.parameters()).device) if cpu else f"cuda:{session.trainer.local_rank}"
    return Results(
        suite=cfg.suite,
        suite_version=get_suite(cfg.suite).version,
        seed=cfg.seed,
        profile=cfg.profile,
        config=cfg.model_dump(mode="json"),
        data_fingerprint=prepared.fingerprint,
        tasks=task_results(prepared, built.system, evaluation.scores),
        cost=cost(built, session, device, evaluation.flops, train_seconds),
        robustness=evaluation.robustness,
        delta=None,
        data_report=DataReport(
            skipped={k: SkippedRows(counts=v.counts, examples=v.examples) for k, v in prepared.skipped.items()},
            notes=prepared.notes,
        ),
        mlflow=MlflowInfo(tracking_uri=session.tracker.tracking_uri, run_id=session.tracker.run_id),
        provenance=provenance(device, settings.deterministic),
    )


def with_delta(results: Results, results_path: Path, root: Path | None) -> Results:
    """Delta-p and Delta-m against the stored single-task baseline (a single-task run stores itself first)."""
    if results.config["sharing"]["name"] == "single-task":
        baselines.store(results, results_path, root)
    found = baselines.load(results, root)
    if found is None:
        return results
    return results.model_copy(update={"delta": baselines.delta_against(results, *found)})


def write(cfg: RunConfig, out: Path, results: Results, evaluation: Evaluation, tracker: Tracker) -> None:
    """predictions.json first, then results.json (which marks the run as done), config.json, then MLflow."""
    predictions_path = write_predictions(out, evaluation.predictions)
    results_path = write_json_atomic(out / "results.json", results.model_dump(mode="json"))
    config_path = write_json_atomic(out / "config.json", cfg.model_dump(mode="json"))
    tasks = results.tasks
    delta = {f"delta/{k}": getattr(results.delta, k) for k in ("delta_p", "delta_m")} if results.delta else {}
    tracker.log_metrics(
        {f"test/{t}/{m}": v for t, r in tasks.items() for m, v in r.metrics.items()}
        | {f"trivial/{t}/{m}": v for t, r in tasks.items() for m, v in r.trivial_baseline.items()}
        | {f"cost/{k}": v for k, v in flatten(results.cost.model_dump(mode="json")).items()}
        | {f"robustness/{t}/{k}": v for t, drops in results.robustness.items() for k, v in drops.items()}
        | delta,
        step=cfg.train.epochs,
    )
    for path in (results_path, config_path, predictions_path):
        tracker.log_artifact(path)
    tracker.finish("FINISHED")
