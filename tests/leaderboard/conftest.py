"""Two real submissions (single-task and hard sharing, 3 seeds each, smoke size) made by ``compare --submit``, and
a throwaway leaderboard folder per test that ranks the smoke data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

BOARD = """\
name: smoke
description: A test leaderboard on the smoke-sized shop.
suite: ecommerce
suite_version: 2
data_fingerprint: {fingerprint}
tasks:
  product-classification: accuracy
  product-captioning: cider
  product-search: mean_recall
  video-tagging: map
rank_by: delta_p
baseline: single-task-early-ew
min_seeds: 3
cost_columns: [params, step_ms]
"""


@pytest.fixture(scope="session")
def submissions(tmp_path_factory, data_dir, tracking_uri) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("leaderboard") / "compare"
    done = run_cli(
        "compare", "--suite", "ecommerce", "--profile", "smoke", "--grid", "sharing=single-task,hard", "--seeds", "3",
        "--output-dir", str(out), "--tracking-uri", tracking_uri, "--submit", "--set", f"data.dir={data_dir}",
        "--set", "train.epochs=1", "--set", "train.limit_train_batches=2", "--set", "train.progress=false",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {cell: out / "submissions" / f"{cell}.json" for cell in ("single-task", "hard")}


@pytest.fixture()
def board(tmp_path, submissions, data_dir, monkeypatch) -> Path:
    """An empty leaderboards folder holding smoke.yaml; MTL_BENCH_LEADERBOARDS points at it (subprocesses too)."""
    fingerprint = json.loads(submissions["hard"].read_text())["data_fingerprint"]
    root = tmp_path / "leaderboards"
    root.mkdir()
    (root / "smoke.yaml").write_text(BOARD.format(fingerprint=fingerprint))
    monkeypatch.setenv("MTL_BENCH_LEADERBOARDS", str(root))
    monkeypatch.setenv("MTL_BENCH_DATA", str(data_dir))  # the verifier's own data cache
    return root
