"""``sweeps/scalarization.yaml``, the tuned-scalarization baseline: it loads, its budget and settings are those
``sweeps/weighting.yaml`` gives each method, its space samples one log-uniform weight for exactly the suite's tasks
and those weights reach the ``fixed`` weighting, and a 2-trial smoke sweep of it trains with the sampled weights."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import yaml

from mtl_bench.config.load import build_config
from mtl_bench.sweeps.load import load_sweep
from mtl_bench.sweeps.runner import sweep
from mtl_bench.sweeps.space import suggest, to_sets
from mtl_bench.tasks.catalog import suite_tasks
from mtl_bench.weighting import WEIGHTINGS

optuna.logging.set_verbosity(optuna.logging.ERROR)

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"
PREFIX = "weighting.options.weights."


def weight_keys(spec) -> dict[str, str]:
    """Task name -> the space key that searches its weight."""
    return {key.removeprefix(PREFIX): key for key in spec.space if key.startswith(PREFIX)}


def test_budget_and_settings_are_those_of_each_method_in_the_weighting_sweep():
    ours, theirs = load_sweep(SWEEPS / "scalarization.yaml"), load_sweep(SWEEPS / "weighting.yaml")
    methods = len(theirs.space[theirs.balance].choices)
    assert ours.n_trials == theirs.n_trials // methods == 2
    assert ours.space["train.lr"] == theirs.space["train.lr"]
    same = ("suite", "profile", "seeds", "objectives", "sampler", "pruner")
    assert {f: getattr(ours, f) for f in same} == {f: getattr(theirs, f) for f in same}
    assert set(theirs.sets) <= set(ours.sets) and "weighting.name=fixed" in ours.sets


def test_space_samples_one_log_uniform_weight_per_task_of_the_suite_and_they_reach_the_weighting():
    spec = load_sweep(SWEEPS / "scalarization.yaml")
    tasks = [t.name for t in suite_tasks(spec.suite)]
    keys = weight_keys(spec)
    assert sorted(keys) == tasks and set(spec.space) == {*keys.values(), "train.lr"}
    # independent draws: what TPE's random start (its first 10 trials, all of this 2-trial budget) samples from
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    below_one = dict.fromkeys(tasks, 0)
    draws = 200
    for i in range(draws):
        trial = study.ask()
        params = suggest(trial, spec.space)
        study.tell(trial, 0.0)
        if i < 5:  # the config path: --set overrides -> RunConfig -> the weighting's per-task weights
            cfg = build_config(spec.suite, spec.profile, sets=[*spec.sets, *to_sets(params)])
            weighting = WEIGHTINGS.get(cfg.weighting.name)(tasks, **cfg.weighting.options)
            assert weighting.task_weights == {t: params[keys[t]] for t in tasks}
        for t in tasks:
            assert 0.1 <= params[keys[t]] <= 10.0
            below_one[t] += params[keys[t]] < 1.0
    # log-uniform on [0.1, 10]: half the draws below 1 (a uniform range would put 9% there); binomial sd 3.5%
    assert all(0.4 <= n / draws <= 0.6 for n in below_one.values()), below_one


def test_two_trial_smoke_sweep_trains_with_the_sampled_weights(data_dir, tracking_uri, tmp_path):
    raw = yaml.safe_load((SWEEPS / "scalarization.yaml").read_text())
    raw["profile"] = "smoke"
    raw["set"] += ["train.epochs=1", "train.limit_train_batches=2", "train.progress=false", "train.num_threads=1",
                   f"data.dir={data_dir}"]
    path = tmp_path / "scalarization.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = tmp_path / "out"
    summary = sweep(path, output_dir=out, tracking_uri=tracking_uri, heartbeat=1)
    assert (summary.finished, summary.ran) == (2, [0, 1])
    spec = load_sweep(path)
    keys = weight_keys(spec)
    trials = optuna.load_study(study_name="scalarization", storage=f"sqlite:///{out / 'study.db'}").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for trial in trials:
        config = json.loads((out / "trials" / str(trial.number) / "seed0" / "results.json").read_text())["config"]
        assert config["weighting"] == {"name": "fixed", "options": {"weights": {t: trial.params[k]
                                                                                for t, k in keys.items()}}}
        assert config["train"]["lr"] == trial.params["train.lr"] and config["sharing"]["name"] == "hard"
        assert math.isfinite(trial.value)
    assert trials[0].params != trials[1].params
