"""Mean rank with a bootstrap CI over seeds, and the Pareto front of cells over tasks with its hypervolume.

Fronts live in the space of relative improvements over single-task training, one axis per task, in percent and
signed so that higher is better on every axis: single-task sits at the origin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats

# Hypervolume reference point: -100 % on every task, i.e. a score of 0 on a higher-is-better metric (the worst an
# accuracy, recall, mAP or CIDEr can be) or twice the single-task error on a lower-is-better one. It is fixed (not
# the worst point of the cells shown), so hypervolumes of different tables are comparable; every usable cell lies
# above it; and single-task's own box is exactly 100^T, so HV / 100^T > 1 means the front covers more than
# single-task. The origin (single-task itself) would be a worse choice: a cell that loses on any one task, as most
# multi-task cells do somewhere, would add nothing. Coordinates below it are clipped (they add no volume).
REFERENCE_IMPROVEMENT = -100.0


class RankCI(NamedTuple):
    mean: float  # mean rank over tasks of the seed-mean scores (1 = best), as ``scores.mean_rank``
    low: float  # 95% percentile bootstrap interval over resampled seeds
    high: float


def mean_rank_ci(
    scores: Mapping[str, Mapping[str, Sequence[float]]], directions: Mapping[str, bool],
    replicates: int = 2000, seed: int = 0, alpha: float = 0.05,
) -> dict[str, RankCI]:
    """Mean rank of each cell with a percentile bootstrap CI (Efron & Tibshirani 1993, ch. 13) over seeds.

    ``scores`` is ``{cell: {task: per-seed main scores}}``, seeds paired: position k is the same seed in every cell
    and task. A replicate draws S seed positions with replacement (the same for all cells), averages each cell's
    scores over them, ranks the cells per task (ties share the average rank) and averages the ranks over tasks.
    """
    cells, tasks = list(scores), list(directions)
    try:
        x = np.array([[np.asarray(scores[c][t], dtype=float) for t in tasks] for c in cells])  # [C, T, S]
    except (KeyError, ValueError) as err:
        raise ValueError(f"mean_rank_ci needs every cell and task to have the same seeds: {err}") from err
    if x.ndim != 3 or not np.isfinite(x).all():
        raise ValueError("mean_rank_ci needs finite per-seed scores, the same seeds for every cell and task")
    sign = np.array([-1.0 if directions[t] else 1.0 for t in tasks])[None, :, None]  # rank 1 = best
    draws = np.random.default_rng(seed).integers(0, x.shape[2], (replicates, x.shape[2]))
    means = (sign * x)[:, :, draws].mean(axis=3)  # [C, T, R]
    boot = stats.rankdata(means, axis=0, method="average").mean(axis=1)  # [C, R]
    observed = stats.rankdata((sign * x).mean(axis=2), axis=0, method="average").mean(axis=1)
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=1)
    return {c: RankCI(float(observed[i]), float(low[i]), float(high[i])) for i, c in enumerate(cells)}


def relative_improvements(
    scores: Mapping[str, float], single_task: Mapping[str, float], directions: Mapping[str, bool]
) -> dict[str, float]:
    """Per task, 100 · s · (M - B)/B with s = +1 when higher is better, else -1: positive means better than B.

    >>> relative_improvements({"a": 3.0, "b": 1.5}, {"a": 2.0, "b": 2.0}, {"a": True, "b": False})
    {'a': 50.0, 'b': 25.0}
    """
    out = {}
    for task, higher in directions.items():
        base = float(single_task[task])
        if base == 0.0:
            raise ValueError(f"task {task!r}: single-task score is 0, no relative improvement exists")
        out[task] = 100.0 * (1.0 if higher else -1.0) * (float(scores[task]) - base) / base
    return out


def pareto_front(points: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows of ``points`` [P, T] (every axis higher is better), in input order.

    Row q dominates row p when q >= p on every axis and q > p on at least one; equal rows do not dominate each
    other, so both stay on the front.
    """
    p = np.asarray(points, dtype=float)
    geq = (p[:, None, :] >= p[None, :, :]).all(axis=2)  # geq[q, p]: q >= p everywhere
    gt = (p[:, None, :] > p[None, :, :]).any(axis=2)
    dominated = (geq & gt).any(axis=0)
    return np.flatnonzero(~dominated)


def hypervolume(points: np.ndarray, reference: Sequence[float] | float = REFERENCE_IMPROVEMENT) -> float:
    """Volume of the union of the boxes [reference, point] (maximisation), by slicing along the last axis.

    Exact for any dimension (Zitzler & Thiele 1999; the "hypervolume by slicing objectives" recursion of While et
    al., IEEE TEC 2006): sweep the distinct last coordinates from the top, each slab's thickness times the
    (T-1)-dimensional hypervolume of the points that reach it. Points are clipped at the reference.
    """
    p = np.asarray(points, dtype=float).reshape(-1, np.shape(points)[-1] if np.ndim(points) else 1)
    ref = np.broadcast_to(np.asarray(reference, dtype=float), p.shape[1:])
    p = p[(p > ref).all(axis=1)]
    if p.size == 0:
        return 0.0
    if p.shape[1] == 1:
        return float(p[:, 0].max() - ref[0])
    levels = np.unique(p[:, -1])[::-1]
    volume = 0.0
    for top, below in zip(levels, [*levels[1:], ref[-1]], strict=True):
        volume += (top - below) * hypervolume(p[p[:, -1] >= top, :-1], ref[:-1])
    return float(volume)

