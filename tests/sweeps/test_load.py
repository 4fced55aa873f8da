"""Shipped sweep files load; malformed ones fail with one line naming the file, the dotted field and the value."""

from pathlib import Path

import pytest
import yaml

from mtl_bench.errors import UserError
from mtl_bench.sweeps.load import load_sweep
from mtl_bench.sweeps.spec import OBJECTIVES
from mtl_bench.weighting import WEIGHTINGS

SWEEPS = sorted((Path(__file__).resolve().parents[2] / "sweeps").glob("*.yaml"))

GOOD = {
    "study": "s",
    "suite": "ecommerce",
    "n_trials": 4,
    "space": {
        "model.dim": {"type": "int", "low": 32, "high": 64, "step": 32},
        "train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "sharing.name": {"type": "categorical", "choices": ["hard", "mmoe"]},
    },
    "objectives": [{"metric": "mean_main_score", "direction": "maximize"}],
}
TWO = [{"metric": "mean_main_score", "direction": "maximize"}, {"metric": "params", "direction": "minimize"}]


def write(tmp_path: Path, raw: dict | str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False))
    return path


def with_(**changes) -> dict:
    """GOOD with top-level fields replaced; ``space_<n>=...`` sets parameter ``<n with dots>`` of the space."""
    raw = {**GOOD, "space": dict(GOOD["space"])}
    for key, value in changes.items():
        if key.startswith("space_"):
            raw["space"][key.removeprefix("space_").replace("__", ".")] = value
        else:
            raw[key] = value
    return raw


def test_shipped_files_are_the_three_of_the_issue():
    assert {p.stem for p in SWEEPS} >= {"sharing_vs_fusion", "weighting", "pareto_size_vs_score"}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_shipped_file_loads(path):
    spec = load_sweep(path)
    assert spec.suite == "ecommerce" and spec.profile == "default" and spec.n_trials >= 1
    if spec.balance:
        assert spec.n_trials % len(spec.space[spec.balance].choices) == 0


def test_weighting_sweep_covers_every_registered_weighting_with_equal_budget():
    spec = load_sweep(next(p for p in SWEEPS if p.stem == "weighting"))
    # fixed with its default weights is ew; its weights are tuned at the same budget by scalarization.yaml
    assert sorted(spec.space["weighting.name"].choices) == [n for n in WEIGHTINGS.names() if n != "fixed"]
    assert "ew" in WEIGHTINGS.names() and spec.balance == "weighting.name" and spec.pruner == "none"


def test_pareto_sweep_has_two_objectives_and_nsga2():
    spec = load_sweep(next(p for p in SWEEPS if p.stem == "pareto_size_vs_score"))
    assert [(o.metric, o.direction) for o in spec.objectives] == [("mean_main_score", "maximize"),
                                                                  ("params", "minimize")]
    assert spec.sampler == "nsga2" and spec.pruner == "none"


def test_defaults_depend_on_the_number_of_objectives(tmp_path):
    one = load_sweep(write(tmp_path, GOOD))
    assert (one.sampler, one.pruner, one.profile, one.seeds, one.sets) == ("tpe", "median", "default", 1, [])
    several = load_sweep(write(tmp_path, with_(objectives=TWO)))
    assert (several.sampler, several.pruner) == ("nsga2", "none")


