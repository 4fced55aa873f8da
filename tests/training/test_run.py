"""The smoke run end to end: the CLI writes a complete results.json and MLflow run; same seed, same numbers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from mtl_bench.commands.run import run
from mtl_bench.config.load import build_config
from mtl_bench.data.sources.builtin.cache import load_shop
from mtl_bench.results.schema import Results
from mtl_bench.tasks.catalog import suite_tasks
from tests.conftest import run_cli

SMOKE = ["--suite", "ecommerce", "--profile", "smoke", "--seed", "3"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, data_dir, tracking_uri) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run") / "smoke"
    result = run_cli("run", *SMOKE, "--output-dir", str(out), "--tracking-uri", tracking_uri,
                     "--set", f"data.dir={data_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "product-classification" in result.stdout  # the closing table
    return out, json.loads((out / "results.json").read_text())


def test_results_file_is_complete(cli_run, data_dir):
    out, results = cli_run
    Results.model_validate(results)  # the versioned schema, extra fields forbidden
    assert results["suite"] == "ecommerce" and results["suite_version"] == 2 and results["seed"] == 3
    assert results["config"]["profile"] == "smoke" and results["config"]["seed"] == 3
    specs = {s.name: s for s in suite_tasks("ecommerce")}
    assert set(results["tasks"]) == set(specs)
    for name, task in results["tasks"].items():
        spec = specs[name]
        assert task["type"] == spec.type and task["main_score"] == spec.main_score
        assert set(task["metrics"]) == set(spec.metrics) == set(task["trivial_baseline"]) == set(task["best_val"])
        assert all(0.0 <= v <= 10.0 for v in task["metrics"].values())
    cost = results["cost"]
    assert cost["params"] == cost["trainable_params"] > 1000
    assert cost["train_seconds"] > 0 and cost["samples_per_second"] > 0 and cost["peak_memory_mb"] > 0
    assert cost["steps"] == 2 * 6  # smoke: 2 epochs x ceil(192 / 32) steps of the largest task
    sizes = {k: tuple(v) for k, v in results["config"]["data"]["sizes"].items()}
    _, fingerprint = load_shop(data_dir, seed=0, sizes=sizes)
    assert results["data_fingerprint"] == fingerprint
    assert (out / "checkpoints" / "best.ckpt").is_file()
    assert not list(out.glob(".*.tmp")) and not list((out / "checkpoints").glob(".*.tmp"))


def test_mlflow_run_has_config_epochs_metrics_and_artifacts(cli_run, tracking_uri):
    from mlflow.tracking import MlflowClient

    _, results = cli_run
    assert results["mlflow"]["tracking_uri"] == tracking_uri
    client = MlflowClient(tracking_uri)
    run_ = client.get_run(results["mlflow"]["run_id"])
    assert run_.info.status == "FINISHED"
    assert run_.data.params["train.lr"] == str(results["config"]["train"]["lr"])
    assert run_.data.params["model.dim"] == "32" and run_.data.params["data_fingerprint"] == results["data_fingerprint"]
    history = client.get_metric_history(run_.info.run_id, "val/score")
    assert [m.step for m in history] == [0, 1]  # one value per epoch
    for name, task in results["tasks"].items():
        for metric, value in task["metrics"].items():
            assert run_.data.metrics[f"test/{name}/{metric}"] == pytest.approx(value)
    artifacts = {a.path for a in client.list_artifacts(run_.info.run_id)}
    assert {"results.json", "config.json"} <= artifacts


def test_same_seed_same_numbers(cli_run, data_dir, tmp_path):
    """A second run, in this process instead of a fresh one, gives identical metrics."""
    _, first = cli_run
    cfg = build_config("ecommerce", "smoke", flags={"seed": 3}, sets=[f"data.dir={data_dir}", "train.progress=false"])
    second = run(cfg, output_dir=tmp_path / "again", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    for name in first["tasks"]:
        assert second.tasks[name].metrics == first["tasks"][name]["metrics"]
        assert second.tasks[name].best_val == first["tasks"][name]["best_val"]


def test_trivial_baselines_match_hand_computation(cli_run, data_dir):
    _, results = cli_run
    sizes = {k: tuple(v) for k, v in results["config"]["data"]["sizes"].items()}
    subsets, _ = load_shop(data_dir, seed=0, sizes=sizes)
    cls = subsets["classification"]
    majority = Counter(cls["train"]["label"]).most_common(1)[0][0]
    test_labels = cls["test"]["label"]
    expected = sum(label == majority for label in test_labels) / len(test_labels)
    assert results["tasks"]["product-classification"]["trivial_baseline"]["accuracy"] == pytest.approx(expected)

    # Constant scores make every tag's average precision equal its test prevalence; mAP averages the tags present.
    video = subsets["video"]
    k = len(video["train"].features["tags"].feature.names)
    test = torch.zeros(len(video["test"]), k)
    for row, tags in enumerate(video["test"]["tags"]):
        test[row, tags] = 1
    present = test.sum(0) > 0
    expected_map = float(test.mean(0)[present].mean())
    assert results["tasks"]["video-tagging"]["trivial_baseline"]["map"] == pytest.approx(expected_map, abs=1e-5)

    caps = subsets["captioning"]
    top = Counter(caps["train"]["caption"]).most_common(1)[0][0]
    exact = sum(c == top for c in caps["test"]["caption"]) / len(caps["test"])
    assert results["tasks"]["product-captioning"]["trivial_baseline"]["bleu4"] >= exact
