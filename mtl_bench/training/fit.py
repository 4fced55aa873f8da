"""The body of a run: data, model, Lightning fit on train/validation, test of the best checkpoint, results, MLflow."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.utilities.warnings import PossibleUserWarning

from mtl_bench.config.schema import RunConfig
from mtl_bench.data.datamodule import MultiTaskDataModule
from mtl_bench.data.prepare import PreparedSuite, prepare_suite
from mtl_bench.models.build import build_model
from mtl_bench.results import baselines
from mtl_bench.results.io import write_json_atomic
from mtl_bench.results.schema import Cost, DataReport, Delta, MlflowInfo, Results, SkippedRows, TaskResult
from mtl_bench.tasks.catalog import get_suite, suite_tasks
from mtl_bench.tracking.tracker import EpochMetricsLogger, flatten
from mtl_bench.training.checkpoint_io import AtomicCheckpointIO
from mtl_bench.training.distributed import leave_process_group
from mtl_bench.training.evaluate import flops_per_sample, robustness
from mtl_bench.training.predictions import test_predictions, write_predictions
from mtl_bench.training.provenance import peak_memory_mb, provenance
from mtl_bench.training.resume import RunState, last_checkpoint, open_run
from mtl_bench.training.run import check_free_space, checkpoint_bytes
from mtl_bench.training.signals import Stopped, check, fitting, later, stop_callbacks
from mtl_bench.training.system import SCORE, MultiTaskSystem, selection_score
from mtl_bench.weighting import WEIGHTINGS


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


def _task_results(prepared: PreparedSuite, system: MultiTaskSystem, best_epoch: int) -> dict[str, TaskResult]:
    results = {}
    for name, task in prepared.tasks.items():
        data = prepared.splits[name]
        results[name] = TaskResult(
            type=task.spec.type,
            version=task.spec.version,
            main_score=task.spec.main_score,
            higher_is_better=task.spec.higher_is_better,
            metrics=system.test_scores[name],
            trivial_baseline=task.trivial_baseline(data["train"], data["test"]),
            best_val=system.val_history[best_epoch][name],
        )
    return results


def score_against_baseline(results: dict[str, Any], results_path: Path, root: Path | None) -> Delta | None:
    """Delta-p and Delta-m against the stored single-task baseline (a single-task run stores itself first)."""
    if results["config"]["sharing"]["name"] == "single-task":
        baselines.store(results, results_path, root)
    found = baselines.load(results, root)
    return None if found is None else Delta.model_validate(baselines.delta_against(results, *found))


def fit_and_test(
    cfg: RunConfig,
    out: Path,
    tracking_uri: str | None,
    accelerator: str,
    precision: str,
    deterministic: bool,
    baselines_dir: Path | None = None,
    parent_run_id: str | None = None,
    callbacks: list[Any] | None = None,
    distill: Any = None,
    resume_from: Any = None,
) -> dict[str, Any]:
    """``resume_from``: a ``training.resume.ResumePoint`` to continue an interrupted run from (``--resume``)."""
    quiet_libraries()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    specs = suite_tasks(cfg.suite)
    prepared = prepare_suite(specs, cfg.data, cfg.model.text_encoder)
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # model init does not depend on data preparation
    model = build_model(cfg, prepared.tasks, prepared.vocab_size)
    if cfg.model.init_from:
        from mtl_bench.models.init_from import load_encoders

        load_encoders(model, cfg, prepared.fingerprint, prepared.vocab_size)
    weighting = WEIGHTINGS.get(cfg.weighting.name)(sorted(prepared.tasks), **cfg.weighting.options)
    datamodule = MultiTaskDataModule(prepared.splits, cfg.train.batch_size, cfg.train.mixing, cfg.seed)
    steps = datamodule.steps_per_epoch() * cfg.train.epochs
    system = MultiTaskSystem(model, prepared.tasks, weighting, cfg.train, total_steps=steps)
    if distill is not None:  # the student's losses mix in the teacher's soft targets (training/distill.py)
        from mtl_bench.training.distill import DistilledTask

        system.tasks = {name: DistilledTask(task, distill) for name, task in system.tasks.items()}
        system.teacher = distill.teacher  # a submodule, so it moves to the student's device

    tags = {"suite": cfg.suite} | ({"mlflow.parentRunId": parent_run_id} if parent_run_id else {})
    config = cfg.model_dump(mode="json")
    need = 3 * checkpoint_bytes(system) + cfg.train.min_free_mb * 2**20  # best, last, and one being written
    check_free_space(out, need, "this run's checkpoints (best, last and one being written)")
    logger, run_state = EpochMetricsLogger(None), RunState(cfg.seed)
    trainer = make_trainer(cfg, out, logger, accelerator, precision, deterministic,
                           [*(callbacks or []), run_state, last_checkpoint(out), *stop_callbacks()],
                           use_distributed_sampler=False)
    # Under DDP only now is it known which process is rank 0: it alone opens (or reopens) the MLflow run.
    with later(check=False):  # a stop signal waits for the MLflow run and run-state.json: `fitting` raises it
        tracker = open_run(trainer.is_global_zero, config, out, tracking_uri, tags, prepared.fingerprint, resume_from)
    logger.tracker, uri = tracker, tracker.tracking_uri
    try:
        start = time.perf_counter()
        with fitting(trainer):  # SIGTERM / SIGINT stop training at the end of the current batch (signals.py)
            trainer.fit(system, datamodule=datamodule, ckpt_path=resume_from.checkpoint if resume_from else None)
        train_seconds = time.perf_counter() - start + run_state.seconds_before
        trainer.test(system, datamodule=datamodule, ckpt_path="best", verbose=False)
        leave_process_group()  # DDP: the others are done; rank 0 evaluates and writes alone
        if not trainer.is_global_zero:
            return {}
        test_data = {name: splits["test"] for name, splits in prepared.splits.items()}
        flops = flops_per_sample(system.model, prepared.tasks, test_data)
        main = {name: system.test_scores[name][task.spec.main_score] for name, task in prepared.tasks.items()}
        robust = robustness(system.model, prepared.tasks, test_data, 2 * cfg.train.batch_size, main)
        predictions = test_predictions(system.model, prepared.tasks, test_data, 2 * cfg.train.batch_size)
    except (Stopped, KeyboardInterrupt, SystemExit) as exc:  # without our handlers (a sweep's trial) Lightning
        tracker.finish("KILLED")  # turns Ctrl-C into a shutdown and sys.exit(1), SIGTERM into SystemExit
        if isinstance(exc, Stopped):
            exc.resumable = True
        raise
    except BaseException:
        tracker.finish("FAILED")
        raise
    with later(check=False):  # results.json and the FINISHED mark are written together: a stop signal waits
        scores = [selection_score(h, prepared.tasks) for h in system.val_history]
        best_epoch = max(range(len(scores)), key=scores.__getitem__)
        device = str(next(system.model.parameters()).device) if accelerator == "cpu" else f"cuda:{trainer.local_rank}"
        params = sum(p.numel() for p in model.parameters()) + sum(p.numel() for p in weighting.parameters())
        trainable = sum(p.numel() for p in [*model.parameters(), *weighting.parameters()] if p.requires_grad)
        results = Results(
            suite=cfg.suite,
            suite_version=get_suite(cfg.suite).version,
            seed=cfg.seed,
            profile=cfg.profile,
            config=config,
            data_fingerprint=prepared.fingerprint,
            tasks=_task_results(prepared, system, best_epoch),
            cost=Cost(
                params=params,
                trainable_params=trainable,
                train_seconds=round(train_seconds, 3),
                samples_per_second=round(system.samples_seen / train_seconds, 2),
                peak_memory_mb=round(peak_memory_mb(device), 1),
                steps=trainer.global_step,
                step_ms=round(1000 * system.step_seconds / max(1, trainer.global_step), 3),
                backward_passes=weighting.backward_passes(len(prepared.tasks)),
                flops_per_sample=flops,
            ),
            robustness=robust,
            delta=None,
            data_report=DataReport(
                skipped={k: SkippedRows(counts=v.counts, examples=v.examples) for k, v in prepared.skipped.items()},
                notes=prepared.notes,
            ),
            mlflow=MlflowInfo(tracking_uri=uri, run_id=tracker.run_id),
            provenance=provenance(device, deterministic),
        ).model_dump(mode="json")
        results_path = out / "results.json"
        delta = score_against_baseline(results, results_path, baselines_dir)
        results["delta"] = None if delta is None else delta.model_dump(mode="json")
        results = Results.model_validate(results).model_dump(mode="json")
        predictions_path = write_predictions(out, predictions)  # before results.json, which marks the run as done
        write_json_atomic(results_path, results)
        config_path = write_json_atomic(out / "config.json", config)
        tracker.log_metrics(
            {f"test/{t}/{m}": v for t, r in results["tasks"].items() for m, v in r["metrics"].items()}
            | {f"trivial/{t}/{m}": v for t, r in results["tasks"].items() for m, v in r["trivial_baseline"].items()}
            | {f"cost/{k}": v for k, v in flatten(results["cost"]).items()}
            | {f"robustness/{t}/{k}": v for t, drops in robust.items() for k, v in drops.items()}
            | ({f"delta/{k}": results["delta"][k] for k in ("delta_p", "delta_m")} if delta else {}),
            step=cfg.train.epochs,
        )
        tracker.log_artifact(results_path)
        tracker.log_artifact(config_path)
        tracker.log_artifact(predictions_path)
        tracker.finish("FINISHED")
    check(resumable=True)
    return results