def test_every_objective_metric_has_a_meaning():
    assert all(meaning.strip() for meaning in OBJECTIVES.values())
    assert {"delta_p", "delta_m", "mean_main_score", "params", "step_ms"} <= set(OBJECTIVES)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("study: [unclosed\n", "malformed YAML at line"),
        ("- a list\n", "expected a mapping of fields, got list"),
        (with_(colour="red"), "field 'colour' = 'red': Extra inputs are not permitted"),
        (with_(n_trails=3), "did you mean 'n_trials'"),
        ({k: v for k, v in GOOD.items() if k != "n_trials"}, "field 'n_trials' = '(missing)'"),
        (with_(n_trials=0), "field 'n_trials' = 0: Input should be greater than or equal to 1"),
        (with_(profile="smok"), "field 'profile' = 'smok': did you mean 'smoke'"),
        (with_(suite="ecomerce"), "field 'suite' = 'ecomerce': did you mean 'ecommerce'"),
        # ranges
        (with_(space_model__dim={"type": "int", "low": 64, "high": 32}),
         "field 'space.model.dim.low' = 64: expected low < high = 32"),
        (with_(space_train__lr={"type": "float", "low": 0.0, "high": 0.1, "log": True}),
         "field 'space.train.lr.low' = 0.0: a log-scale range needs low > 0"),
        (with_(space_model__dim={"type": "int", "low": 32, "high": 100, "step": 32}),
         "field 'space.model.dim.high' = 100: high - low must be a multiple of step 32"),
        (with_(space_model__dim={"type": "int", "low": 1.5, "high": 64}), "field 'space.model.dim.low' = 1.5"),
        (with_(space_model__dim={"type": "integer", "low": 8, "high": 64}),
         "field 'space.model.dim.type' = 'integer': expected one of: categorical, int, float"),
        (with_(space_model__dim={"low": 8, "high": 64}), "field 'space.model.dim.type' = '(missing)'"),
        (with_(space_model__dim={"type": "int", "low": 8, "hihg": 64}), "did you mean 'high'"),
        (with_(space_model__dim={"type": "categorical", "choices": []}), "field 'space.model.dim.choices' = []"),
        (with_(space_model__dim={"type": "categorical", "choices": [32, 64, 32]}),
         "field 'space.model.dim.choices.2' = 32: duplicate of choice 0"),
        (with_(space_seed={"type": "int", "low": 0, "high": 3}),
         "field 'space.seed' = 'seed': set by the sweep's own field 'seeds'"),
        (with_(space_model__dim=[32, 64]), "field 'space.model.dim' = [32, 64]: expected {type: categorical"),
        (with_(space_model__dim={"type": "categorical", "choices": [[8, 16]]}),
         "field 'space.model.dim.choices.0' = [8, 16]: expected a string, number, boolean or null"),
        # against the project
        (with_(space_model__dimm={"type": "int", "low": 8, "high": 64}),
         "field 'space.model.dimm' = 'model.dimm': model has no field 'dimm': did you mean 'dim'?"),
        (with_(space_model={"type": "categorical", "choices": [1]}),
         "field 'space.model' = 'model': model is a config section, not a value; name a field, e.g. model.dim"),
        (with_(space_sharing__name={"type": "categorical", "choices": ["hard", "mmoee"]}),
         "field 'space.sharing.name.choices.1' = 'mmoee': unknown sharing: did you mean 'mmoe'?"),
        (with_(space_model__dim={"type": "categorical", "choices": [64, 1.5]}),
         "field 'space.model.dim.choices.1' = 1.5: rejected by the run config: field 'model.dim' = 1.5"),
        (with_(space_model__dim={"type": "float", "low": 16, "high": 64}), "field 'space.model.dim' = 34.3"),
        (with_(space_model__dim={"type": "int", "low": 4, "high": 64}), "field 'space.model.dim.low' = 4: rejected"),
        (with_(set=["train.epochs"]), "field 'set.0' = 'train.epochs': expected dotted.key=value"),
        (with_(set=["train.epoch=3"]), "field 'set.0' = 'train.epoch=3': train has no field 'epoch'"),
        (with_(set=["train.epochs=three"]), "field 'set.0' = 'train.epochs=three': rejected by the run config"),
        (with_(set=["fusion.name=erly"]), "field 'set.0' = 'fusion.name=erly': unknown fusion: did you mean 'early'"),
        (with_(set=["model.dim=32"]), "field 'set.0' = 'model.dim=32': this key is also searched in 'space'"),
        # objectives, sampler, pruner
        (with_(objectives=TWO, sampler="tpe"), "field 'sampler' = 'tpe': several objectives need nsga2 or random"),
        (with_(objectives=TWO, pruner="median"), "field 'pruner' = 'median': Optuna cannot prune multi-objective"),
        (with_(objectives=[{"metric": "mean_main_scor", "direction": "maximize"}]),
         "field 'objectives.0.metric' = 'mean_main_scor': did you mean 'mean_main_score'"),
        (with_(objectives=[{"metric": "task:video-taging", "direction": "maximize"}]),
         "field 'objectives.0.metric' = 'task:video-taging': no such task in suite 'ecommerce': "
         "did you mean 'video-tagging'"),
        (with_(objectives=[{"metric": "params", "direction": "down"}]), "field 'objectives.0.direction' = 'down'"),
        (with_(objectives=[TWO[1], TWO[1]], sampler="random"), "field 'objectives.1.metric' = 'params': duplicate"),
        (with_(objectives=[]), "field 'objectives' = []"),
        (with_(balance="train.lr"), "field 'balance' = 'train.lr': expected a categorical key of 'space'"),
        (with_(balance="sharing.name", n_trials=3), "field 'n_trials' = 3: expected a multiple of the 2 choices"),
    ],
)
def test_malformed_file_is_one_line_naming_file_field_and_value(tmp_path, raw, message):
    path = write(tmp_path, raw)
    with pytest.raises(UserError) as info:
        load_sweep(path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    assert message in text


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"nope\.yaml: cannot read sweep file"):
        load_sweep(tmp_path / "nope.yaml")


def test_task_objective_of_the_suite_loads(tmp_path):
    spec = load_sweep(write(tmp_path, with_(objectives=[{"metric": "task:video-tagging", "direction": "maximize"}])))
    assert spec.objectives[0].metric == "task:video-tagging"
