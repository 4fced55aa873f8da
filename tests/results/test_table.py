"""The compare table from synthetic results: 2 cells x 2 seeds, one lower-is-better main score."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mtl_bench.results.schema import Delta, Results
from mtl_bench.results.table import cell_label, compare_frame, compare_markdown, write_compare
from tests.results.make import make_results as results_of
from tests.results.make import task_result

T_975_DF1 = 12.706204736174707  # Student-t 0.975 quantile for n = 2 seeds
DIRECTIONS = {"cls": {"accuracy": True, "macro_f1": True}, "tags": {"hamming": False}}
BASELINES = {
    0: {"cls": {"accuracy": 0.75, "macro_f1": 0.55}, "tags": {"hamming": 0.10}},
    1: {"cls": {"accuracy": 0.78, "macro_f1": 0.60}, "tags": {"hamming": 0.10}},
}
OPTIONS = {"ew": None, "dwa": {"temperature": 2.0}}  # weighting -> options
# (weighting, seed) -> (accuracy, macro_f1, hamming)
SCORES = {
    ("ew", 0): (0.80, 0.60, 0.10),
    ("ew", 1): (0.82, 0.62, 0.12),
    ("dwa", 0): (0.70, 0.50, 0.08),
    ("dwa", 1): (0.74, 0.52, 0.06),
}
EW, DWA = "hard/early/ew", 'hard/early/dwa weighting={"temperature":2.0}'


def make_results(
    weighting: str, options: dict | None, seed: int, scores: tuple[float, float, float], **cost: Any
) -> Results:
    """A run's results in a toy suite of two tasks; ``cost`` overrides cost fields."""
    accuracy, macro_f1, hamming = scores
    strategy = {"sharing": ("hard", {}), "fusion": ("early", {}), "weighting": (weighting, options or {})}
    tasks = {
        "cls": task_result("accuracy", {"accuracy": accuracy, "macro_f1": macro_f1}),
        "tags": task_result("hamming", {"hamming": hamming}, type="multilabel", higher_is_better=False),
    }
    cost = {"params": 1000, "trainable_params": 900, "train_seconds": 10.0 + seed, "peak_memory_mb": 50.0} | cost
    return results_of(suite="toy", seed=seed, tasks=tasks, cost=cost,
                      config={axis: {"name": name, "options": opts} for axis, (name, opts) in strategy.items()})


def all_results() -> list[Results]:
    return [make_results(w, OPTIONS[w], s, scores) for (w, s), scores in SCORES.items()]


def hand_delta_p(scores: tuple[float, float, float], base: dict) -> float:
    """Δp by hand: cls = mean of two relative gains, tags = relative drop of the (lower-is-better) hamming loss."""
    acc, f1, ham = scores
    cls = ((acc - base["cls"]["accuracy"]) / base["cls"]["accuracy"]
           + (f1 - base["cls"]["macro_f1"]) / base["cls"]["macro_f1"]) / 2
    tags = (base["tags"]["hamming"] - ham) / base["tags"]["hamming"]
    return 100 * (cls + tags) / 2


def hand_delta_m(scores: tuple[float, float, float], base: dict) -> float:
    acc, f1, ham = scores
    gains = [(acc - base["cls"]["accuracy"]) / base["cls"]["accuracy"],
             (f1 - base["cls"]["macro_f1"]) / base["cls"]["macro_f1"],
             (base["tags"]["hamming"] - ham) / base["tags"]["hamming"]]
    return -100 * sum(gains) / 3


def test_cell_label() -> None:
    assert cell_label(make_results("ew", None, 0, SCORES["ew", 0])) == EW
    assert cell_label(make_results("dwa", {"temperature": 2.0}, 0, (0, 0, 0))) == DWA


def test_compare_frame_two_cells_two_seeds() -> None:
    frame = compare_frame(all_results(), BASELINES, DIRECTIONS)
    assert list(frame["cell"]) == [DWA, EW]  # dwa has the higher Δp (computed below), so it comes first
    assert list(frame.columns[:5]) == ["cell", "sharing", "fusion", "weighting", "seeds"]
    assert list(frame["weighting"]) == ["dwa", "ew"] and list(frame["seeds"]) == [2, 2]
    ew = frame.set_index("cell").loc[EW]
    assert ew["cls/accuracy"] == pytest.approx(0.81)
    assert ew["cls/accuracy ci95"] == pytest.approx(T_975_DF1 * 0.02 / 2)  # n = 2: t * |x1 - x2| / 2
    assert ew["tags/hamming"] == pytest.approx(0.11)
    for cell, weighting in [(EW, "ew"), (DWA, "dwa")]:
        row = frame.set_index("cell").loc[cell]
        p = [hand_delta_p(SCORES[weighting, s], BASELINES[s]) for s in (0, 1)]
        m = [hand_delta_m(SCORES[weighting, s], BASELINES[s]) for s in (0, 1)]
        assert row["delta_p"] == pytest.approx(np.mean(p))
        assert row["delta_p ci95"] == pytest.approx(T_975_DF1 * abs(p[0] - p[1]) / 2)
        assert row["delta_m"] == pytest.approx(np.mean(m))
        assert row["delta_m ci95"] == pytest.approx(T_975_DF1 * abs(m[0] - m[1]) / 2)
    # accuracy: ew 0.81 beats dwa 0.72; hamming (lower is better): dwa 0.07 beats ew 0.11 -> 1.5 each
    assert list(frame["mean_rank"]) == [1.5, 1.5]
    assert ew["params"] == 1000 and ew["train_seconds"] == pytest.approx(10.5)
    assert frame.attrs["missing_baseline_seeds"] == [] and frame.attrs["skipped_metrics"] == []
    assert frame.attrs["higher_is_better"]["tags/hamming"] is False


