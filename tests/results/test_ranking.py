"""results/ranking.py: the Pareto front and hypervolumes of a compare table against hand-computed values, the
mean-rank interval as fronts.mean_rank_ci over the common seeds, and the front's PNG."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mtl_bench.results import fronts, ranking

MAINS = {"a": ("acc", True), "b": ("err", False)}


def frame():
    # relative to st: x is +10 % on a and -5 % on b (error 0.42 vs 0.40); y is -20 % and -30 %
    return pd.DataFrame({"cell": ["x", "st", "y"], "a/acc": [0.55, 0.50, 0.40], "b/err": [0.42, 0.40, 0.52]})


def per_seed():
    scores = {"x": [(0.5, 0.4), (0.6, 0.44)], "st": [(0.5, 0.38), (0.5, 0.42)], "y": [(0.4, 0.5), (0.4, 0.54)]}
    return {c: {s: {"a": v[0], "b": v[1]} for s, v in enumerate(runs)} for c, runs in scores.items()}


def test_front_and_hypervolumes_by_hand():
    out = ranking.add_rank_and_front(frame(), per_seed(), MAINS, "st").set_index("cell")
    assert out["on_front"].to_dict() == {"x": True, "st": True, "y": False}
    # boxes from (-100, -100): st 100 x 100, x 110 x 95, y 80 x 70; union of st and x = 10000 + 10450 - 100 x 95
    assert out.loc["st", "hypervolume"] == pytest.approx(1.0)
    assert out.loc["x", "hypervolume"] == pytest.approx(110 * 95 / 1e4)
    assert out.loc["y", "hypervolume"] == pytest.approx(80 * 70 / 1e4)
    front = out.attrs["front"]
    assert front["hypervolume"] == pytest.approx((10000 + 10450 - 9500) / 1e4) and front["single"] == "st"
    assert front["improvements"]["x"] == pytest.approx({"a": 10.0, "b": -5.0})
    line = ranking.front_markdown(out.reset_index())[0]
    assert "x, st" in line and "1.0950" in line and "-100 %" in line


def test_rank_interval_is_mean_rank_ci_over_the_common_seeds():
    out = ranking.add_rank_and_front(frame(), per_seed(), MAINS, "st").set_index("cell")
    scores = {c: {t: [per_seed()[c][s][t] for s in (0, 1)] for t in MAINS} for c in per_seed()}
    expected = fronts.mean_rank_ci(scores, {"a": True, "b": False})
    for cell, ci in expected.items():
        assert (out.loc[cell, ranking.RANK_LOW], out.loc[cell, ranking.RANK_HIGH]) == (ci.low, ci.high)


def test_no_single_task_no_front_and_one_seed_no_rank_interval():
    one = {c: {0: runs[0]} for c, runs in per_seed().items()}
    out = ranking.add_rank_and_front(frame(), one, MAINS, None)
    assert "on_front" not in out.columns and out[ranking.RANK_LOW].isna().all()
    assert "no Pareto front" in ranking.front_markdown(out)[0] and ranking.front_png(out) is None


@pytest.mark.parametrize("tasks", [2, 3])
def test_front_png_draws_a_scatter_or_parallel_coordinates(tasks):
    table, mains, seeds = frame(), dict(MAINS), per_seed()
    if tasks == 3:
        table["c/acc"], mains["c"] = [0.3, 0.2, 0.25], ("acc", True)
        for cell, value in zip(table["cell"], table["c/acc"], strict=True):
            for s in seeds[cell].values():
                s["c"] = value
    out = ranking.add_rank_and_front(table, seeds, mains, "st")
    png = ranking.front_png(out)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and not math.isnan(out.attrs["front"]["hypervolume"])
