"""results.json: a versioned pydantic schema, validated before it is written and whenever it is read."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION = 2  # bump on any incompatible change of the fields below


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
    step_ms: float  # mean wall time of one training step: forward, backward(s), update; no data loading
    backward_passes: int  # backward passes through the shared parameters per step (1 for loss-based weighting)
    flops_per_sample: dict[str, int]  # per task: forward FLOPs of one training sample (torch's flop counter)


class Delta(_Model):
    """Multi-task scores against the single-task baseline of the same suite version, data, config and seed."""

    delta_p: float  # LibMTL: mean over tasks of the mean relative improvement over the task's metrics, %; higher
    delta_m: float  # Nash-MTL: mean relative change over all metrics, signed so that lower is better, %
    baseline: str  # path of the stored baseline scores
    skipped: list[str] = []  # "task/metric" left out because the baseline value is 0


class SkippedRows(_Model):
    counts: dict[str, int]  # reason -> rows
    examples: dict[str, list[str]]  # reason -> a few row ids or file names


class DataReport(_Model):
    """What the data source left out or changed while loading (real data); empty for the generated shop."""

    skipped: dict[str, SkippedRows] = {}  # dataset subset -> rows skipped (missing or corrupt files, unknown labels)
    notes: list[str] = []  # e.g. classes folded into "other", duplicate photos dropped


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
    robustness: dict[str, dict[str, float]]  # task -> ablation (no_image, empty_title, no_frames) -> main-score drop
    delta: Delta | None  # None when no single-task baseline is stored yet (the run says how to make one)
    data_report: DataReport = DataReport()
    mlflow: MlflowInfo
    provenance: Provenance
