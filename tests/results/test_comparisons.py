"""results/comparisons.py wires item scorers into results/paired.py and results/power.py: its numbers must equal
those functions called directly on the same scores with the same seed (the statistics are tested in test_paired.py
and test_power.py); Holm runs over exactly the rows shown; one seed gives no test and says so."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtl_bench.results import comparisons, paired, power
from mtl_bench.results.scores import delta_p


class MeanScorer:
    """A mean metric (accuracy-like): per-item values."""

    def __init__(self, values):
        self.per_item = np.asarray(values, dtype=float)
        self.n_items = len(values)

    def score(self, indices):
        return float(self.per_item[np.asarray(indices)].mean())


class RatioScorer:
    """A corpus metric: a ratio of sums over the items (not a mean of per-item values)."""

    per_item = None

    def __init__(self, hits, weights):
        self.hits, self.weights, self.n_items = np.asarray(hits, float), np.asarray(weights, float), len(hits)

    def score(self, indices):
        idx = np.asarray(indices)
        return float(self.hits[idx].sum() / self.weights[idx].sum())


MAINS = {"cap": ("cider", True), "cls": ("accuracy", True), "err": ("error", False)}
N_CLS, N_CAP, N_ERR = 30, 20, 25


def make_scorers(seeds=3, shifts=(("st", 0.0), ("a", 0.08), ("b", -0.03)), rng_seed=1):
    rng = np.random.default_rng(rng_seed)
    out = {}
    for cell, shift in shifts:
        out[cell] = {}
        for s in range(seeds):
            weights = rng.random(N_CAP) + 0.5
            out[cell][s] = {
                "cls": MeanScorer((rng.random(N_CLS) < 0.6 + shift).astype(float)),
                "cap": RatioScorer(weights * (0.4 + shift + 0.1 * rng.random(N_CAP)), weights),
                "err": MeanScorer(rng.random(N_ERR) * (1.0 - shift)),
            }
    return out


def score_of(scorers):
    return lambda cell, seed, task, items: scorers[cell][seed][task].score(items)


def test_task_comparisons_equal_paired_py_called_directly():
    scorers = make_scorers()
    found = comparisons.compare_pairs(scorers, MAINS, [("st", "a")], replicates=None, seed=7)
    by = {c.quantity: c for c in found}
    assert set(by) == {"cap/cider", "cls/accuracy", "err/error"}
    # a mean metric takes the fast path with FAST_REPLICATES
    a = np.stack([scorers["st"][s]["cls"].per_item for s in range(3)])
    b = np.stack([scorers["a"][s]["cls"].per_item for s in range(3)])
    assert by["cls/accuracy"].result == paired.paired_bootstrap_means(a, b, comparisons.FAST_REPLICATES, 7)
    assert by["cls/accuracy"].components == power.variance_components(b - a)
    # a corpus metric: the callable path with CORPUS_REPLICATES, the same numbers
    score = score_of(scorers)
    direct = paired.paired_bootstrap(paired.metric_difference(lambda c, s, i: score(c, s, "cap", i), "st", "a", "cap"),
                                     [0, 1, 2], {"cap": N_CAP}, comparisons.CORPUS_REPLICATES, 7)
    got = by["cap/cider"].result
    assert got[8:] == direct[8:] == (3, N_CAP, comparisons.CORPUS_REPLICATES, 7)  # seeds, items, replicates, seed
    np.testing.assert_allclose(got[:8], direct[:8], rtol=1e-12)
    assert by["err/error"].higher_is_better is False and by["cls/accuracy"].higher_is_better is True


def test_delta_p_comparison_equals_paired_contrast_of_scores_delta_p():
    """Δp(B) - Δp(A) against single-task per seed, as paired.contrast with scores.delta_p on main scores."""
    scorers = make_scorers()
    found = comparisons.compare_pairs(scorers, MAINS, [("a", "b")], single="st", seed=3)
    got = next(c for c in found if c.quantity == comparisons.DELTA_P)
    directions = {t: {m: h} for t, (m, h) in MAINS.items()}

    def wrap(scores):
        return {t: {MAINS[t][0]: v} for t, v in scores.items()}

    def quantity(s):
        return (delta_p(wrap(s["b"]), wrap(s["st"]), directions).value
                - delta_p(wrap(s["a"]), wrap(s["st"]), directions).value)

    per_seed = paired.contrast(score_of(scorers), ["a", "b", "st"], list(MAINS), quantity)
    direct = paired.paired_bootstrap(per_seed, [0, 1, 2], {"cap": N_CAP, "cls": N_CLS, "err": N_ERR},
                                     comparisons.CORPUS_REPLICATES, 3)
    np.testing.assert_allclose(got.result[:8], direct[:8], rtol=1e-9)
    assert got.result[8:] == direct[8:] and got.higher_is_better


def test_delta_p_main_skips_a_zero_baseline_task_like_scores_delta_p():
    single = {"cls": np.array([0.5, 0.0]), "err": np.array([0.2, 0.4]), "cap": np.array([1.0, 2.0])}
    cell = {"cls": np.array([0.6, 0.1]), "err": np.array([0.1, 0.5]), "cap": np.array([1.5, 2.0])}
    got = comparisons.delta_p_main(cell, single, MAINS)
    # seed 0: (+20 % + 50 % + 50 %)/3; seed 1: cls skipped (baseline 0), err -25 %, cap 0 %
    np.testing.assert_allclose(got, [100 * (0.2 + 0.5 + 0.5) / 3, 100 * (-0.25 + 0.0) / 2])


def test_holm_runs_over_exactly_the_rows_shown_and_gives_the_verdicts():
    scorers = make_scorers(shifts=(("st", 0.0), ("a", 0.25), ("b", 0.0)))
    found = comparisons.compare_pairs(scorers, MAINS, [("st", "a"), ("st", "b")], single="st", seed=0)
    frame = comparisons.paired_frame(found)
    assert len(frame) == 8  # 2 pairs x (3 tasks + Δp)
    np.testing.assert_allclose(frame["p_holm"], paired.holm(frame["p"].tolist()))
    for _, row in frame.iterrows():
        assert row["verdict"] == paired.verdict(row["difference"], row["p_holm"], row["higher_is_better"])
    planted = frame[(frame["cell"] == "a") & (frame["quantity"] == "cap/cider")].iloc[0]
    assert planted["verdict"] == "better" and planted["difference"] > 0.2
    assert frame[frame["cell"] == "b"]["verdict"].eq("tie").all()
    assert list(frame.columns)[:9] == ["cell", "baseline", "quantity", "difference", "low", "high", "p", "p_holm",
                                       "verdict"]
    marks = comparisons.verdict_marks(frame, "st")
    assert marks["a"]["cap/cider"] == "▲" and marks["b"]["cls/accuracy"] == "="


def test_one_seed_gives_no_interval_no_p_a_tie_and_says_so():
    scorers = make_scorers(seeds=1)
    found = comparisons.compare_pairs(scorers, MAINS, [("st", "a")], single="st")
    frame = comparisons.paired_frame(found)
    assert frame["p"].isna().all() and frame["low"].isna().all() and frame["p_holm"].isna().all()
    assert frame["verdict"].eq("tie").all() and frame["seeds"].eq(1).all()
    assert all(c.components is None for c in found) and comparisons.power_lines(found) == []
    text = "\n".join(comparisons.paired_markdown(frame))
    assert "1 seed: untested" in text and "needs at least 2 seeds" in text


def test_power_lines_are_power_py_on_the_averaged_components():
    scorers = make_scorers(seeds=4)
    found = comparisons.compare_pairs(scorers, MAINS, [("st", "a"), ("st", "b")], seed=1)
    lines = {p.quantity: p for p in comparisons.power_lines(found, {"cls": 0.05})}
    cls = [c.components for c in found if c.quantity == "cls/accuracy"]
    mean = power.VarianceComponents(*(float(np.mean([getattr(c, f) for c in cls])) for f in ("seed", "item",
                                                                                              "residual")), N_CLS)
    line = lines["cls/accuracy"]
    assert line.seed_variance == pytest.approx(mean.seed) and line.items == N_CLS and line.seeds == 4
    assert line.item_variance == pytest.approx((mean.item + mean.residual) / N_CLS)
    assert line.mdd == pytest.approx(power.minimum_detectable_difference(mean, 4))
    needed = power.seeds_needed(mean, 0.05)
    assert line.seeds_needed == (math.inf if needed is None else needed)
    split = power.split_size_for_half_seed_variance(mean)
    assert line.split_size == split or (split is None and math.isnan(line.split_size))
    assert math.isnan(lines["cap/cider"].detect)  # --detect named cls only
    text = "\n".join(comparisons.power_markdown(list(lines.values())))
    assert text.count("minimum detectable difference") == 3 and "0.05 " in text


def test_pairs_detect_and_statistics_defaults():
    assert comparisons.pairs_of(["x", "y", "z"], "y", "baseline") == [("y", "x"), ("y", "z")]
    assert comparisons.pairs_of(["x", "y", "z"], None, "all") == [("x", "y"), ("x", "z"), ("y", "z")]
    assert comparisons.pairs_of(["x", "y"], None, "baseline") == []
    assert comparisons.detect_for({"*": 0.01, "b": 0.02, "delta_p": 1.0}, ["a", "b"]) == {"a": 0.01, "b": 0.02,
                                                                                        "delta_p": 1.0}
    assert comparisons.detect_for({"b": 0.02}, ["a", "b"]) == {"b": 0.02}


def test_replicate_scores_use_scores_when_a_scorer_has_it():
    class Vectorised(RatioScorer):
        def scores(self, matrix):
            return np.array([self.score(row) for row in matrix]) + 0.0

    rng = np.random.default_rng(0)
    s = Vectorised(rng.random(10), rng.random(10) + 1)
    idx = rng.integers(0, 10, (5, 10))
    np.testing.assert_allclose(comparisons.replicate_scores(s, idx), [s.score(r) for r in idx])
    m = MeanScorer(rng.random(10))
    np.testing.assert_allclose(comparisons.replicate_scores(m, idx), [m.per_item[r].mean() for r in idx])
