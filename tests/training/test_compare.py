"""``mtl-bench compare``: grid parsing, the run plan, and a tiny grid end to end (tables, Δp, MLflow, rerun)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from mtl_bench.commands.compare import parse_grid, plan
from mtl_bench.errors import UserError
from mtl_bench.results import paired as paired_stats
from mtl_bench.results.comparisons import CORPUS_REPLICATES, FAST_REPLICATES, Statistics
from mtl_bench.results.io import read_results
from mtl_bench.results.scores import delta_p
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
        shutil.copytree(out / "runs" / cfg.sharing.name / f"seed{cfg.seed}", path, dirs_exist_ok=True)  # predictions
        return read_results(path / "results.json")

    monkeypatch.setattr(compare_module, "run", stand_in)
    frame, _ = compare_module.compare(
        "ecommerce", ["sharing=hard,single-task", "train.lr=0.001,0.002"], seeds=2, profile="smoke",
        output_dir=tmp_path / "lr", tracking_uri=tracking_uri, baselines_dir=tmp_path / "baselines",
    )
    assert sorted(frame["cell"]) == ["hard-0.001", "hard-0.002", "single-task-0.001", "single-task-0.002"]
    assert set(frame["seeds"]) == {2}
    # two single-task cells: no default baseline, and the table says how to choose one
    assert frame.attrs["paired"] == [] and "--baseline CELL" in frame.attrs["paired_note"]
    again, _ = compare_module.compare(
        "ecommerce", ["sharing=hard,single-task", "train.lr=0.001,0.002"], seeds=2, profile="smoke",
        output_dir=tmp_path / "lr", tracking_uri=tracking_uri, baselines_dir=tmp_path / "baselines",
        statistics=Statistics(baseline="single-task-0.002"),
    )
    paired = pd.DataFrame(again.attrs["paired"])
    assert set(paired["baseline"]) == {"single-task-0.002"} and len(paired) == 3 * 5  # 3 cells x (4 tasks + Δp)


def run_scorers_by_hand(out, cells=("single-task", "hard"), seeds=(0, 1)):
    """{cell: {seed: {task: item scorer}}} straight from each run's predictions.json and freshly prepared test
    labels (data/prepare.py and the task types, not evaluation/rescore.py)."""
    from mtl_bench.config.schema import RunConfig
    from mtl_bench.data.prepare import prepare_suite
    from mtl_bench.tasks.catalog import suite_tasks

    cfg = RunConfig.model_validate(json.loads((out / "runs" / cells[0] / "seed0" / "config.json").read_text()))
    prepared = prepare_suite(suite_tasks("ecommerce"), cfg.data, cfg.model.text_encoder)
    scorers = {}
    for cell in cells:
        for seed in seeds:
            rows = json.loads((out / "runs" / cell / f"seed{seed}" / "predictions.json").read_text())
            scorers.setdefault(cell, {})[seed] = {
                t: prepared.tasks[t].item_scorer(prepared.tasks[t].predictions_from_json(r), prepared.splits[t]["test"])
                for t, r in rows.items()}
    return scorers


def test_paired_csv_equals_paired_py_on_the_runs_predictions_and_compare_md_shows_verdicts_and_power(compared):
    """The wiring: every paired.csv row equals paired.py called directly (seed 0, the row's replicates) on the
    scores recomputed here from predictions.json; Holm over exactly these rows."""
    out, _, first = compared
    rows = pd.read_csv(out / "paired.csv")
    tasks = sorted(json.loads((out / "runs" / "hard" / "seed0" / "results.json").read_text())["tasks"])
    mains = {t: json.loads((out / "runs" / "hard" / "seed0" / "results.json").read_text())["tasks"][t]["main_score"]
             for t in tasks}
    assert list(rows["quantity"]) == [f"{t}/{mains[t]}" for t in tasks] + ["delta_p"]
    assert set(rows["cell"]) == {"hard/early/ew"} and set(rows["baseline"]) == {"single-task/early/ew"}
    np.testing.assert_allclose(rows["p_holm"], paired_stats.holm(rows["p"].tolist()), rtol=1e-12)
    scorers = run_scorers_by_hand(out)
    named = {"single-task/early/ew": "single-task", "hard/early/ew": "hard"}

    def score(cell, seed, task, items):
        return scorers[named.get(cell, cell)][seed][task].score(items)

    sizes = {t: scorers["hard"][0][t].n_items for t in tasks}
    directions = {t: {mains[t]: True} for t in tasks}  # every ecommerce main score is higher-is-better
    for _, row in rows.iterrows():
        task = row["quantity"].split("/")[0]
        if row["quantity"] == "delta_p":
            def quantity(s):
                wrap = {c: {t: {mains[t]: v} for t, v in s[c].items()} for c in s}
                return delta_p(wrap["hard"], wrap["single-task"], directions).value

            per_seed = paired_stats.contrast(score, ["hard", "single-task"], tasks, quantity)
            direct = paired_stats.paired_bootstrap(per_seed, [0, 1], sizes, int(row["replicates"]), 0)
        else:
            fast = all(scorers[c][s][task].per_item is not None for c in scorers for s in (0, 1))
            assert row["replicates"] == (FAST_REPLICATES if fast else CORPUS_REPLICATES)
            per_seed = paired_stats.metric_difference(lambda c, s, i, t=task: score(c, s, t, i), "single-task",
                                                      "hard", task)
            direct = paired_stats.paired_bootstrap(per_seed, [0, 1], {task: sizes[task]}, int(row["replicates"]), 0)
        got = [row["difference"], row["low"], row["high"], row["p"]]
        np.testing.assert_allclose(got, [direct.difference, direct.low, direct.high, direct.p_value], rtol=1e-7,
                                   atol=1e-12, err_msg=row["quantity"])
        assert row["verdict"] == paired_stats.verdict(row["difference"], row["p_holm"], True)
    md = (out / "compare.md").read_text()
    assert "## Paired comparisons" in md and "| verdict |" in md and "## Power" in md
    assert all(md.count(f"- {t}/{mains[t]}: one run's difference") == 1 for t in tasks)
    assert "minimum detectable difference" in first.stdout and "| verdict |" in first.stdout
    assert (out / "compare_front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    power = pd.read_csv(out / "power.csv")
    assert list(power["quantity"]) == [f"{t}/{mains[t]}" for t in tasks] + ["delta_p"]
    assert (power["seeds"] == 2).all() and (power["mdd"] > 0).all()


def test_a_one_seed_grid_says_paired_tests_need_two_seeds(compared, tmp_path):
    out, args, _ = compared
    one = tmp_path / "one"
    shutil.copytree(out / "runs", one / "runs")  # seed 0 is reused, nothing trains
    args = [a if a != str(out) else str(one) for a in args]
    args[args.index("--seeds") + 1] = "1"
    done = run_cli(*args, "--detect", "product-classification=0.05")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = pd.read_csv(one / "paired.csv")
    assert rows["p"].isna().all() and rows["low"].isna().all() and set(rows["verdict"]) == {"tie"}
    md = (one / "compare.md").read_text()
    assert "need at least 2 seeds per cell" in md and "1 seed: untested" in md and "## Power" not in md


def test_a_bad_baseline_or_detect_is_one_line_before_anything_runs(tmp_path):
    for extra, words in ((["--baseline", "nope"], "--baseline 'nope'"), (["--detect", "nope=1"], "--detect"),
                         (["--detect", "x"], "expected a number")):
        result = run_cli("compare", "--suite", "ecommerce", "--profile", "smoke", "--grid",
                         "sharing=single-task,hard", "--output-dir", str(tmp_path / "x"), *extra)
        assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
