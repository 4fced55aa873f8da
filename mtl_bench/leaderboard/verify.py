"""What a leaderboard checks before it accepts a submission. Every failure is one UserError naming what differs.

1. Suite, suite version and data fingerprint are the leaderboard's, in the submission and in every seed's results.
2. Enough distinct seeds, all of one configuration.
3. Every task of the leaderboard has predictions, one per test sample, of the task's kind.
4. Every claimed test metric is recomputed from the predictions against the test labels, which are rebuilt from the
   submission's data settings (and must carry the leaderboard's fingerprint): a claim that differs is rejected.

Costs (parameters, time, memory) are reported by the submitter and cannot be recomputed here.
"""

from __future__ import annotations

import math
from typing import Any

from mtl_bench.config.schema import DataConfig, RunConfig
from mtl_bench.errors import UserError
from mtl_bench.evaluation.rescore import prepared_suite, task_predictions
from mtl_bench.leaderboard.definition import LeaderboardSpec
from mtl_bench.leaderboard.submission import Submission, without_seed

# Claimed and recomputed values agree when they come from the same predictions; the tolerance only absorbs float
# summation order (a GPU run's metrics recomputed on CPU).
REL_TOL, ABS_TOL = 1e-5, 1e-6


def _check_identity(sub: Submission, spec: LeaderboardSpec, source: str) -> None:
    from mtl_bench.tasks.catalog import get_suite

    expected = {"suite": spec.suite, "suite_version": spec.suite_version, "data_fingerprint": spec.data_fingerprint}
    for field, want in expected.items():
        if getattr(sub, field) != want:
            raise UserError(f"{source}: field {field!r} = {getattr(sub, field)!r}: leaderboard {spec.name} expects "
                            f"{want!r}")
        for i, run in enumerate(sub.runs):
            if getattr(run.results, field) != want:
                raise UserError(f"{source}: field 'runs.{i}.results.{field}' = {getattr(run.results, field)!r}: "
                                f"leaderboard {spec.name} expects {want!r}")
    current = get_suite(spec.suite).version
    if current != spec.suite_version:
        raise UserError(f"{source}: suite {spec.suite} is at version {current} here, the leaderboard ranks version "
                        f"{spec.suite_version}")


def _check_seeds(sub: Submission, spec: LeaderboardSpec, source: str) -> None:
    seeds = [run.results.seed for run in sub.runs]
    if len(set(seeds)) != len(seeds):
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        raise UserError(f"{source}: field 'runs': seed {twice[0]} appears twice; each seed once")
    if len(seeds) < spec.min_seeds:
        raise UserError(f"{source}: field 'runs': {len(seeds)} seed(s) ({', '.join(map(str, seeds))}); leaderboard "
                        f"{spec.name} needs at least {spec.min_seeds} (mtl-bench compare --seeds {spec.min_seeds} "
                        "--submit)")
    for i, run in enumerate(sub.runs):
        if without_seed(run.results.config) != sub.config:
            raise UserError(f"{source}: field 'runs.{i}.results.config' differs from field 'config' beyond the seed")
        if run.results.config.get("seed") != run.results.seed:
            raise UserError(f"{source}: field 'runs.{i}.results.seed' = {run.results.seed}: its config says "
                            f"{run.results.config.get('seed')!r}")


def _check_tasks(sub: Submission, spec: LeaderboardSpec, source: str) -> None:
    for i, run in enumerate(sub.runs):
        for field, names in (("predictions", set(run.predictions)), ("results.tasks", set(run.results.tasks))):
            if names != set(spec.tasks):
                missing, extra = sorted(set(spec.tasks) - names), sorted(names - set(spec.tasks))
                what = f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(extra)}"
                raise UserError(f"{source}: field 'runs.{i}.{field}': {what} (leaderboard {spec.name} ranks "
                                f"{', '.join(sorted(spec.tasks))})")
        for task, main in spec.tasks.items():
            claimed = run.results.tasks[task]
            if claimed.main_score != main or main not in claimed.metrics:
                raise UserError(f"{source}: field 'runs.{i}.results.tasks.{task}.metrics' has no {main!r}, the "
                                "task's main score")


def recompute(sub: Submission, source: str) -> list[dict[str, dict[str, float]]]:
    """Per seed, {task: {metric: value}} recomputed from the predictions against freshly prepared test labels."""
    prepared = submission_test_data(sub, source)
    out = []
    for i, run in enumerate(sub.runs):
        scores: dict[str, dict[str, float]] = {}
        for name, rows in sorted(run.predictions.items()):
            predictions = task_predictions(prepared, name, rows, f"{source}: field 'runs.{i}.predictions.{name}'")
            scores[name] = prepared.tasks[name].score_predictions(predictions, prepared.splits[name]["test"])
        out.append(scores)
    return out


def submission_test_data(sub: Submission, source: str) -> Any:
    """The suite prepared from the submission's data settings in this machine's data cache (not the submitter's),
    which must carry the claimed fingerprint."""
    cfg = RunConfig.model_validate(sub.runs[0].results.config)
    prepared = prepared_suite(cfg, cfg.data.model_copy(update={"dir": DataConfig().dir}))
    if prepared.fingerprint != sub.data_fingerprint:
        raise UserError(f"{source}: field 'config.data' gives data with fingerprint {prepared.fingerprint!r}, not the "
                        f"claimed {sub.data_fingerprint!r}")
    return prepared


def _compare_claims(sub: Submission, recomputed: list[dict[str, dict[str, float]]], source: str) -> None:
    for run, scores in zip(sub.runs, recomputed, strict=True):
        for task, claimed in sorted(run.results.tasks.items()):
            for metric, value in sorted(claimed.metrics.items()):
                if metric not in scores[task]:
                    raise UserError(f"{source}: seed {run.results.seed}, task {task}: metric {metric!r} cannot be "
                                    f"recomputed (the task has {', '.join(sorted(scores[task]))})")
                again = scores[task][metric]
                same = math.isnan(value) and math.isnan(again)
                if not same and not math.isclose(value, again, rel_tol=REL_TOL, abs_tol=ABS_TOL):
                    raise UserError(f"{source}: seed {run.results.seed}, task {task}, metric {metric}: claimed "
                                    f"{value:.6f}, recomputed {again:.6f} from the submitted predictions")


def verify(sub: Submission, spec: LeaderboardSpec, source: str) -> list[dict[str, dict[str, Any]]]:
    """Raise a UserError on the first problem; return the recomputed scores of every seed."""
    _check_identity(sub, spec, source)
    _check_seeds(sub, spec, source)
    _check_tasks(sub, spec, source)
    recomputed = recompute(sub, source)
    _compare_claims(sub, recomputed, source)
    return recomputed
