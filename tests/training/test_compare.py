"""``mtl-bench compare``: grid parsing, the run plan, and a tiny grid end to end (tables, Δp, MLflow, rerun)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mtl_bench.commands.compare import parse_grid, plan
from mtl_bench.errors import UserError
from mtl_bench.results.io import read_results
from tests.conftest import run_cli


def test_parse_grid_maps_strategies_to_names_and_rejects_bad_items():
    assert parse_grid(["sharing=hard, soft", "model.dim=16,32"]) == {
        "sharing.name": ["hard", "soft"], "model.dim": ["16", "32"]
    }
    for bad in ["sharing", "sharing=", "=hard"]:
        with pytest.raises(UserError, match="expected KEY=V1,V2"):
            parse_grid([bad])
    with pytest.raises(UserError, match="given twice"):
        parse_grid(["fusion=early", "fusion=late"])


def test_plan_runs_single_task_first_and_validates_every_cell():
    runs = plan("ecommerce", parse_grid(["sharing=hard,single-task", "model.dim=16,32"]), 2, "smoke", [], None)
    assert [(c, r.seed) for c, r in runs][:4] == [
        ("single-task-16", 0), ("single-task-16", 1), ("single-task-32", 0), ("single-task-32", 1)
    ]
    assert {r.model.dim for _, r in runs} == {16, 32} and len(runs) == 8
    with pytest.raises(UserError, match="dimm"):
        plan("ecommerce", parse_grid(["model.dimm=16"]), 1, "smoke", [], None)


def relative_gain(method, base, higher=True):
    return (method - base) / base * (1 if higher else -1)


@pytest.fixture(scope="module")
def compared(tmp_path_factory, data_dir, tracking_uri):
    out = tmp_path_factory.mktemp("compare") / "grid"
    args = ["compare", "--suite", "ecommerce", "--profile", "smoke", "--grid", "sharing=hard,single-task",
            "--seeds", "2", "--output-dir", str(out), "--tracking-uri", tracking_uri,
            "--set", f"data.dir={data_dir}", "--set", "train.epochs=1", "--set", "train.limit_train_batches=2",
            "--set", "train.progress=false"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    return out, args, first


def test_compare_writes_table_plot_and_delta_by_hand(compared):
    out, _, first = compared
    assert "hard/early/ew" in first.stdout and "single-task/early/ew" in first.stdout
    frame = pd.read_csv(out / "compare.csv").set_index("cell")
    assert frame.loc["single-task/early/ew", "delta_p"] == 0.0 and frame.loc["hard/early/ew", "seeds"] == 2
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Δp" in (out / "compare.md").read_text()
    # Δp of hard sharing per seed, by hand from the two runs' test metrics (LibMTL: per task, then over tasks).
    per_seed = []
    for seed in (0, 1):
        hard = json.loads((out / "runs" / "hard" / f"seed{seed}" / "results.json").read_text())["tasks"]
        single = json.loads((out / "runs" / "single-task" / f"seed{seed}" / "results.json").read_text())["tasks"]
        task_means = []
        for name, task in hard.items():
            gains = [relative_gain(v, single[name]["metrics"][m]) for m, v in task["metrics"].items()
                     if single[name]["metrics"][m] != 0]  # all ecommerce metrics are higher-is-better
            if gains:
                task_means.append(sum(gains) / len(gains))
        per_seed.append(100 * sum(task_means) / len(task_means))
    assert frame.loc["hard/early/ew", "delta_p"] == pytest.approx(sum(per_seed) / 2, rel=1e-9)


def test_compare_logs_children_under_one_parent_and_a_rerun_reuses_every_run(compared, tracking_uri):
    from mlflow.tracking import MlflowClient

    out, args, _ = compared
    parent = json.loads((out / "compare_run.json").read_text())["run_id"]
    client = MlflowClient(tracking_uri)
    experiment = client.get_run(parent).info.experiment_id

    def children():
        return client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{parent}'")

    assert len(children()) == 4 and {r.info.status for r in children()} == {"FINISHED"}
    assert {a.path for a in client.list_artifacts(parent)} >= {"compare.csv", "compare.md", "compare.png"}
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done before, reused") == 4 and "running" not in again.stdout
    assert len(children()) == 4
    assert json.loads((out / "compare_run.json").read_text())["run_id"] == parent


def test_compare_rejects_a_bad_grid_before_running(tmp_path):
    result = run_cli("compare", "--suite", "ecommerce", "--grid", "sharing=hard,sofft", "--output-dir",
                     str(tmp_path / "x"))
    assert result.returncode == 2 and "sofft" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_a_grid_over_other_settings_names_rows_by_its_values(compared, tmp_path, monkeypatch, tracking_uri):
    """Cells that differ in a setting other than sharing/fusion/weighting (here the learning rate) get their own
    rows; the runs are stand-ins: the fixture's results for the same sharing and seed."""
    import mtl_bench.commands.compare as compare_module

    out, _, _ = compared

    def stand_in(cfg, path, *args, **kwargs):
        return read_results(out / "runs" / cfg.sharing.name / f"seed{cfg.seed}" / "results.json")

    monkeypatch.setattr(compare_module, "run", stand_in)
    frame, _ = compare_module.compare(
        "ecommerce", ["sharing=hard,single-task", "train.lr=0.001,0.002"], seeds=2, profile="smoke",
        output_dir=tmp_path / "lr", tracking_uri=tracking_uri, baselines_dir=tmp_path / "baselines",
    )
    assert sorted(frame["cell"]) == ["hard-0.001", "hard-0.002", "single-task-0.001", "single-task-0.002"]
    assert set(frame["seeds"]) == {2}
