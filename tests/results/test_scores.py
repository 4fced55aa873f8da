"""Δp, Δm, mean rank and CIs against numbers computed by hand."""

from __future__ import annotations

import math

import pytest

from mtl_bench.results.scores import delta_m, delta_p, mean_ci95, mean_rank

T_975_DF1 = 12.706204736174707  # Student-t 0.975 quantile, 1 degree of freedom (n = 2 seeds)
T_975_DF2 = 4.302652729911275  # 2 degrees of freedom (n = 3 seeds)

DIRECTIONS = {"cls": {"acc": True, "f1": True}, "reg": {"loss": False}}
BASELINE = {"cls": {"acc": 0.75, "f1": 0.50}, "reg": {"loss": 1.0}}
METHOD = {"cls": {"acc": 0.80, "f1": 0.60}, "reg": {"loss": 0.9}}
# Relative improvements by hand: acc +0.05/0.75 = +6.667 %, f1 +0.10/0.50 = +20 %, loss (lower is better) +10 %.


def test_delta_p_means_metrics_per_task_then_tasks() -> None:
    expected = 100 * ((0.05 / 0.75 + 0.10 / 0.50) / 2 + 0.1 / 1.0) / 2  # (13.333 % + 10 %) / 2 = 11.667 %
    result = delta_p(METHOD, BASELINE, DIRECTIONS)
    assert result.value == pytest.approx(expected, rel=1e-12)
    assert result.value == pytest.approx(11.666666666666666)
    assert result.skipped == []


def test_delta_m_is_a_flat_mean_with_the_opposite_sign() -> None:
    expected = -100 * (0.05 / 0.75 + 0.10 / 0.50 + 0.1 / 1.0) / 3  # -(6.667 + 20 + 10) / 3 = -12.222 %
    assert delta_m(METHOD, BASELINE, DIRECTIONS).value == pytest.approx(expected, rel=1e-12)
    assert delta_m(METHOD, BASELINE, DIRECTIONS).value == pytest.approx(-12.222222222222221)


def test_one_metric_per_task_gives_delta_m_equal_to_minus_delta_p() -> None:
    directions = {"cls": {"acc": True}, "reg": {"loss": False}}
    method, baseline = {"cls": {"acc": 0.80}, "reg": {"loss": 0.9}}, {"cls": {"acc": 0.75}, "reg": {"loss": 1.0}}
    p, m = delta_p(method, baseline, directions).value, delta_m(method, baseline, directions).value
    assert p == pytest.approx(100 * (0.05 / 0.75 + 0.1) / 2)  # +8.333 %: better than the baseline
    assert m == pytest.approx(-p)


def test_a_worse_method_has_negative_delta_p_and_positive_delta_m() -> None:
    assert delta_p(BASELINE, METHOD, DIRECTIONS).value < 0
    assert delta_m(BASELINE, METHOD, DIRECTIONS).value > 0


def test_method_equal_to_baseline_gives_exactly_zero() -> None:
    for fn in (delta_p, delta_m):
        value = fn(BASELINE, BASELINE, DIRECTIONS).value
        assert value == 0.0
        assert math.copysign(1.0, value) == 1.0  # not -0.0


def test_zero_baseline_metrics_are_skipped_and_listed() -> None:
    baseline = {"cls": {"acc": 0.75, "f1": 0.0}, "reg": {"loss": 1.0}}
    p = delta_p(METHOD, baseline, DIRECTIONS)
    assert p.skipped == ["cls/f1"]
    assert p.value == pytest.approx(100 * (0.05 / 0.75 + 0.1) / 2)
    assert delta_m(METHOD, baseline, DIRECTIONS).value == pytest.approx(-100 * (0.05 / 0.75 + 0.1) / 2)
    nothing = delta_p({"reg": {"loss": 0.5}}, {"reg": {"loss": 0.0}}, DIRECTIONS)
    assert math.isnan(nothing.value) and nothing.skipped == ["reg/loss"]


@pytest.mark.parametrize("fn", [delta_p, delta_m])
def test_missing_metrics_tasks_and_directions_are_errors(fn) -> None:
    with pytest.raises(ValueError, match=r"'cls'.*'f1'.*method"):
        fn({"cls": {"acc": 0.8}, "reg": {"loss": 0.9}}, BASELINE, DIRECTIONS)
    with pytest.raises(ValueError, match=r"'cls'.*'f1'.*baseline"):
        fn(METHOD, {"cls": {"acc": 0.75}, "reg": {"loss": 1.0}}, DIRECTIONS)
    with pytest.raises(ValueError, match=r"'reg'.*baseline"):
        fn(METHOD, {"cls": BASELINE["cls"]}, DIRECTIONS)
    with pytest.raises(ValueError, match=r"'reg'.*'loss'.*direction"):
        fn(METHOD, BASELINE, {"cls": DIRECTIONS["cls"]})


def test_mean_rank_with_ties_and_a_lower_is_better_task() -> None:
    scores_ = {"a": {"x": 0.9, "y": 3.0}, "b": {"x": 0.8, "y": 1.0}, "c": {"x": 0.8, "y": 2.0}}
    # x (higher is better): a 1, b and c tie for 2-3 -> 2.5 each; y (lower is better): b 1, c 2, a 3.
    ranks = mean_rank(scores_, {"x": True, "y": False})
    assert ranks == {"a": (1 + 3) / 2, "b": (2.5 + 1) / 2, "c": (2.5 + 2) / 2}


def test_mean_rank_nan_scores_and_missing_tasks() -> None:
    ranks = mean_rank({"a": {"x": 0.9, "y": math.nan}, "b": {"x": 0.8, "y": 1.0}}, {"x": True, "y": True})
    assert ranks == {"a": 1.0, "b": (2 + 1) / 2}  # a has no rank on y
    with pytest.raises(ValueError, match=r"'b'.*'y'"):
        mean_rank({"a": {"x": 0.9, "y": 1.0}, "b": {"x": 0.8}}, {"x": True, "y": True})


def test_mean_ci95_student_t() -> None:
    mean, half = mean_ci95([0.5, 0.7, 0.9])  # sample std 0.2
    assert mean == pytest.approx(0.7)
    assert half == pytest.approx(T_975_DF2 * 0.2 / math.sqrt(3), rel=1e-9)  # std of 0.5, 0.7, 0.9 rounds
    mean, half = mean_ci95([1.0, 3.0])  # sample std sqrt(2): half = t * sqrt(2) / sqrt(2)
    assert (mean, half) == (2.0, pytest.approx(T_975_DF1, rel=1e-12))


def test_mean_ci95_edge_cases() -> None:
    mean, half = mean_ci95([0.42])
    assert mean == 0.42 and math.isnan(half)
    assert math.isnan(mean_ci95([1.0, math.nan]).mean)
    with pytest.raises(ValueError):
        mean_ci95([])
