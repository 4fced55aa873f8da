"""A submission file: every seed's results.json and test predictions, the resolved config, data fingerprint,
package version and environment. ``mtl-bench run/compare --submit`` write one; ``leaderboard submit`` checks it.
"""

from __future__ import annotations

import hashlib
import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mtl_bench.errors import UserError, field_error
from mtl_bench.results.io import read_json, read_results, write_json_atomic
from mtl_bench.results.schema import Results

SUBMISSION_VERSION = 1
NAME = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,79}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Environment(_Model):
    python: str
    platform: str
    torch: str
    device: str


class SeedRun(_Model):
    results: Results
    predictions: dict[str, list[Any]]  # task -> one value per test sample, in split order


class Accepted(_Model):
    """Added by the leaderboard when it stores a submission."""

    date: str  # ISO 8601, UTC
    digest: str  # sha256 of every seed's predictions: the same predictions are not accepted twice
    verified_by: str  # mtl-bench version that recomputed the scores


class Submission(_Model):
    submission_version: Literal[1] = SUBMISSION_VERSION
    name: str = Field(pattern=NAME)
    created: str
    suite: str
    suite_version: int
    data_fingerprint: str
    package_version: str
    environment: Environment
    config: dict[str, Any]  # the resolved config of every seed's run, without the seed
    runs: list[SeedRun] = Field(min_length=1)
    accepted: Accepted | None = None


def without_seed(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "seed"}


def default_name(config: dict[str, Any]) -> str:
    """``sharing-fusion-weighting``, e.g. ``hard-early-ew``."""
    return "-".join(str(config[axis]["name"]) for axis in ("sharing", "fusion", "weighting"))


def make_submission(run_dirs: list[Path], name: str | None = None) -> dict[str, Any]:
    """A submission from run folders (results.json + predictions.json; predictions are made again from the best
    checkpoint for runs that predate predictions.json). Every run must have the same config apart from the seed."""
    from mtl_bench.evaluation.predictions import load_predictions

    runs = [SeedRun(results=read_results(d / "results.json"), predictions=load_predictions(d)) for d in run_dirs]
    first = runs[0].results
    for run, run_dir in zip(runs, run_dirs, strict=True):
        if without_seed(run.results.config) != without_seed(first.config):
            raise UserError(f"{run_dir}: its config differs from {run_dirs[0]}'s beyond the seed: one submission "
                            "holds the seeds of one configuration")
    provenance = first.provenance
    submission = Submission(
        name=name or default_name(first.config),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        suite=first.suite,
        suite_version=first.suite_version,
        data_fingerprint=first.data_fingerprint,
        package_version=provenance.package_version,
        environment=Environment(python=platform.python_version(), platform=platform.platform(),
                                torch=provenance.torch_version, device=provenance.device),
        config=without_seed(first.config),
        runs=sorted(runs, key=lambda r: r.results.seed),
    )
    return submission.model_dump(mode="json")


def write_submission(path: Path, submission: dict[str, Any]) -> Path:
    return write_json_atomic(path, submission, compact=True)


def read_submission(path: Path) -> Submission:
    """A submission file, schema-checked; every problem is one UserError naming the file and the field."""
    raw = read_json(path, "submission")
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    try:
        return Submission.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{path}: {field_error(exc)}") from None


def digest(submission: Submission) -> str:
    """sha256 of the seeds and predictions, independent of names, dates and key order."""
    runs = sorted(([r.results.seed, r.predictions] for r in submission.runs), key=lambda r: r[0])
    return hashlib.sha256(json.dumps(runs, sort_keys=True).encode()).hexdigest()
