"""``leaderboard show`` with paired verdicts: each entry against a baseline entry, scored from the submitted
predictions; the CSV numbers equal paired.py called directly, the other formats mark the verdicts."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from mtl_bench.results import paired
from mtl_bench.results.scores import delta_p
from tests.leaderboard.test_leaderboard import cli
from tests.training.test_compare import run_scorers_by_hand

TASKS = {"product-captioning": "cider", "product-classification": "accuracy", "product-search": "mean_recall",
         "video-tagging": "map"}


def test_show_pairs_every_entry_against_the_chosen_baseline(board, submissions, capsys):
    for name in ("single-task", "hard"):
        code, _, err = cli(capsys, "leaderboard", "submit", str(submissions[name]), "--leaderboard", "smoke")
        assert code == 0, err
    code, csv, err = cli(capsys, "leaderboard", "show", "smoke", "--format", "csv", "--baseline", "hard-early-ew",
                         "--replicates", "300")
    assert code == 0, err
    frame = pd.read_csv(io.StringIO(csv)).set_index("name")
    row = frame.loc["single-task-early-ew"]
    assert frame.loc["hard-early-ew", [c for c in frame.columns if c.startswith("paired ")]].isna().all()
    scorers = run_scorers_by_hand(submissions["hard"].parents[1], seeds=(0, 1, 2))
    cells = {"hard-early-ew": "hard", "single-task-early-ew": "single-task"}

    def score(cell, seed, task, items):
        return scorers[cells[cell]][seed][task].score(items)

    accuracy = paired.paired_bootstrap(
        paired.metric_difference(lambda c, s, i: score(c, s, "product-classification", i), "hard-early-ew",
                                 "single-task-early-ew", "product-classification"),
        [0, 1, 2], {"product-classification": 64}, 300, 0)
    key = "paired product-classification/accuracy"
    np.testing.assert_allclose([row[f"{key} {f}"] for f in ("difference", "low", "high", "p")],
                               [accuracy.difference, accuracy.low, accuracy.high, accuracy.p_value], rtol=1e-7)
    directions = {t: {m: True} for t, m in TASKS.items()}

    def minus_delta_p(s):  # single-task against hard: Δp(single-task) - Δp(hard), both vs single-task of the seed
        wrap = {c: {t: {TASKS[t]: v} for t, v in s[c].items()} for c in s}
        return -delta_p(wrap["hard-early-ew"], wrap["single-task-early-ew"], directions).value

    sizes = {t: scorers["hard"][0][t].n_items for t in TASKS}
    direct = paired.paired_bootstrap(paired.contrast(score, list(cells), list(TASKS), minus_delta_p), [0, 1, 2],
                                     sizes, 300, 0)
    np.testing.assert_allclose([row["paired delta_p difference"], row["paired delta_p p"]],
                               [direct.difference, direct.p_value], rtol=1e-7)
    p_values = [row[f"paired {t}/{m} p"] for t, m in TASKS.items()] + [row["paired delta_p p"]]
    np.testing.assert_allclose([row[f"paired {t}/{m} p_holm"] for t, m in TASKS.items()]
                               + [row["paired delta_p p_holm"]], paired.holm(p_values), rtol=1e-12)
    assert row[f"{key} verdict"] in ("better", "worse", "tie")


def test_show_marks_verdicts_in_md_html_and_table_and_rejects_an_unknown_baseline(board, submissions, capsys):
    for name in ("single-task", "hard"):
        assert cli(capsys, "leaderboard", "submit", str(submissions[name]), "--leaderboard", "smoke")[0] == 0
    code, md, err = cli(capsys, "leaderboard", "show", "smoke", "--format", "md", "--replicates", "100")
    assert code == 0, err
    assert "better / worse than single-task-early-ew / tie in a paired test" in md and "## Paired comparisons" in md
    hard_row = next(line for line in md.splitlines() if line.startswith("| ") and "hard-early-ew" in line)
    assert sum(hard_row.count(m) for m in ("▲", "▼", " =")) == len(TASKS) + 1  # every main score and Δp
    code, html, _ = cli(capsys, "leaderboard", "show", "smoke", "--format", "html", "--replicates", "100")
    assert code == 0 and "in a paired test" in html
    code, out, err = cli(capsys, "leaderboard", "show", "smoke", "--baseline", "nobody")
    assert code == 2 and "--baseline 'nobody'" in err and len(err.strip().splitlines()) == 1
