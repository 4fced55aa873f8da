"""Scores recomputed from stored test predictions: the test labels of a run's data settings, each task's predictions
read back from JSON, and per-task item scorers for resampling test items (``results/comparisons.py``).

Used by the leaderboard's verifier (a claimed metric must equal the recomputed one) and by the paired comparisons of
``compare`` and ``leaderboard show`` (a bootstrap recomputes each task's main score on resampled test items).
The suite's data is prepared once per (suite, data settings, text encoder) in a process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mtl_bench.config.schema import DataConfig, RunConfig
from mtl_bench.errors import UserError

_PREPARED: dict[str, Any] = {}  # (suite, data settings, text encoder) as JSON -> PreparedSuite


def prepared_suite(cfg: RunConfig, data: DataConfig | None = None) -> Any:
    """The suite of ``cfg`` prepared with ``data`` (default: the run's own data settings), once per process."""
    from mtl_bench.data.prepare import prepare_suite
    from mtl_bench.tasks.catalog import suite_tasks

    data = data or cfg.data
    key = f"{cfg.suite}|{data.model_dump_json()}|{cfg.model.text_encoder}"
    if key not in _PREPARED:
        _PREPARED[key] = prepare_suite(suite_tasks(cfg.suite), data, cfg.model.text_encoder)
    return _PREPARED[key]


def task_predictions(prepared: Any, name: str, rows: Sequence[Any], where: str) -> Any:
    """Task ``name``'s predictions read back from ``rows``, one per test sample; a UserError naming ``where``."""
    task, test = prepared.tasks[name], prepared.splits[name]["test"]
    if len(rows) != len(test):
        raise UserError(f"{where}: {len(rows)} predictions for {len(test)} test samples")
    try:
        return task.predictions_from_json(list(rows))
    except ValueError as exc:
        raise UserError(f"{where}: {exc}") from None


def item_scorers(prepared: Any, predictions: Mapping[str, Sequence[Any]], where: str,
                 tasks: Sequence[str] | None = None) -> dict[str, Any]:
    """{task: item scorer} (``TaskType.item_scorer``: the main score on resampled test items) of one seed's
    predictions (JSON rows per task) against the prepared test split."""
    out = {}
    for name in sorted(tasks if tasks is not None else predictions):
        if name not in predictions:
            raise UserError(f"{where}: no predictions of task {name!r}")
        decoded = task_predictions(prepared, name, predictions[name], f"{where}: task {name}")
        out[name] = prepared.tasks[name].item_scorer(decoded, prepared.splits[name]["test"])
    return out


def run_scorers(run_dirs: Mapping[str, Sequence[Path]]) -> dict[str, dict[int, dict[str, Any]]]:
    """{cell: {seed: {task: item scorer}}} of finished run folders (config.json, predictions.json), test data
    prepared with each run's own data settings."""
    import json

    from mtl_bench.evaluation.predictions import PREDICTIONS, load_predictions
    from mtl_bench.results.io import read_results

    out: dict[str, dict[int, dict[str, Any]]] = {}
    for cell, dirs in run_dirs.items():
        for run_dir in dirs:
            cfg = RunConfig.model_validate(json.loads((Path(run_dir) / "config.json").read_text()))
            prepared = prepared_suite(cfg)
            claimed = read_results(Path(run_dir) / "results.json").data_fingerprint
            if prepared.fingerprint != claimed:
                raise UserError(f"{run_dir}: its results.json has data fingerprint {claimed!r}, its data settings "
                                f"give {prepared.fingerprint!r} here: the test labels changed since the run")
            scorers = item_scorers(prepared, load_predictions(Path(run_dir)), str(Path(run_dir) / PREDICTIONS))
            out.setdefault(cell, {})[cfg.seed] = scorers
    return out
