"""Complete, schema-valid ``Results`` for tests that need a run's results without training one: every field has a
plain default, and a test sets the fields it is about."""

from __future__ import annotations

from typing import Any

from mtl_bench.config.schema import RunConfig
from mtl_bench.results.schema import Cost, Delta, MlflowInfo, Provenance, Results, TaskResult

COST = {"params": 1000, "trainable_params": 1000, "train_seconds": 1.0, "samples_per_second": 1.0,
        "peak_memory_mb": 1.0, "steps": 1, "step_ms": 1.0, "backward_passes": 1}


def task_result(main_score: str = "accuracy", metrics: dict[str, float] | None = None, *, type: str = "classification",
                higher_is_better: bool = True, best_val: dict[str, float] | None = None) -> TaskResult:
    """A task's results; ``best_val`` defaults to the test ``metrics``, the trivial baseline to zeros."""
    metrics = dict(metrics if metrics is not None else {main_score: 0.5})
    return TaskResult(type=type, version=1, main_score=main_score, higher_is_better=higher_is_better, metrics=metrics,
                      trivial_baseline={m: 0.0 for m in metrics},
                      best_val=dict(best_val if best_val is not None else metrics))


def make_results(*, suite: str = "ecommerce", seed: int = 0, config: dict[str, Any] | None = None,
                 tasks: dict[str, TaskResult] | None = None, cost: dict[str, Any] | None = None,
                 delta: Delta | None = None, **fields: Any) -> Results:
    """``config`` defaults to the suite's resolved default config; ``cost`` overrides fields of ``COST`` (FLOPs
    default to 100 per task); ``fields`` set any other top-level field."""
    config = config if config is not None else RunConfig(suite=suite, seed=seed).model_dump(mode="json")
    tasks = tasks if tasks is not None else {"product-classification": task_result()}
    return Results(**{
        "suite": suite, "suite_version": 1, "seed": seed, "profile": "smoke", "config": config,
        "data_fingerprint": "abc", "tasks": tasks,
        "cost": Cost(**(COST | {"flops_per_sample": {t: 100 for t in tasks}} | (cost or {}))),
        "robustness": {t: {} for t in tasks}, "delta": delta,
        "mlflow": MlflowInfo(tracking_uri="sqlite:///mlflow.db", run_id="0" * 32),
        "provenance": Provenance(package_version="0.1.0", git_commit=None, torch_version="2", device="cpu",
                                 deterministic=True, created="2026-11-28T00:00:00Z"),
    } | fields)
