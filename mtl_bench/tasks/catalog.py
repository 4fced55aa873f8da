"""Finds task and suite YAML files and validates them: the task registry is data, task *types* are code.

Tasks live in ``tasks/**/*.yaml`` and suites in ``tasks/suites/*.yaml`` of the repository (or of the folder named
by ``MTL_BENCH_TASKS``). Every problem is a UserError naming the file, the field and the value.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ValidationError

from mtl_bench.errors import UserError, field_error
from mtl_bench.registry import did_you_mean
from mtl_bench.tasks.spec import ALLOWED_MODALITIES, SuiteSpec, TaskSpec
from mtl_bench.yamlfile import read_mapping


def tasks_root() -> Path:
    """The folder holding task YAML: $MTL_BENCH_TASKS, else the checkout's top-level ``tasks/``, else the copy of it
    that a wheel ships as ``mtl_bench/builtin_tasks``."""
    env = os.environ.get("MTL_BENCH_TASKS")
    package = Path(__file__).resolve().parents[1]
    checkout = package.parent / "tasks"
    root = Path(env) if env else checkout if checkout.is_dir() else package / "builtin_tasks"
    if not root.is_dir():
        raise UserError(f"task folder {root} not found: set MTL_BENCH_TASKS to the folder holding task YAML files")
    return root


def _load(path: Path, model: type[BaseModel]) -> BaseModel:
    raw = read_mapping(path)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{path}: {field_error(exc)}") from None


def _check_task(spec: TaskSpec, path: Path) -> None:
    """Cross-field checks the schema alone cannot express, against the task type's own facts."""
    from mtl_bench.data.sources import SOURCES
    from mtl_bench.tasks import TASK_TYPES  # local import: task types import heavier modules

    if spec.dataset.source not in SOURCES:
        hint = did_you_mean(spec.dataset.source, SOURCES.names())
        raise UserError(f"{path}: field 'dataset.source' = {spec.dataset.source!r}: {hint}")
    if spec.type not in TASK_TYPES:
        raise UserError(f"{path}: field 'type' = {spec.type!r}: {did_you_mean(spec.type, TASK_TYPES.names())}")
    task_type = TASK_TYPES.get(spec.type)
    for modality in spec.inputs:
        if modality not in ALLOWED_MODALITIES:
            hint = did_you_mean(modality, sorted(ALLOWED_MODALITIES))
            raise UserError(f"{path}: field 'inputs' has unknown modality {modality!r}: {hint}")
    problem = task_type.check_spec(spec)
    if problem:
        raise UserError(f"{path}: {problem}")
    known = task_type.metric_directions()
    for metric in spec.metrics:
        if metric not in known:
            raise UserError(f"{path}: field 'metrics' has {metric!r}: {did_you_mean(metric, sorted(known))}")
    if spec.main_score not in spec.metrics:
        raise UserError(f"{path}: field 'main_score' = {spec.main_score!r}: expected one of the task's metrics")
    if known[spec.main_score] != spec.higher_is_better:
        raise UserError(
            f"{path}: field 'higher_is_better' = {spec.higher_is_better}: "
            f"{spec.main_score} is {'higher' if known[spec.main_score] else 'lower'}-is-better"
        )


@lru_cache(maxsize=4)
def _parse(root: Path) -> tuple[dict[str, tuple[TaskSpec, Path]], dict[str, tuple[SuiteSpec, Path]]]:
    """Every task and suite file checked against its schema, names unique, suites naming known tasks.

    Needs no task type (so no torch): enough to answer an unknown suite at once (``check_suite_name``).
    """
    tasks: dict[str, tuple[TaskSpec, Path]] = {}
    suites: dict[str, tuple[SuiteSpec, Path]] = {}
    for path in sorted(root.rglob("*.yaml")):
        is_suite = path.parent.name == "suites"
        spec = _load(path, SuiteSpec if is_suite else TaskSpec)
        table = suites if is_suite else tasks
        if spec.name in table:
            raise UserError(f"{path}: field 'name' = {spec.name!r}: already defined in {table[spec.name][1]}")
        table[spec.name] = (spec, path)
    for suite, path in suites.values():
        for name in suite.tasks:
            if name not in tasks:
                raise UserError(f"{path}: field 'tasks' has unknown task {name!r}: {did_you_mean(name, list(tasks))}")
    return tasks, suites


@lru_cache(maxsize=4)
def _catalog(root: Path) -> tuple[dict[str, tuple[TaskSpec, Path]], dict[str, tuple[SuiteSpec, Path]]]:
    """``_parse`` plus every task checked against its task type's own facts (imports the task types)."""
    tasks, suites = _parse(root)
    for spec, path in tasks.values():
        _check_task(spec, path)
    return tasks, suites


def check_suite_name(name: str) -> None:
    """A UserError for an unknown suite, from the files' schema alone: no task type (torch) is imported."""
    suites = _parse(tasks_root())[1]
    if name not in suites:
        raise UserError(f"unknown suite {name!r}: {did_you_mean(name, list(suites))}")


def all_tasks() -> dict[str, TaskSpec]:
    return {name: spec for name, (spec, _) in sorted(_catalog(tasks_root())[0].items())}


def all_suites() -> dict[str, SuiteSpec]:
    return {name: spec for name, (spec, _) in sorted(_catalog(tasks_root())[1].items())}


def get_suite(name: str) -> SuiteSpec:
    check_suite_name(name)
    return all_suites()[name]


def get_task(name: str) -> TaskSpec:
    tasks = all_tasks()
    if name not in tasks:
        raise UserError(f"unknown task {name!r}: {did_you_mean(name, list(tasks))}")
    return tasks[name]


def suite_tasks(name: str) -> list[TaskSpec]:
    """The suite's tasks, sorted by name (every dict keyed by task is iterated in this order)."""
    return sorted((get_task(t) for t in get_suite(name).tasks), key=lambda s: s.name)
