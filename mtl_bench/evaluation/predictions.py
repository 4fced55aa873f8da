"""Test-split predictions of a run, kept beside results.json so anyone can recompute its scores (leaderboards do).

``predictions.json`` maps task -> one JSON value per test sample, in split order: a class id (classification), a list
of tag scores (tagging) or a caption (captioning). A run writes it after testing its best checkpoint; for a run made
before predictions were kept, ``predictions_from_checkpoint`` rebuilds the model from config.json and the best
checkpoint and predicts again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtl_bench.config.schema import RunConfig
from mtl_bench.data.batches import TaskData
from mtl_bench.errors import UserError
from mtl_bench.evaluation.measures import predict
from mtl_bench.results.io import write_json_atomic
from mtl_bench.tasks.base import TaskType

PREDICTIONS = "predictions.json"


def test_predictions(
    model: nn.Module, tasks: dict[str, TaskType], test: dict[str, TaskData], batch_size: int
) -> dict[str, list[Any]]:
    """Every task's test predictions as JSON rows."""
    return {n: task.predictions_to_json(predict(model, task, test[n], batch_size)) for n, task in tasks.items()}


def write_predictions(run_dir: Path, predictions: dict[str, list[Any]]) -> Path:
    return write_json_atomic(run_dir / PREDICTIONS, predictions, compact=True)


def load_run_model(run_dir: Path) -> tuple[RunConfig, Any, nn.Module]:
    """(config, prepared suite, model with the best checkpoint's weights) of a finished run folder."""
    from mtl_bench.data.prepare import prepare_suite
    from mtl_bench.models.build import build_model
    from mtl_bench.tasks.catalog import suite_tasks

    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    config_file = run_dir / "config.json"
    for path in (config_file, checkpoint):
        if not path.is_file():
            raise UserError(f"{run_dir}: no {path.name} (expected a finished `mtl-bench run` output folder)")
    cfg = RunConfig.model_validate(json.loads(config_file.read_text()))
    prepared = prepare_suite(suite_tasks(cfg.suite), cfg.data, cfg.model.text_encoder)
    model = build_model(cfg, prepared.tasks, prepared.vocab_size)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    return cfg, prepared, model.eval()


def predictions_from_checkpoint(run_dir: Path) -> dict[str, list[Any]]:
    """Predict the test split again with ``run_dir``'s best checkpoint (for runs that predate predictions.json)."""
    cfg, prepared, model = load_run_model(run_dir)
    test = {name: splits["test"] for name, splits in prepared.splits.items()}
    return test_predictions(model, prepared.tasks, test, 2 * cfg.train.batch_size)


def load_predictions(run_dir: Path) -> dict[str, list[Any]]:
    """A run's predictions.json, written now from its checkpoint when the run predates it."""
    path = run_dir / PREDICTIONS
    if path.is_file():
        return json.loads(path.read_text())
    predictions = predictions_from_checkpoint(run_dir)
    write_predictions(run_dir, predictions)
    return predictions
