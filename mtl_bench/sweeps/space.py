"""From a sweep's search space to Optuna suggestions, and from suggested values to ``--set`` overrides.

Every Optuna parameter is named by its dotted config path, so a trial's params read as config overrides:

>>> to_sets({"sharing.name": "mmoe", "train.lr": 1e-05, "model.dim": 64})
['sharing.name=mmoe', 'train.lr=1.0e-05', 'model.dim=64']
"""

from __future__ import annotations

from typing import Any

import optuna
import yaml

from mtl_bench.sweeps.spec import Categorical, FloatRange, IntRange, SweepSpec


def suggest(trial: optuna.trial.BaseTrial, space: dict[str, Categorical | IntRange | FloatRange]) -> dict[str, Any]:
    """One value per space key, suggested by the trial in the file's order (dotted path -> value)."""
    params: dict[str, Any] = {}
    for name, param in space.items():
        if isinstance(param, Categorical):
            params[name] = trial.suggest_categorical(name, param.choices)
        elif isinstance(param, IntRange):
            params[name] = trial.suggest_int(name, param.low, param.high, step=param.step, log=param.log)
        else:
            params[name] = trial.suggest_float(name, param.low, param.high, log=param.log)
    return params


def render(value: Any) -> str:
    """``value`` as text that ``config.load.parse_set`` (YAML) reads back as the same value.

    Plain ``repr`` is not enough: PyYAML reads ``1e-05`` as a string and ``true`` as a boolean, so values go
    through YAML's own emitter (``1.0e-05``, ``'true'``).
    """
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, allow_unicode=True)
    return text.removesuffix("\n...\n").removesuffix("\n")


def to_sets(params: dict[str, Any]) -> list[str]:
    """``"dotted.key=value"`` strings for ``build_config(sets=...)``."""
    return [f"{key}={render(value)}" for key, value in params.items()]


def directions(spec: SweepSpec) -> list[str]:
    """Optuna study directions, one per objective, in the file's order."""
    return [objective.direction for objective in spec.objectives]


def make_sampler(spec: SweepSpec, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The spec's sampler. Parallel workers sharing a study should pass different seeds, or they sample alike."""
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if spec.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    """The spec's pruner; steps are epochs and the reported value is the validation main score."""
    if spec.pruner == "median":
        # no pruning before 5 trials have finished, nor on a trial's first epoch (scores are noisy there)
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()


def balanced_queue(spec: SweepSpec) -> list[dict[str, Any]]:
    """The partial params to enqueue (``study.enqueue_trial``) so each choice of ``spec.balance`` gets
    ``n_trials / len(choices)`` trials, round-robin; empty when the spec balances nothing."""
    if spec.balance is None:
        return []
    choices = spec.space[spec.balance].choices  # type: ignore[union-attr]  (the spec checked it is categorical)
    return [{spec.balance: choices[i % len(choices)]} for i in range(spec.n_trials)]
