"""The single-task baseline store: what a key ignores, a store/load round trip, and the hint when one is missing."""

from __future__ import annotations

import copy

from mtl_bench.results import baselines
from mtl_bench.results.schema import Results
from tests.results.make import make_results, task_result


def results(seed: int = 0, metrics: dict[str, float] | None = None, **config_changes) -> Results:
    run = make_results(seed=seed, tasks={"product-classification": task_result(
        "accuracy", metrics or {"accuracy": 0.5, "macro_f1": 0.2})})
    run.config.update(config_changes)
    return run


def test_key_ignores_what_a_comparison_varies_and_the_environment():
    base = results().config
    varied = copy.deepcopy(base)
    varied["sharing"] = {"name": "mmoe", "options": {"num_experts": 2}}
    varied["weighting"] = {"name": "uw", "options": {}}
    varied["seed"] = 7
    varied["train"] |= {"progress": False, "num_threads": 2, "precision": "32-true"}
    varied["data"]["dir"] = "/elsewhere"
    key = baselines.baseline_key(base, "abc")
    assert baselines.baseline_key(varied, "abc") == key
    changed = copy.deepcopy(base)
    changed["model"]["dim"] = 64
    assert baselines.baseline_key(changed, "abc") != key
    assert baselines.baseline_key(base, "other-data") != key
    older = copy.deepcopy(base)  # written before a field existed: the field at its default gives the same key
    del older["model"]["freeze_pretrained"], older["data"]["path"]
    assert baselines.baseline_key(older, "abc") == key


def test_store_then_load_per_seed(tmp_path):
    single = results(seed=1)
    path = baselines.store(single, tmp_path / "r.json", tmp_path)
    assert path.parent.parent == tmp_path / "ecommerce" / "v1" and path.name == "seed1.json"
    scores, found = baselines.load(single, tmp_path)
    assert found == path and scores == {"product-classification": {"accuracy": 0.5, "macro_f1": 0.2}}
    assert baselines.load(results(seed=0), tmp_path) is None
    assert not list(tmp_path.rglob("*.tmp"))


def test_delta_against_a_baseline_by_hand(tmp_path):
    run = results(metrics={"accuracy": 0.6, "macro_f1": 0.1})
    base = {"product-classification": {"accuracy": 0.5, "macro_f1": 0.2}}
    delta = baselines.delta_against(run, base, tmp_path / "b.json")
    assert round(delta.delta_p, 6) == round(100 * (0.1 / 0.5 + -0.1 / 0.2) / 2, 6)  # -15 %
    assert round(delta.delta_m, 6) == 15.0
    assert delta.baseline == str(tmp_path / "b.json") and delta.skipped == []


def test_how_to_make_names_the_command():
    run = results(seed=2, fusion={"name": "late", "options": {}})
    hint = baselines.how_to_make(run)
    expected = "mtl-bench run --suite ecommerce --sharing single-task --seed 2 --profile smoke --fusion late"
    assert hint.startswith(expected)
