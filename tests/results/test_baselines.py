"""The single-task baseline store: what a key ignores, a store/load round trip, and the hint when one is missing."""

from __future__ import annotations

import copy

from mtl_bench.config.schema import RunConfig
from mtl_bench.results import baselines


def results(seed: int = 0, **config_changes) -> dict:
    config = RunConfig(suite="ecommerce").model_dump(mode="json") | config_changes
    return {
        "suite": "ecommerce", "suite_version": 1, "seed": seed, "profile": "smoke", "config": config,
        "data_fingerprint": "abc", "provenance": {"created": "2026-11-28T00:00:00Z"},
        "tasks": {"product-classification": {"type": "classification", "metrics": {"accuracy": 0.5, "macro_f1": 0.2}}},
    }


def test_key_ignores_what_a_comparison_varies_and_the_environment():
    base = results()
    varied = copy.deepcopy(base)
    varied["config"]["sharing"] = {"name": "mmoe", "options": {"num_experts": 2}}
    varied["config"]["weighting"] = {"name": "uw", "options": {}}
    varied["config"]["train"] |= {"progress": False, "num_threads": 2, "precision": "32-true"}
    varied["config"]["data"]["dir"] = "/elsewhere"
    key = baselines.baseline_key(base["config"], "abc")
    assert baselines.baseline_key(varied["config"], "abc") == key
    changed = copy.deepcopy(base)
    changed["config"]["model"]["dim"] = 64
    assert baselines.baseline_key(changed["config"], "abc") != key
    assert baselines.baseline_key(base["config"], "other-data") != key
    older = copy.deepcopy(base)  # written before a field existed: the field at its default gives the same key
    del older["config"]["model"]["freeze_pretrained"], older["config"]["data"]["path"]
    assert baselines.baseline_key(older["config"], "abc") == key


def test_store_then_load_per_seed(tmp_path):
    single = results(seed=1)
    path = baselines.store(single, tmp_path / "r.json", tmp_path)
    assert path.parent.parent == tmp_path / "ecommerce" / "v1" and path.name == "seed1.json"
    scores, found = baselines.load(single, tmp_path)
    assert found == path and scores == {"product-classification": {"accuracy": 0.5, "macro_f1": 0.2}}
    assert baselines.load(results(seed=0), tmp_path) is None
    assert not list(tmp_path.rglob("*.tmp"))


def test_delta_against_a_baseline_by_hand(tmp_path):
    run = results()
    run["tasks"]["product-classification"]["metrics"] = {"accuracy": 0.6, "macro_f1": 0.1}
    base = {"product-classification": {"accuracy": 0.5, "macro_f1": 0.2}}
    delta = baselines.delta_against(run, base, tmp_path / "b.json")
    assert round(delta["delta_p"], 6) == round(100 * (0.1 / 0.5 + -0.1 / 0.2) / 2, 6)  # -15 %
    assert round(delta["delta_m"], 6) == 15.0


def test_how_to_make_names_the_command():
    run = results(seed=2)
    run["config"]["fusion"] = {"name": "late", "options": {}}
    hint = baselines.how_to_make(run)
    expected = "mtl-bench run --suite ecommerce --sharing single-task --seed 2 --profile smoke --fusion late"
    assert hint.startswith(expected)
