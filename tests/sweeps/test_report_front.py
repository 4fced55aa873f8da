"""The sweep report's hypervolume of a multi-objective front, against a hand computation."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import create_trial

from mtl_bench.sweeps.report import _best_section, front_hypervolume


def test_front_hypervolume_from_the_nadir_by_hand():
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["maximize", "minimize"])
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for score, size in [(0.8, 5.0), (0.6, 2.0), (0.5, 4.0), (0.9, 9.0)]:  # (0.5, 4) is dominated by (0.6, 2)
        study.add_trial(create_trial(values=[score, size], params={"x": 0.5}, distributions=dist))
    front = study.best_trials
    assert sorted(t.values[0] for t in front) == [0.6, 0.8, 0.9]
    # signed (score, -size), nadir (0.5, -9): boxes 0.3 x 4 = 1.2 (0.8, -5), 0.1 x 7 = 0.7 (0.6, -2), 0.4 x 0 (0.9, -9);
    # their overlap 0.1 x 4 = 0.4; union 1.2 + 0.7 - 0.4 = 1.5
    line = front_hypervolume(study, front)
    assert "1.5 " in line and "(0.5, 9)" in line
    section = "\n".join(_best_section(study, ["score", "size"]))
    assert "Hypervolume of the front: 1.5" in section


def test_hypervolume_value_is_exact():
    from mtl_bench.results.fronts import hypervolume

    assert hypervolume([[0.8, -5.0], [0.6, -2.0], [0.9, -9.0]], [0.5, -9.0]) == pytest.approx(1.5)
