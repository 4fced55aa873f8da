"""Paired comparisons: against a plain-loop float64 reference, exact enumeration, calibration over repeats, Holm."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from mtl_bench.data.batches import TaskData
from mtl_bench.metrics.cider import cider_d
from mtl_bench.results.paired import (
    contrast,
    draws,
    holm,
    item_variances,
    metric_difference,
    paired_bootstrap,
    paired_bootstrap_means,
    paired_inference,
    verdict,
)
from mtl_bench.results.scores import delta_p

# 2 seeds x 5 items of per-item values (e.g. correct = 1), cells A and B.
A = np.array([[1, 0, 1, 1, 0], [1, 1, 0, 1, 0]], dtype=float)
B = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=float)


def reference_inference(observed, replicates, seed_idx, n_items, alpha=0.05):
    """Plain loops in float64, written from the formulas of the module docstring."""
    S, R = len(observed), len(replicates)
    mean = sum(observed) / S
    s2 = sum((x - mean) ** 2 for x in observed) / (S - 1)
    row_means = [sum(replicates[r]) / S for r in range(R)]
    m_all = sum(row_means) / R
    v_mean = sum((m - m_all) ** 2 for m in row_means) / (R - 1)
    col_vars = []
    for s in range(S):
        col = [replicates[r][s] for r in range(R)]
        mc = sum(col) / R
        col_vars.append(sum((v - mc) ** 2 for v in col) / (R - 1))
    one = sum(col_vars) / S
    shared = max(0.0, (S * v_mean - one) / (S - 1)) * n_items / (n_items - 1)
    v_seed = s2 / S
    var = v_seed + shared
    upper = v_seed * (S - 1) / stats.chi2.ppf(0.2, S - 1)
    df = (upper + shared) ** 2 / (upper**2 / (S - 1) + shared**2 / (n_items - 1))
    half = stats.t.ppf(1 - alpha / 2, df) * math.sqrt(var)
    p = 2 * stats.t.sf(abs(mean) / math.sqrt(var), df)
    two_level = sorted(sum(replicates[r][seed_idx[r][j]] for j in range(S)) / S for r in range(R))
    return mean, mean - half, mean + half, p, math.sqrt(var), df, two_level


def test_hand_case_exact_enumeration():
    """2 seeds x 5 items, the item bootstrap replaced by all 5^5 equally likely draws (its exact distribution)."""
    diff = B - A  # [[0,1,0,0,0], [0,0,1,0,1]]
    every = np.array(list(itertools.product(range(5), repeat=5)))
    reps = np.array([[diff[s, idx].mean() for s in range(2)] for idx in every])
    seed_idx = np.zeros((len(every), 2), dtype=int)
    got = paired_inference(diff.mean(axis=1), reps, seed_idx, 5)
    ref = reference_inference(list(diff.mean(axis=1)), reps.tolist(), seed_idx.tolist(), 5)
    np.testing.assert_allclose(got[:6], ref[:6], rtol=1e-12)
    # By hand: per-seed differences 0.2 and 0.4, mean 0.3, s² = 0.02, so the seed term is 0.01. The exact bootstrap
    # covariance of the two seeds' item means is (1/5)·(1/5)Σ_i (d_0i - 0.2)(d_1i - 0.4) = -0.008 (R/(R-1) aside),
    # floored at 0: the items carry no shared effect here, V = 0.01, df = S - 1 = 1, se = 0.1.
    assert got[0] == pytest.approx(0.3)
    assert got[4] == pytest.approx(0.1)
    assert got[5] == pytest.approx(1.0)
    assert got[1] == pytest.approx(0.3 - 12.706204736 * 0.1, rel=1e-8)
    assert got[3] == pytest.approx(2 * stats.t.sf(3.0, 1))


def test_shared_item_effect_by_hand():
    """Two seeds with identical per-item differences: everything is shared, nothing seed-level."""
    diff = np.array([[0.0, 1.0, 0.0, 1.0, 1.0]] * 2)
    every = np.array(list(itertools.product(range(5), repeat=5)))
    reps = np.array([[diff[s, idx].mean() for s in range(2)] for idx in every])
    one, shared = item_variances(reps, 5)
    # Ideal bootstrap variance of a mean of 5 draws from {0,0,1,1,1}: 0.24/5; times 5/4 and R/(R-1) (sample var).
    r = len(every)
    assert one == pytest.approx(0.24 / 5 * 5 / 4 * r / (r - 1))
    assert shared == pytest.approx(one)
    got = paired_inference(diff.mean(axis=1), reps, np.zeros((r, 2), dtype=int), 5)
    assert got[4] ** 2 == pytest.approx(shared)  # seed term 0
    assert got[5] == pytest.approx(4.0)  # df = N - 1


def test_fast_path_matches_loop_reference_with_few_replicates():
    res = paired_bootstrap_means(A, B, replicates=7, seed=3)
    seed_idx, items = draws(2, {"x": 5}, 7, 3)
    reps = [[(B[s, items["x"][r]] - A[s, items["x"][r]]).mean() for s in range(2)] for r in range(7)]
    ref = reference_inference([0.2, 0.4], reps, seed_idx.tolist(), 5)
    np.testing.assert_allclose(res[:6], ref[:6], rtol=1e-12)
    np.testing.assert_allclose([res.percentile_low, res.percentile_high], np.quantile(ref[6], [0.025, 0.975]))
    assert (res.seeds, res.items, res.replicates, res.seed) == (2, 5, 7, 3)


def test_deterministic_given_seed():
    assert paired_bootstrap_means(A, B, seed=5) == paired_bootstrap_means(A, B, seed=5)
    assert paired_bootstrap_means(A, B, seed=5) != paired_bootstrap_means(A, B, seed=6)


def test_slow_path_equals_fast_path_for_a_mean_metric():
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 20)), rng.random((3, 20))

    def score(cell, seed, items):
        return float((a if cell == "A" else b)[seed, items].mean())

    slow = paired_bootstrap(metric_difference(score, "A", "B", "t"), [0, 1, 2], {"t": 20}, replicates=300, seed=9)
    fast = paired_bootstrap_means(a, b, replicates=300, seed=9)
    np.testing.assert_allclose(slow, fast, rtol=1e-10)


def test_contrast_recomputes_delta_p_on_the_same_items():
    """Δp of B against A per seed, two tasks of different sizes: the observed value is the mean of per-seed Δp."""
    rng = np.random.default_rng(1)
    vals = {(c, t): rng.random((2, n)) + 0.5 for c in "AB" for t, n in (("x", 6), ("y", 9))}

    def score(cell, seed, task, items):
        return float(vals[cell, task][seed, items].mean())

    dirs = {"x": {"m": True}, "y": {"m": True}}

    def dp(s):
        return delta_p({t: {"m": v} for t, v in s["B"].items()}, {t: {"m": v} for t, v in s["A"].items()}, dirs).value

    res = paired_bootstrap(contrast(score, "AB", "xy", dp), [0, 1], {"x": 6, "y": 9}, replicates=50)
    per_seed = [50 * sum(vals["B", t][s].mean() / vals["A", t][s].mean() - 1 for t in "xy") for s in (0, 1)]
    assert res.difference == pytest.approx(np.mean(per_seed))
    assert res.items == 6


def _repeats(planted: float, n: int = 200, seeds: int = 3, items: int = 40, components=(0.3, 0.5, 1.0)):
    """Verdicts of B vs A over ``n`` synthetic experiments from the crossed model with sd (seed, item, residual)."""
    rng = np.random.default_rng(12345)
    sa, sb, se = components
    out = []
    for k in range(n):
        a = rng.standard_normal((seeds, items))
        d = planted + sa * rng.standard_normal((seeds, 1)) + sb * rng.standard_normal((1, items))
        b = a + d + se * rng.standard_normal((seeds, items))
        r = paired_bootstrap_means(a, b, replicates=400, seed=k)
        out.append(verdict(r.difference, holm([r.p_value])[0], higher_is_better=True))
    return out


@pytest.mark.parametrize("components", [(0.3, 0.5, 1.0), (1.0, 0.0, 0.2), (0.0, 1.0, 1.0)])
def test_no_difference_is_a_tie_in_95_percent(components):
    """200 repeats, 3 seeds x 40 items. At a true 5 % false-positive rate the count of non-ties is Binomial(200,
    0.05): mean 10, and P(count > 15) = 0.04, so "<= 15 (7.5 %)" is the tolerance. The plain two-level percentile
    bootstrap fails the seed-dominated case (~20 % false positives)."""
    verdicts = _repeats(0.0, components=components)
    assert verdicts.count("tie") >= 185


def test_planted_difference_is_better_in_95_percent():
    """Difference 2.0 against V = 0.09/3 + 0.25/40 + 1/120 (sd 0.21, ~9 se): "better" in >= 190 of 200."""
    assert _repeats(2.0).count("better") >= 190
    assert _repeats(-2.0).count("worse") >= 190


def test_holm_by_hand():
    # m = 4, sorted 0.01, 0.02, 0.03, 0.2: 4·0.01 = 0.04, 3·0.02 = 0.06, 2·0.03 = 0.06, 1·0.2 = 0.2.
    np.testing.assert_allclose(holm([0.03, 0.2, 0.01, 0.02]), [0.06, 0.2, 0.04, 0.06])
    # step-down monotonicity: 3·0.01 = 0.03, 2·0.011 = 0.022 -> 0.03, 0.9 stays; 1 caps.
    np.testing.assert_allclose(holm([0.011, 0.01, 0.9]), [0.03, 0.03, 0.9])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])
    out = holm([0.01, math.nan, 0.04])  # NaN is not counted: m = 2
    np.testing.assert_allclose(out, [0.02, math.nan, 0.04])


def test_verdict_uses_direction():
    assert verdict(0.1, 0.01, True) == "better"
    assert verdict(0.1, 0.01, False) == "worse"
    assert verdict(-0.1, 0.01, False) == "better"
    assert verdict(0.1, 0.05, True) == "tie"
    assert verdict(0.1, math.nan, True) == "tie"


def test_one_seed_is_untestable():
    r = paired_bootstrap_means(A[:1], B[:1], replicates=50)
    assert r.difference == pytest.approx(0.2) and math.isnan(r.p_value) and math.isnan(r.low)


def test_task_data_take_repeats_items():
    data = TaskData({"image": torch.arange(5)[:, None]}, torch.arange(5) * 10, [[str(i)] for i in range(5)])
    sub = data.take(np.array([4, 0, 4]))
    assert sub.target.tolist() == [40, 0, 40] and sub.inputs["image"][:, 0].tolist() == [4, 0, 4]
    assert sub.references == [["4"], ["0"], ["4"]]


def test_cider_slow_path_runs_on_recomputed_corpora():
    """CIDEr-D of B against itself is 0 on every replicate; against a worse cell the difference is positive."""
    refs = [["a cat sits on a mat"], ["a dog runs in a park"], ["a bird flies"], ["two men talk"]]
    good = ["a cat sits on a mat", "a dog runs in a park", "a bird flies", "two men talk"]
    bad = ["a cat", "a dog", "a bird", "men"]
    preds = {"A": {0: bad, 1: bad}, "B": {0: good, 1: good}}

    def score(cell, seed, items):
        return cider_d([preds[cell][seed][i] for i in items], [refs[i] for i in items])

    same = paired_bootstrap(metric_difference(score, "B", "B", "c"), [0, 1], {"c": 4}, replicates=20)
    assert same.difference == 0.0 and same.p_value == 1.0
    res = paired_bootstrap(metric_difference(score, "A", "B", "c"), [0, 1], {"c": 4}, replicates=20)
    assert res.difference == pytest.approx(cider_d(good, refs) - cider_d(bad, refs))