def test_cost_columns_are_means_over_seeds_and_flops_sum_over_tasks() -> None:
    results = all_results()
    for r in results[:2]:  # the ew cell's two seeds
        r.cost.flops_per_sample = {"cls": 100, "tags": 50 + r.seed}
        r.cost.step_ms = 2.0 + r.seed
    frame = compare_frame(results).set_index("cell")
    assert frame.loc[EW, "flops_per_sample"] == 150.5 and frame.loc[EW, "step_ms"] == pytest.approx(2.5)
    assert frame.loc[EW, "backward_passes"] == 1 and frame.loc[DWA, "step_ms"] == 1.0
    assert frame.loc[DWA, "flops_per_sample"] == 200  # the default: 100 per task
    assert "samples_per_second" not in frame.columns


def test_seed_without_baseline_gives_nan_and_is_reported() -> None:
    results = all_results() + [make_results("uw", None, 0, (0.9, 0.7, 0.05))]
    frame = compare_frame(results, {0: BASELINES[0]}, DIRECTIONS)
    assert frame.attrs["missing_baseline_seeds"] == [1]
    by_cell = frame.set_index("cell")
    assert math.isnan(by_cell.loc[EW, "delta_p"]) and math.isnan(by_cell.loc[DWA, "delta_m"])
    uw = by_cell.loc["hard/early/uw"]
    assert uw["delta_p"] == pytest.approx(hand_delta_p((0.9, 0.7, 0.05), BASELINES[0]))
    assert math.isnan(uw["delta_p ci95"])  # one seed
    assert frame["cell"].iloc[0] == "hard/early/uw"  # the only Δp sorts first, NaN last
    assert "No single-task baseline for seed(s) 1" in compare_markdown(frame)


def test_without_baselines_stored_deltas_are_used_and_rank_sorts() -> None:
    results = all_results()
    frame = compare_frame(results, None)
    assert frame["delta_p"].isna().all() and frame.attrs["missing_baseline_seeds"] == [0, 1]
    assert list(frame["mean_rank"]) == [1.5, 1.5] and list(frame["cell"]) == sorted([EW, DWA])
    for r, value in zip(results, [1.0, 3.0, -1.0, -1.0], strict=True):
        r.delta = Delta(delta_p=value, delta_m=-value, baseline="x")
    frame = compare_frame(results).set_index("cell")
    assert frame.loc[EW, "delta_p"] == 2.0 and frame.loc[DWA, "delta_m"] == 1.0


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="seed 0 twice"):
        compare_frame(all_results() + [make_results("ew", None, 0, (0.8, 0.6, 0.1))], None)
    other = make_results("ew", None, 5, (0.8, 0.6, 0.1)).model_copy(update={"suite": "other"})
    with pytest.raises(ValueError, match="other, toy"):
        compare_frame(all_results() + [other], None)
    with pytest.raises(ValueError, match=r"seed 1: .*'cls'.*'macro_f1'.*baseline"):
        compare_frame(all_results(), {0: BASELINES[0], 1: {"cls": {"accuracy": 0.7}, "tags": {"hamming": 0.1}}},
                      DIRECTIONS)


def test_write_compare(tmp_path: Path) -> None:
    frame = compare_frame(all_results(), BASELINES, DIRECTIONS)
    paths = write_compare(frame, tmp_path / "out")
    assert [p.name for p in paths] == ["compare.csv", "compare.md", "compare.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["compare.csv", "compare.md", "compare.png"]
    back = pd.read_csv(paths[0])
    np.testing.assert_array_equal(back["delta_p"].to_numpy(), frame["delta_p"].to_numpy())  # full precision
    md = paths[1].read_text()
    assert EW in md and DWA in md and "Δp" in md and "Nash-MTL" in md and "Student-t" in md
    assert "0.8100 ± 0.1271" in md  # ew accuracy, 4 decimals
    assert "| cls/accuracy ↑ | tags/hamming ↓ |" in md
    assert paths[2].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_one_seed_shows_in_markdown(tmp_path: Path) -> None:
    frame = compare_frame(all_results()[:1], BASELINES, DIRECTIONS)
    md = compare_markdown(frame)
    assert "0.8000 (1 seed)" in md and "nan" not in md
    assert write_compare(frame, tmp_path)[2].read_bytes()[:4] == b"\x89PNG"
