"""Mean rank CI, relative improvements, Pareto front and hypervolume against hand computations and references."""

import itertools

import numpy as np
import pytest

from mtl_bench.results.fronts import (
    REFERENCE_IMPROVEMENT,
    hypervolume,
    mean_rank_ci,
    pareto_front,
    relative_improvements,
)
from mtl_bench.results.scores import mean_rank


def inclusion_exclusion(points, reference):
    """Union volume of the boxes [reference, p]: Σ_{Q ≠ ∅} (-1)^{|Q|+1} Π_k (min_{q∈Q} q_k - r_k)+."""
    p = np.asarray(points, dtype=float)
    ref = np.broadcast_to(np.asarray(reference, dtype=float), p.shape[1:])
    total = 0.0
    for size in range(1, len(p) + 1):
        for subset in itertools.combinations(range(len(p)), size):
            total += (-1) ** (size + 1) * float(np.prod(np.clip(p[list(subset)].min(axis=0) - ref, 0.0, None)))
    return total


def test_hypervolume_2d_by_hand():
    # boxes [0,1]x[0,3], [0,2]x[0,2], [0,3]x[0,1]: staircase area 1·3 + 1·2 + 1·1 = 6
    assert hypervolume([[1, 3], [2, 2], [3, 1]], 0.0) == pytest.approx(6.0)
    # a dominated point adds nothing
    assert hypervolume([[1, 3], [2, 2], [3, 1], [1, 1]], 0.0) == pytest.approx(6.0)


def test_hypervolume_3d_by_hand():
    # boxes 1·1·1 and 2·2·0.5 = 2 overlap in 1·1·0.5: 1 + 2 - 0.5 = 2.5
    assert hypervolume([[1, 1, 1], [2, 2, 0.5]], 0.0) == pytest.approx(2.5)


def test_hypervolume_against_inclusion_exclusion():
    rng = np.random.default_rng(0)
    for dim, n in ((2, 6), (3, 6), (4, 5)):
        for _ in range(5):
            pts = rng.uniform(-150, 80, (n, dim))
            assert hypervolume(pts) == pytest.approx(inclusion_exclusion(pts, REFERENCE_IMPROVEMENT))


def test_reference_point_and_single_task_box():
    assert hypervolume([[0.0, 0.0]]) == pytest.approx(100.0**2)  # single-task itself: 100^T
    assert hypervolume([[-150.0, 50.0]]) == 0.0  # below the reference on one task: clipped


def test_pareto_front_by_hand():
    pts = np.array([[1, 1], [2, 0], [0, 2], [0.5, 0.5], [1, 1], [2, -1]])
    # [0.5, 0.5] < [1, 1]; [2, -1] < [2, 0]; the duplicate [1, 1] rows do not dominate each other
    assert pareto_front(pts).tolist() == [0, 1, 2, 4]


def test_relative_improvements_by_hand():
    got = relative_improvements({"acc": 0.6, "err": 0.3}, {"acc": 0.5, "err": 0.2}, {"acc": True, "err": False})
    assert got == pytest.approx({"acc": 20.0, "err": -50.0})
    with pytest.raises(ValueError, match="'acc'"):
        relative_improvements({"acc": 0.6}, {"acc": 0.0}, {"acc": True})


def test_mean_rank_ci_against_a_loop():
    scores = {
        "a": {"x": [0.9, 0.7, 0.8], "y": [1.0, 3.0, 2.0]},
        "b": {"x": [0.8, 0.8, 0.8], "y": [2.0, 2.0, 2.0]},
        "c": {"x": [0.1, 0.2, 0.3], "y": [9.0, 9.0, 9.0]},
    }
    dirs = {"x": True, "y": False}
    got = mean_rank_ci(scores, dirs, replicates=50, seed=4)
    means = {c: {t: float(np.mean(v)) for t, v in s.items()} for c, s in scores.items()}
    assert {c: r.mean for c, r in got.items()} == pytest.approx(mean_rank(means, dirs))
    draws = np.random.default_rng(4).integers(0, 3, (50, 3))
    boot = {c: [] for c in scores}
    for d in draws:
        ranks = mean_rank({c: {t: float(np.mean(np.asarray(v)[d])) for t, v in s.items()} for c, s in scores.items()},
                          dirs)
        for c in scores:
            boot[c].append(ranks[c])
    for c in scores:
        assert (got[c].low, got[c].high) == pytest.approx(tuple(np.quantile(boot[c], [0.025, 0.975])))
    assert (got["c"].low, got["c"].high) == (3.0, 3.0)  # last on every task for every resample
