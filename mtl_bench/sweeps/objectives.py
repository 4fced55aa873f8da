"""A trial's objective values, from the ``Results`` of each of its seeds (mean over seeds).

Scores are read from the validation split (``best_val``, the selected checkpoint's validation metrics): a sweep
selects configurations, and selection never looks at test. Test numbers stay in each seed's results.json, for the
report of the chosen configuration. Costs come from ``cost``.

>>> from mtl_bench.results.schema import Cost, Results, TaskResult
>>> def task(main, val):  # only the fields an objective reads
...     return TaskResult.model_construct(main_score=main, best_val={main: val}, metrics={main: 0.1})
>>> r = Results.model_construct(tasks={"a": task("acc", 0.5), "b": task("f1", 0.7)},
...                             cost=Cost.model_construct(params=10, flops_per_sample={"a": 3, "b": 4}))
>>> objective_value("mean_main_score", [r]), objective_value("task:b", [r]), objective_value("flops_per_sample", [r])
(0.6, 0.7, 7.0)
"""

from __future__ import annotations

import json
from pathlib import Path

from mtl_bench.errors import UserError
from mtl_bench.results.io import read_results
from mtl_bench.results.schema import Results, TaskResult
from mtl_bench.sweeps.spec import TASK_OBJECTIVE, SweepSpec

COSTS = ("params", "trainable_params", "step_ms", "peak_memory_mb", "train_seconds")


def objective_values(spec: SweepSpec, seeds: list[Results], baselines_dir: Path | None = None) -> list[float]:
    """One value per objective of the spec, in the file's order."""
    return [objective_value(o.metric, seeds, baselines_dir) for o in spec.objectives]


def objective_value(metric: str, seeds: list[Results], baselines_dir: Path | None = None) -> float:
    """The mean over seeds of ``metric`` (a key of ``spec.OBJECTIVES`` or ``task:<name>``)."""
    values = [_one(metric, results, baselines_dir) for results in seeds]
    return sum(values) / len(values)


def _main_val(task: TaskResult) -> float:
    return float(task.best_val[task.main_score])


def _one(metric: str, results: Results, baselines_dir: Path | None) -> float:
    tasks = results.tasks
    if metric == "mean_main_score":
        return sum(_main_val(t) for t in tasks.values()) / len(tasks)
    if metric.startswith(TASK_OBJECTIVE):
        return _main_val(tasks[metric.removeprefix(TASK_OBJECTIVE)])
    if metric == "flops_per_sample":
        return float(sum(results.cost.flops_per_sample.values()))
    if metric in COSTS:
        return float(getattr(results.cost, metric))
    if metric in ("delta_p", "delta_m"):
        return _validation_delta(metric, results, baselines_dir)
    raise ValueError(f"unknown objective {metric!r}")


def _validation_delta(metric: str, results: Results, baselines_dir: Path | None) -> float:
    """Δp or Δm of the run's validation scores against its single-task baseline's validation scores.

    The baseline store keeps test scores and the path of the baseline's results.json, whose ``best_val`` is used.
    """
    from mtl_bench.results import baselines
    from mtl_bench.results.scores import delta_m, delta_p

    found = baselines.load(results, baselines_dir)
    if found is None:
        raise UserError(f"objective {metric} needs a single-task baseline for these settings and seed "
                        f"{results.seed}: {baselines.how_to_make(results)}")
    source = Path(json.loads(found[1].read_text())["results"])
    if not source.is_file():
        raise UserError(f"objective {metric}: the baseline {found[1]} points to {source}, which is gone; "
                        f"rerun the baseline: {baselines.how_to_make(results)}")
    base = {name: task.best_val for name, task in read_results(source).tasks.items()}
    method = {name: task.best_val for name, task in results.tasks.items()}
    directions = baselines.metric_directions(results)
    return (delta_p if metric == "delta_p" else delta_m)(method, base, directions).value
