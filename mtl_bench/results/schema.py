"""results.json: a versioned pydantic schema, validated before it is written and whenever it is read."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION = 1  # bump on any incompatible change of the fields below


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskResult(_Model):
    type: str
    version: int  # task YAML version
    main_score: str
    higher_is_better: bool
    metrics: dict[str, float]  # test split, best validation checkpoint
    trivial_baseline: dict[str, float]  # same metrics for the trivial predictor on the test split
    best_val: dict[str, float]  # validation metrics of the selected checkpoint


class Cost(_Model):
    params: int
    trainable_params: int
    train_seconds: float  # wall time of Trainer.fit, per-epoch validation included
    samples_per_second: float  # training samples (all tasks) / train_seconds
    peak_memory_mb: float  # peak resident memory on CPU, peak allocated on GPU
    steps: int


class MlflowInfo(_Model):
    tracking_uri: str
    run_id: str


class Provenance(_Model):
    package_version: str
    git_commit: str | None
    torch_version: str
    device: str
    deterministic: bool
    created: str  # ISO 8601, UTC


class Results(_Model):
    schema_version: int = SCHEMA_VERSION
    suite: str
    suite_version: int
    seed: int
    profile: str
    config: dict[str, Any]  # the resolved RunConfig
    data_fingerprint: str
    tasks: dict[str, TaskResult]
    cost: Cost
    mlflow: MlflowInfo
    provenance: Provenance
