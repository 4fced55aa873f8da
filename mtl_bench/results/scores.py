"""Multi-task scores: relative change against single-task baselines (Δp, Δm), mean rank, and CIs over seeds.

Pure functions on plain dicts, so they can be checked against numbers computed by hand. Scores are keyed
``{task: {metric: value}}``; metric directions ``{task: {metric: higher_is_better}}``.

Two conventions for "how much better than single-task training" are in use, with opposite signs:

- Δp (LibMTL: Lin & Zhang, "LibMTL: A Python Library for Multi-Task Learning", JMLR 2023; after Maninis et al.,
  "Attentive Single-Tasking of Multiple Tasks", CVPR 2019): the mean relative improvement over each task's metrics,
  then the mean over tasks, so a task with many metrics counts as much as a task with one. Higher is better.
- Δm (Nash-MTL: Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022): the mean relative change over
  all metrics of all tasks pooled, signed so that lower is better.

With one metric per task, Δm = -Δp; otherwise they also differ in how metrics are averaged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats

Scores = Mapping[str, Mapping[str, float]]  # task -> metric -> value
Directions = Mapping[str, Mapping[str, bool]]  # task -> metric -> higher is better


class DeltaResult(NamedTuple):
    value: float  # percent; nan when every metric was skipped
    skipped: list[str]  # "task/metric" left out because the baseline value is 0 (no relative change exists)


class CI95(NamedTuple):
    mean: float
    half_width: float  # the interval is mean ± half_width; nan for a single value


def _improvements(method: Scores, baseline: Scores, directions: Directions) -> tuple[dict[str, list[float]], list[str]]:
    """Per task, the relative improvement (M_m - M_b) / M_b of every metric, sign-flipped for lower-is-better ones.

    Positive means the method is better. Metrics with a zero baseline are skipped and listed as "task/metric".
    """
    per_task: dict[str, list[float]] = {}
    skipped: list[str] = []
    for task in sorted(set(method) | set(baseline)):
        if task not in method:
            raise ValueError(f"task {task!r} is in the baseline but missing from the method's scores")
        if task not in baseline:
            raise ValueError(f"task {task!r} is in the method's scores but missing from the baseline")
        gains: list[float] = []
        for metric in sorted(set(method[task]) | set(baseline[task])):
            for side, scores in (("method's scores", method), ("baseline", baseline)):
                if metric not in scores[task]:
                    raise ValueError(f"task {task!r}: metric {metric!r} is missing from the {side}")
            if metric not in directions.get(task, {}):
                raise ValueError(f"task {task!r}: metric {metric!r} has no direction (higher or lower is better)")
            m, b = float(method[task][metric]), float(baseline[task][metric])
            if b == 0.0:
                skipped.append(f"{task}/{metric}")
                continue
            sign = 1.0 if directions[task][metric] else -1.0
            gains.append(sign * (m - b) / b)
        if gains:
            per_task[task] = gains
    return per_task, skipped


def delta_p(method: Scores, baseline: Scores, directions: Directions) -> DeltaResult:
    """Δp, LibMTL / Maninis et al. 2019: higher is better, in percent.

    Δp = 100 · 1/T Σ_t 1/K_t Σ_k (-1)^{s_k} (M_m,k - M_b,k) / M_b,k, with s_k = 1 when metric k is lower-is-better,
    T tasks and K_t metrics of task t. Every metric present on either side is used and must be on both sides
    (ValueError otherwise). Metrics with M_b,k = 0 are skipped (listed in ``skipped``); a task whose metrics are all
    skipped leaves the task mean. The baseline value is used as is, so a negative baseline flips the sign.

    >>> d = {"cls": {"acc": True}, "reg": {"loss": False}}
    >>> r = delta_p({"cls": {"acc": 0.80}, "reg": {"loss": 0.9}}, {"cls": {"acc": 0.75}, "reg": {"loss": 1.0}}, d)
    >>> round(r.value, 4)  # mean of +6.667 % (accuracy up) and +10 % (loss down)
    8.3333
    """
    per_task, skipped = _improvements(method, baseline, directions)
    if not per_task:
        return DeltaResult(math.nan, skipped)
    return DeltaResult(100.0 * float(np.mean([np.mean(gains) for gains in per_task.values()])) + 0.0, skipped)


def delta_m(method: Scores, baseline: Scores, directions: Directions) -> DeltaResult:
    """Δm, Nash-MTL (Navon et al. 2022): lower is better, in percent.

    Δm = 100 · 1/K Σ_k (-1)^{δ_k} (M_m,k - M_b,k) / M_b,k, with δ_k = 1 when metric k is higher-is-better and K the
    number of metrics of all tasks together (a flat mean, unlike Δp). Same checks and skipping as ``delta_p``.

    >>> d = {"cls": {"acc": True}, "reg": {"loss": False}}
    >>> r = delta_m({"cls": {"acc": 0.80}, "reg": {"loss": 0.9}}, {"cls": {"acc": 0.75}, "reg": {"loss": 1.0}}, d)
    >>> round(r.value, 4)  # -(6.667 % + 10 %) / 2
    -8.3333
    """
    per_task, skipped = _improvements(method, baseline, directions)
    gains = [g for task_gains in per_task.values() for g in task_gains]
    if not gains:
        return DeltaResult(math.nan, skipped)
    return DeltaResult(-100.0 * float(np.mean(gains)) + 0.0, skipped)  # + 0.0: no -0.0 when equal


def mean_rank(scores: Mapping[str, Mapping[str, float]], directions: Mapping[str, bool]) -> dict[str, float]:
    """Mean over tasks of each method's rank on the task (1 = best), from ``{method: {task: score}}``.

    ``directions`` is ``{task: higher_is_better}`` and names the tasks that are ranked; every method needs a score
    for each of them (ValueError otherwise). Ties get the average of the ranks they span (scipy's
    ``rankdata(method="average")``). A NaN score gets no rank on that task, and that method's mean is over the tasks
    it has a rank on (NaN when none).

    >>> mean_rank({"a": {"x": 0.9, "y": 2.0}, "b": {"x": 0.8, "y": 1.0}}, {"x": True, "y": False})
    {'a': 1.5, 'b': 1.5}
    """
    methods = list(scores)
    for method in methods:
        for task in directions:
            if task not in scores[method]:
                raise ValueError(f"method {method!r} has no score for task {task!r}")
    ranks: dict[str, list[float]] = {method: [] for method in methods}
    for task, higher_is_better in directions.items():
        values = np.array([float(scores[method][task]) for method in methods])
        finite = ~np.isnan(values)
        task_ranks = np.full(len(methods), np.nan)
        task_ranks[finite] = stats.rankdata(-values[finite] if higher_is_better else values[finite], method="average")
        for method, rank in zip(methods, task_ranks, strict=True):
            if not np.isnan(rank):
                ranks[method].append(float(rank))
    return {method: float(np.mean(r)) if r else math.nan for method, r in ranks.items()}


def mean_ci95(values: Sequence[float]) -> CI95:
    """Mean and Student-t 95% confidence half-width over seeds.

    half_width = t_{0.975, n-1} · s / √n, with s the sample standard deviation (ddof = 1). One value gives a NaN
    half-width (no spread can be estimated; tables show it as "(1 seed)"). NaN values are not dropped: they make the
    mean NaN, so a cell with one seed missing a score does not silently average fewer seeds than the others.

    >>> m, h = mean_ci95([1.0, 2.0, 3.0])  # s = 1, t_{0.975, 2} = 4.3027
    >>> m, round(h, 4)
    (2.0, 2.4841)
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("mean_ci95 needs at least one value")
    mean = float(np.mean(x))
    if x.size == 1:
        return CI95(mean, math.nan)
    half = float(stats.t.ppf(0.975, x.size - 1) * np.std(x, ddof=1) / math.sqrt(x.size))
    return CI95(mean, half)
