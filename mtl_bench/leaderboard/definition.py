"""``leaderboards/NAME.yaml``: which suite, data and tasks a leaderboard ranks, by what, and what it shows.

Leaderboards live in ``$MTL_BENCH_LEADERBOARDS``, else the checkout's top-level ``leaderboards/``, else
``./leaderboards``; accepted submissions are stored in ``<root>/NAME/submissions/`` beside a generated README.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mtl_bench.errors import UserError, field_error
from mtl_bench.registry import did_you_mean
from mtl_bench.results.table import COSTS
from mtl_bench.yamlfile import read_mapping

NAME = r"^[a-z0-9][a-z0-9-]*$"


class LeaderboardSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME)
    description: str
    suite: str
    suite_version: int = Field(ge=1)
    data_fingerprint: str = Field(min_length=1)  # the data every submission must have been tested on
    tasks: dict[str, str] = Field(min_length=1)  # task -> main score (as in the suite's task files)
    rank_by: Literal["delta_p", "mean_main", "mean_rank"] = "delta_p"
    baseline: str | None = None  # the submission whose mean scores Delta-p is measured against (single-task)
    min_seeds: int = Field(default=3, ge=1)
    cost_columns: list[str] = ["params", "flops_per_sample", "step_ms"]
    # a board of a suite version that has moved on: shown as it stands, closed to submissions, not checked against
    # the task files in use
    archived: bool = False

    @property
    def folder(self) -> Path:
        return leaderboards_root() / self.name


def leaderboards_root() -> Path:
    env = os.environ.get("MTL_BENCH_LEADERBOARDS")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2] / "leaderboards"
    return checkout if checkout.is_dir() else Path("leaderboards")


def _check(spec: LeaderboardSpec, path: Path) -> None:
    """The suite, its version and the tasks' main scores must be those of the task files in use."""
    from mtl_bench.tasks.catalog import get_suite, suite_tasks

    suite = get_suite(spec.suite)
    if spec.suite_version != suite.version:
        raise UserError(f"{path}: field 'suite_version' = {spec.suite_version}: suite {spec.suite} is at "
                        f"version {suite.version}")
    mains = {t.name: t.main_score for t in suite_tasks(spec.suite)}
    for task, main in spec.tasks.items():
        if task not in mains:
            raise UserError(f"{path}: field 'tasks' has {task!r}: {did_you_mean(task, sorted(mains))}")
        if main != mains[task]:
            raise UserError(f"{path}: field 'tasks.{task}' = {main!r}: the task's main score is {mains[task]!r}")
    for column in spec.cost_columns:
        if column not in COSTS:
            raise UserError(f"{path}: field 'cost_columns' has {column!r}: {did_you_mean(column, list(COSTS))}")


def load_leaderboard(name: str) -> LeaderboardSpec:
    root = leaderboards_root()
    path = root / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in root.glob("*.yaml")) if root.is_dir() else []
        raise UserError(f"unknown leaderboard {name!r} (no {path}): {did_you_mean(name, known)}")
    try:
        spec = LeaderboardSpec.model_validate(read_mapping(path, "leaderboard"))
    except ValidationError as exc:
        raise UserError(f"{path}: {field_error(exc)}") from None
    if spec.name != path.stem:
        raise UserError(f"{path}: field 'name' = {spec.name!r}: expected the file's name, {path.stem!r}")
    if not spec.archived:
        _check(spec, path)
    return spec
