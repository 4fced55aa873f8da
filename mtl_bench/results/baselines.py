"""Stored single-task baselines: every ``--sharing single-task`` run files its test scores here, and every other run
with the same suite version, data, model and training settings and seed is scored against them (Delta-p, Delta-m).

Layout: ``DIR/<suite>/v<suite_version>/<key>/seed<seed>.json`` where ``key`` hashes the data fingerprint and the
resolved config minus what a comparison varies (sharing, weighting, seed) and what does not change the numbers
(where files live, progress bars, thread counts). Default DIR: $MTL_BENCH_BASELINES, else ``runs/baselines``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from mtl_bench.results.io import write_json_atomic
from mtl_bench.results.schema import Delta, Results

VARIED = ("sharing", "weighting", "seed", "profile")
ENVIRONMENT = {"data": ("dir",), "train": ("progress", "num_threads", "accelerator", "devices", "precision")}


def default_dir() -> Path:
    return Path(os.environ.get("MTL_BENCH_BASELINES") or Path("runs") / "baselines")


def baseline_key(config: dict[str, Any], fingerprint: str) -> str:
    """12 hex digits identifying the settings a baseline is valid for.

    Only settings that differ from their defaults count, so a config field added later (at its default) does not
    orphan the baselines stored before it existed.
    """
    from mtl_bench.config.schema import RunConfig

    config = RunConfig.model_validate(config).model_dump(mode="json", exclude_defaults=True)
    kept = {k: v for k, v in config.items() if k not in VARIED}
    for section, fields in ENVIRONMENT.items():
        kept[section] = {k: v for k, v in kept.get(section, {}).items() if k not in fields}
    blob = json.dumps([kept, fingerprint], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def baseline_path(results: Results, root: Path | None = None) -> Path:
    key = baseline_key(results.config, results.data_fingerprint)
    suite = Path(results.suite) / f"v{results.suite_version}"
    return (root or default_dir()) / suite / key / f"seed{results.seed}.json"


def store(results: Results, results_path: Path, root: Path | None = None) -> Path:
    """File a single-task run's test scores as the baseline of its settings and seed (atomic; a rerun replaces it)."""
    entry = {
        "suite": results.suite,
        "suite_version": results.suite_version,
        "seed": results.seed,
        "data_fingerprint": results.data_fingerprint,
        "fusion": results.config["fusion"],
        "tasks": {name: task.metrics for name, task in results.tasks.items()},
        "results": str(Path(results_path).resolve()),
        "created": results.provenance.created,
    }
    return write_json_atomic(baseline_path(results, root), entry)


def load(results: Results, root: Path | None = None) -> tuple[dict[str, dict[str, float]], Path] | None:
    """The baseline scores {task: {metric: value}} for a run's settings and seed, and their path; None if absent."""
    path = baseline_path(results, root)
    if not path.is_file():
        return None
    return json.loads(path.read_text())["tasks"], path


def metric_directions(results: Results) -> dict[str, dict[str, bool]]:
    """{task: {metric: higher_is_better}} for every metric of a run, from the task types' definitions."""
    from mtl_bench.tasks import TASK_TYPES

    return {
        name: {metric: TASK_TYPES.get(task.type).directions[metric] for metric in task.metrics}
        for name, task in results.tasks.items()
    }


def delta_against(results: Results, base: dict[str, dict[str, float]], path: Path) -> Delta:
    """results.json's ``delta`` entry: Delta-p and Delta-m of a run's test metrics against baseline scores."""
    from mtl_bench.results.scores import delta_m, delta_p

    method = {name: task.metrics for name, task in results.tasks.items()}
    directions = metric_directions(results)
    dp, dm = delta_p(method, base, directions), delta_m(method, base, directions)
    return Delta(delta_p=dp.value, delta_m=dm.value, baseline=str(path), skipped=dp.skipped)


def how_to_make(results: Results) -> str:
    """The command that creates the missing baseline for a run."""
    parts = [f"mtl-bench run --suite {results.suite} --sharing single-task --seed {results.seed}"]
    if results.profile != "default":
        parts.append(f"--profile {results.profile}")
    if results.config["fusion"]["name"] != "early":
        parts.append(f"--fusion {results.config['fusion']['name']}")
    return " ".join(parts) + " (with the same --set overrides as this run)"
