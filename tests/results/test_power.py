"""Variance components, MDD, seeds needed and split size: hand computations, algebra and simulation."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from mtl_bench.results.paired import paired_bootstrap_means
from mtl_bench.results.power import (
    VarianceComponents,
    components_from_bootstrap,
    mean_variance,
    minimum_detectable_difference,
    run_variances,
    seeds_needed,
    split_size_for_half_seed_variance,
    variance_components,
)

# 3 seeds x 4 items. Seed means 3, 3, 4.5 (grand 3.5); item means 2, 3, 4, 5.
Y = np.array([[1, 2, 3, 6], [2, 3, 4, 3], [3, 4, 5, 6]], dtype=float)


def test_components_by_hand():
    # MS_seed = 4·(0.25 + 0.25 + 1)/2 = 3; MS_item = 3·(2.25 + 0.25 + 0.25 + 2.25)/3 = 5;
    # residuals rows (-.5,-.5,-.5,1.5), (.5,.5,.5,-1.5), (0,0,0,0): SS = 6, MS_res = 6/(2·3) = 1.
    c = variance_components(Y)
    assert c.seed == pytest.approx((3 - 1) / 4)
    assert c.item == pytest.approx((5 - 1) / 3)
    assert c.residual == pytest.approx(1.0)
    assert c.items == 4
    assert mean_variance(c, 3)[0] == pytest.approx(0.5 / 3 + (4 / 3) / 4 + 1 / 12)  # 7/12
    assert run_variances(c) == pytest.approx((0.5, (4 / 3 + 1) / 4))
    assert split_size_for_half_seed_variance(c) == 10  # ceil(2·(7/3)/0.5) = ceil(9.33)


def test_components_are_floored_at_zero():
    c = variance_components(np.array([[0.0, 1.0], [1.0, 0.0]]))  # seed and item means all equal
    assert c.seed == 0.0 and c.item == 0.0 and c.residual == pytest.approx(1.0)
    assert split_size_for_half_seed_variance(c) is None


def test_bootstrap_components_equal_anova_under_exact_enumeration():
    """With every one of the 4^4 item draws, the bootstrap components are the ANOVA ones (algebraically), up to the
    R/(R-1) of the sample variance over replicates."""
    every = np.array(list(itertools.product(range(4), repeat=4)))
    reps = np.array([[Y[s, idx].mean() for s in range(3)] for idx in every])
    got = components_from_bootstrap(Y.mean(axis=1), reps, 4)
    k = len(every) / (len(every) - 1)
    anova = variance_components(Y)
    assert got.item == pytest.approx(anova.item * k)
    assert got.residual == pytest.approx(anova.residual * k)
    assert got.seed == pytest.approx(Y.mean(axis=1).var(ddof=1) - anova.residual * k / 4)


def test_mdd_large_df_is_the_normal_formula():
    c = VarianceComponents(seed=1.0, item=0.0, residual=0.0, items=100)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)  # 2.8016
    assert minimum_detectable_difference(c, 100_000) == pytest.approx(z * math.sqrt(1 / 100_000), rel=1e-3)


def test_mdd_seed_only_is_the_noncentral_t_with_s_minus_1_df():
    c = VarianceComponents(seed=0.09, item=0.0, residual=0.0, items=50)
    mdd = minimum_detectable_difference(c, 3)
    lam = mdd / math.sqrt(0.09 / 3)
    t = stats.t.ppf(0.975, 2)
    assert stats.nct.sf(t, 2, lam) + stats.nct.cdf(-t, 2, lam) == pytest.approx(0.8, abs=1e-8)
    assert lam == pytest.approx(5.6535, abs=1e-3)  # twice the normal 2.80 at 3 seeds


def test_seeds_needed_against_a_plain_scan():
    c = VarianceComponents(seed=0.04, item=0.25, residual=1.0, items=40)
    for diff in (0.5, 0.35, 0.25):  # the floor below is 0.221
        scan = next(s for s in range(2, 1001) if minimum_detectable_difference(c, s) <= diff)
        assert seeds_needed(c, diff) == scan
    floor = 2.8 * math.sqrt(0.25 / 40)  # the shared item term alone: no number of seeds gets below it
    assert seeds_needed(c, 0.9 * floor) is None


def test_mdd_gives_80_percent_power_in_simulation():
    """Simulate paired experiments from the crossed model with the components and a true difference = MDD, test
    each with the bootstrap test, count rejections. 300 repeats: binomial sd 2.3 %; tolerance ±8 % also covers the
    approximations (Satterthwaite df, bootstrap noise in the shared term)."""
    c = VarianceComponents(seed=0.04, item=0.25, residual=1.0, items=40)
    seeds = 5
    mdd = minimum_detectable_difference(c, seeds)
    rng = np.random.default_rng(7)
    rejections = 0
    for k in range(300):
        d = (mdd + math.sqrt(c.seed) * rng.standard_normal((seeds, 1)) + math.sqrt(c.item) * rng.standard_normal(
            (1, c.items)) + math.sqrt(c.residual) * rng.standard_normal((seeds, c.items)))
        rejections += paired_bootstrap_means(np.zeros_like(d), d, replicates=300, seed=k).p_value < 0.05
    assert 0.72 <= rejections / 300 <= 0.88


def test_variance_formula_in_simulation():
    """The mean of a crossed S x N table has variance V(S, N): a z-test with it rejects in ~80 % at the normal MDD."""
    c = VarianceComponents(seed=0.04, item=0.25, residual=1.0, items=40)
    v = mean_variance(c, 5)[0]
    diff = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * math.sqrt(v)
    rng = np.random.default_rng(8)
    n = 4000
    means = (diff + math.sqrt(c.seed) * rng.standard_normal((n, 5)).mean(axis=1)
             + math.sqrt(c.item) * rng.standard_normal((n, 40)).mean(axis=1)
             + math.sqrt(c.residual) * rng.standard_normal((n, 5 * 40)).mean(axis=1))
    assert np.var(means) == pytest.approx(v, rel=0.06)  # sd of a variance estimate from 4000 normals: 2.2 %
    assert np.mean(np.abs(means / math.sqrt(v)) > 1.96) == pytest.approx(0.8, abs=0.025)
