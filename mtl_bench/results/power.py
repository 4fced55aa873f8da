"""Variance components of a score over seeds and test items, and what a comparison can detect with them.

Model (crossed two-way random effects, one value per seed and item; Searle, Casella & McCulloch, "Variance
Components", 1992, ch. 4): y_si = μ + a_s + b_i + e_si, with between-seed variance σ_a², between-item variance σ_b²
(an item effect shared by all seeds, since every seed is tested on the same items) and residual σ_e². For a paired
comparison y is the per-item difference B - A; for one cell's score, its per-item values.

- The mean over S seeds and N items has variance  V(S, N) = σ_a²/S + σ_b²/N + σ_e²/(S N).
- One run's score (S = 1) splits into a seed part σ_a² and a test-item part (σ_b² + σ_e²)/N: ``run_variances``.
- Tests use Student's t with Welch–Satterthwaite df (``paired.py``), so the minimum detectable difference (MDD) is
  solved from the noncentral t power function at those df, not from the normal z_{1-α/2} + z_{power} (which it
  approaches with many seeds; with 3 seeds and a seed-dominated V it is 2.0 times larger: λ = 5.65 instead of 2.80).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import optimize, stats

from mtl_bench.results.paired import item_variances, satterthwaite_df


class VarianceComponents(NamedTuple):
    seed: float  # σ_a², between seeds
    item: float  # σ_b², between test items, shared by all seeds
    residual: float  # σ_e², seed x item interaction and noise
    items: int  # N, the test-split size they were measured at


class RunVariances(NamedTuple):
    seed: float  # σ_a²: variance of one run's score across seeds, test items fixed
    items: float  # (σ_b² + σ_e²)/N: its variance across test splits of N items, seed fixed


def variance_components(values: np.ndarray) -> VarianceComponents:
    """Method-of-moments (ANOVA) estimates from per-item values [S, N], equating mean squares to their expectations.

    MS_seed = N Σ_s (ȳ_s. - ȳ..)²/(S-1), E = σ_e² + N σ_a²;  MS_item = S Σ_i (ȳ_.i - ȳ..)²/(N-1), E = σ_e² + S σ_b²;
    MS_res = ΣΣ (y_si - ȳ_s. - ȳ_.i + ȳ..)²/((S-1)(N-1)), E = σ_e². Negative estimates are set to 0.
    """
    y = np.asarray(values, dtype=float)
    if y.ndim != 2 or min(y.shape) < 2:
        raise ValueError(f"variance components need per-item values [seeds >= 2, items >= 2], got shape {y.shape}")
    n_seeds, n_items = y.shape
    seed_means, item_means, grand = y.mean(axis=1), y.mean(axis=0), y.mean()
    ms_seed = n_items * float(((seed_means - grand) ** 2).sum()) / (n_seeds - 1)
    ms_item = n_seeds * float(((item_means - grand) ** 2).sum()) / (n_items - 1)
    residuals = y - seed_means[:, None] - item_means[None, :] + grand
    ms_res = float((residuals**2).sum()) / ((n_seeds - 1) * (n_items - 1))
    return VarianceComponents(
        max(0.0, (ms_seed - ms_res) / n_items), max(0.0, (ms_item - ms_res) / n_seeds), ms_res, n_items
    )


def components_from_bootstrap(observed: np.ndarray, replicates: np.ndarray, n_items: int) -> VarianceComponents:
    """The same components for a corpus metric (no per-item values), from per-seed scores and crossed replicates.

    ``observed`` [S] holds each seed's score on all items, ``replicates`` [R, S] each seed's score on replicate r's
    items (the same items for every seed, as ``paired.draws`` makes them). With ``item_variances``: σ_b²/N ≈ shared,
    σ_e²/N ≈ one_seed - shared, and the sample variance of ``observed`` estimates σ_a² + σ_e²/N (the shared item
    effect cancels), so σ_a² ≈ s² - σ_e²/N. Negative estimates are set to 0.
    """
    observed = np.asarray(observed, dtype=float)
    if observed.size < 2:
        raise ValueError(f"variance components need >= 2 seeds, got {observed.size}")
    one_seed, shared = item_variances(replicates, n_items)
    residual = max(0.0, one_seed - shared)
    seed = max(0.0, float(observed.var(ddof=1)) - residual)
    return VarianceComponents(seed, shared * n_items, residual * n_items, n_items)


def run_variances(c: VarianceComponents) -> RunVariances:
    """One run's score: seed variance σ_a² and test-item variance (σ_b² + σ_e²)/N at the measured split size."""
    return RunVariances(c.seed, (c.item + c.residual) / c.items)


