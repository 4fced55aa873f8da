"""Search space -> Optuna suggestions -> ``--set`` overrides -> RunConfig, and reproducible tiny studies."""

import math

import optuna
import pytest

from mtl_bench.config.load import build_config, parse_set
from mtl_bench.sweeps.space import balanced_queue, directions, make_pruner, make_sampler, render, suggest, to_sets
from mtl_bench.sweeps.spec import SweepSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPEC = SweepSpec.model_validate({
    "study": "s",
    "suite": "ecommerce",
    "n_trials": 4,
    "space": {
        "sharing.name": {"type": "categorical", "choices": ["hard", "mmoe"]},
        "model.fusion_layers": {"type": "int", "low": 1, "high": 3},
        "model.dim": {"type": "int", "low": 32, "high": 128, "step": 32},
        "train.lr": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
        "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
    },
    "objectives": [{"metric": "mean_main_score", "direction": "maximize"}],
})
PARAMS = {"sharing.name": "mmoe", "model.fusion_layers": 2, "model.dim": 96, "train.lr": 1e-05, "model.dropout": 0.25}


def test_suggest_with_a_fixed_trial_returns_the_params_by_dotted_path():
    assert suggest(optuna.trial.FixedTrial(PARAMS), SPEC.space) == PARAMS


def test_to_sets_round_trips_through_build_config():
    sets = to_sets(PARAMS)
    assert sets[0] == "sharing.name=mmoe" and "train.lr=1.0e-05" in sets
    cfg = build_config("ecommerce", "smoke", sets=sets)
    assert (cfg.sharing.name, cfg.model.fusion_layers, cfg.model.dim) == ("mmoe", 2, 96)
    assert cfg.train.lr == 1e-05 and cfg.model.dropout == 0.25


@pytest.mark.parametrize(
    "value",
    [1e-05, 3e-4, 0.1 + 0.2, 2.0, 1e300, -7, 0, True, False, None, "hard", "cross-attention", "true", "null", "1e-3",
     "12", "", "a=b", "x: y", "  padded", "café", [8, 16]],
)
def test_rendered_values_parse_back_exactly(value):
    _, parsed = parse_set(f"some.key={render(value)}")
    assert parsed == value and type(parsed) is type(value)


def test_infinite_float_parses_back():
    assert math.isinf(parse_set(f"k={render(float('inf'))}")[1])


def test_samplers_pruners_and_directions():
    assert isinstance(make_sampler(SPEC, 0), optuna.samplers.TPESampler)
    assert isinstance(make_pruner(SPEC), optuna.pruners.MedianPruner)
    assert directions(SPEC) == ["maximize"]
    two = SPEC.model_copy(update={"sampler": "nsga2", "pruner": "none"})
    assert isinstance(make_sampler(two, 0), optuna.samplers.NSGAIISampler)
    assert isinstance(make_pruner(two), optuna.pruners.NopPruner)
    assert isinstance(make_pruner(SPEC.model_copy(update={"pruner": "hyperband"})), optuna.pruners.HyperbandPruner)
    assert isinstance(make_sampler(SPEC.model_copy(update={"sampler": "random"}), 0), optuna.samplers.RandomSampler)


def test_balanced_queue_is_round_robin_over_the_choices():
    spec = SPEC.model_copy(update={"balance": "sharing.name"})
    assert balanced_queue(spec) == [{"sharing.name": c} for c in ["hard", "mmoe", "hard", "mmoe"]]
    assert balanced_queue(SPEC) == []


def _score(params: dict) -> float:
    """A pure stand-in for training: depends on every suggested value."""
    bonus = {"hard": 0.1, "mmoe": 0.2}[params["sharing.name"]]
    return bonus + params["model.fusion_layers"] / 10 + params["model.dim"] / 1000 - params["model.dropout"] \
        + math.log10(params["train.lr"]) / 100


def _run_study(seed: int, spec: SweepSpec = SPEC, queue: list | None = None) -> list[tuple]:
    study = optuna.create_study(directions=directions(spec), sampler=optuna.samplers.RandomSampler(seed=seed))
    for params in queue or []:
        study.enqueue_trial(params)
    study.optimize(lambda trial: _score(suggest(trial, spec.space)), n_trials=5)
    return [(t.number, t.params, t.value) for t in study.trials]


def test_tiny_study_is_reproducible_with_the_same_seed():
    first = _run_study(seed=0)
    assert first == _run_study(seed=0)
    assert first != _run_study(seed=1)
    assert [n for n, _, _ in first] == list(range(5))
    assert all(set(params) == set(SPEC.space) for _, params, _ in first)
    for _, params, value in first:  # the value is a pure function of the stored params
        assert value == _score(params)
        build_config("ecommerce", "smoke", sets=to_sets(params))


def test_enqueued_balance_fixes_the_choice_of_each_trial():
    spec = SPEC.model_copy(update={"balance": "sharing.name", "n_trials": 4})
    trials = _run_study(seed=0, spec=spec, queue=balanced_queue(spec))
    assert [params["sharing.name"] for _, params, _ in trials[:4]] == ["hard", "mmoe", "hard", "mmoe"]


def test_two_objective_study_with_the_spec_sampler_is_reproducible():
    spec = SPEC.model_copy(update={"sampler": "nsga2", "pruner": "none"})
    spec = spec.model_copy(update={"objectives": [*SPEC.objectives, SPEC.objectives[0].model_copy(
        update={"metric": "params", "direction": "minimize"})]})

    def run() -> list:
        study = optuna.create_study(directions=directions(spec), sampler=make_sampler(spec, seed=0))
        study.optimize(lambda t: (_score(p := suggest(t, spec.space)), p["model.dim"] * 1000), n_trials=5)
        return [(t.params, t.values) for t in study.trials] + [sorted(t.number for t in study.best_trials)]

    assert directions(spec) == ["maximize", "minimize"]
    assert run() == run()
