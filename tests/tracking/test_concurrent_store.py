"""Runs started together on a new sqlite store (two at a time on a 2-core machine) must not fail opening it.

Without the lock in ``tracking/tracker.py`` every one of three tries here failed: each process created and migrated
the tables at once (alembic "expected to match one row", "table tags already exists").
"""

from __future__ import annotations

import multiprocessing as mp


def _open(uri: str, barrier, results) -> None:
    from mtl_bench.tracking.tracker import Tracker

    barrier.wait()
    try:
        results.put(Tracker(uri, "mtl-bench/race", run_name="r").run_id)
    except Exception as exc:  # reported, so the assertion shows the error
        results.put(f"{type(exc).__name__}: {exc}"[:200])


def test_three_runs_open_a_new_sqlite_store_at_once(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ENABLE_TELEMETRY", "false")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    import mtl_bench.tracking.tracker  # noqa: F401  (imported once here: the forked processes share it)

    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    processes = [ctx.Process(target=_open, args=(uri, barrier, results)) for _ in range(3)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=120)
    run_ids = [results.get(timeout=5) for _ in processes]
    assert all(len(r) == 32 for r in run_ids), run_ids
    experiment = MlflowClient(uri).get_experiment_by_name("mtl-bench/race")
    found = MlflowClient(uri).search_runs([experiment.experiment_id])
    assert sorted(r.info.run_id for r in found) == sorted(run_ids)