def mean_variance(c: VarianceComponents, seeds: int, items: int | None = None) -> tuple[float, float]:
    """V(S, N) = σ_a²/S + σ_b²/N + σ_e²/(S N) and its Welch–Satterthwaite df.

    The df are the test's (``paired.satterthwaite_df``): its seed term (σ_a² + σ_e²/N)/S has S - 1 df, the shared
    item term σ_b²/N has N - 1.
    """
    n = c.items if items is None else items
    seed_term, item_term = (c.seed + c.residual / n) / seeds, c.item / n
    variance = seed_term + item_term
    if variance == 0.0:
        return 0.0, math.inf
    return variance, satterthwaite_df(seed_term, seeds - 1, item_term, n - 1)


def _power(noncentrality: float, df: float, alpha: float) -> float:
    """P(|T| > t_{1-α/2, df}) for T noncentral t with ``df`` and ``noncentrality`` (normal when df is huge)."""
    if df > 1e6:
        z = stats.norm.ppf(1 - alpha / 2)
        return float(stats.norm.sf(z - noncentrality) + stats.norm.cdf(-z - noncentrality))
    t = stats.t.ppf(1 - alpha / 2, df)
    value = float(stats.nct.sf(t, df, noncentrality) + stats.nct.cdf(-t, df, noncentrality))
    return 1.0 if math.isnan(value) else value  # scipy's nct gives nan far in the tail, where the power is 1


def minimum_detectable_difference(
    c: VarianceComponents, seeds: int, items: int | None = None, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest true difference a two-sided paired test at level ``alpha`` detects with probability ``power``.

    MDD = λ √V(S, N), λ solving P(|T_{df, λ}| > t_{1-α/2, df}) = power (noncentral t; df from ``mean_variance``).
    With many df, λ → z_{0.975} + z_{0.8} = 2.80. Needs seeds >= 2 (one seed has no seed-variance estimate).
    """
    if seeds < 2:
        raise ValueError(f"a paired test needs >= 2 seeds, got {seeds}")
    variance, df = mean_variance(c, seeds, items)
    if variance == 0.0:
        return 0.0
    lam = optimize.brentq(lambda x: _power(x, df, alpha) - power, 0.0, 60.0, xtol=1e-10)
    return float(lam * math.sqrt(variance))


def seeds_needed(
    c: VarianceComponents, difference: float, items: int | None = None, alpha: float = 0.05, power: float = 0.8,
    max_seeds: int = 1000,
) -> int | None:
    """The fewest seeds (>= 2) whose MDD is at most |difference|; None when even ``max_seeds`` are not enough.

    More seeds cannot push V below σ_b²/N (the items are the same for every seed): a difference under that floor
    needs a larger test split, not more seeds. MDD decreases with S, so this bisects.
    """
    target = abs(difference)
    if minimum_detectable_difference(c, max_seeds, items, alpha, power) > target:
        return None
    lo, hi = 2, max_seeds
    while lo < hi:
        mid = (lo + hi) // 2
        if minimum_detectable_difference(c, mid, items, alpha, power) <= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def split_size_for_half_seed_variance(c: VarianceComponents) -> int | None:
    """Smallest test split N whose item variance of one run, (σ_b² + σ_e²)/N, is at most half its seed variance σ_a².

    N = ceil(2 (σ_b² + σ_e²) / σ_a²), at least 1; None when σ_a² = 0 (no split size can reach half of nothing).
    """
    if c.seed == 0.0:
        return None if c.item + c.residual > 0.0 else 1
    return max(1, math.ceil(2.0 * (c.item + c.residual) / c.seed - 1e-12))
