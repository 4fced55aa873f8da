"""The sweep file schema (``sweeps/*.yaml``): frozen pydantic models, so every field is typed and validated here.

A sweep searches dotted run-config paths (the keys ``--set`` takes) for one or more objectives. This module checks
the file on its own; ``load.py`` checks it against the project (suite, config paths, registered names).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, field_validator, model_validator

from mtl_bench.config.load import PROFILES
from mtl_bench.registry import did_you_mean

# Objective metrics, read from a trial's results.json and averaged over the trial's seeds.
OBJECTIVES: dict[str, str] = {
    "delta_p": "Δp, % vs the stored single-task baselines (higher is better); needs a baseline for every seed",
    "delta_m": "Δm, % vs the stored single-task baselines (lower is better); needs a baseline for every seed",
    "mean_main_score": "mean over the suite's tasks of each task's main score on the validation split",
    "params": "number of model parameters",
    "trainable_params": "number of parameters that receive gradients",
    "step_ms": "mean wall time of one training step (forward, backward, update), ms",
    "flops_per_sample": "forward FLOPs of one training sample, summed over the suite's tasks",
    "peak_memory_mb": "peak memory during training, MB",
    "train_seconds": "wall time of training, per-epoch validation included, s",
}
TASK_OBJECTIVE = "task:"  # "task:<task name>": that task's main score on the validation split
RESERVED = {"suite": "suite", "profile": "profile", "seed": "seeds"}  # config keys a sweep sets through its own fields


class FieldError(ValueError):
    """A validation error about the sub-field ``field`` (dotted) of the model being validated, with its value.

    Pydantic places a validator's error at the model; ``load.py`` appends ``field`` so the message names the leaf.
    """

    def __init__(self, field: str, value: Any, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Categorical(_Frozen):
    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)  # strings, numbers, booleans or null (what Optuna stores)

    @field_validator("choices")
    @classmethod
    def _plain_and_unique(cls, choices: list[Any]) -> list[Any]:
        for i, choice in enumerate(choices):
            if choice is not None and not isinstance(choice, str | int | float | bool):
                raise FieldError(str(i), choice, "expected a string, number, boolean or null")
            if choice in choices[:i]:  # also catches 1 vs 1.0 vs true, which Optuna cannot tell apart
                raise FieldError(str(i), choice, f"duplicate of choice {choices.index(choice)}")
        return choices


class IntRange(_Frozen):
    type: Literal["int"]
    low: StrictInt
    high: StrictInt
    step: StrictInt = Field(1, ge=1)
    log: bool = False  # sample on a log scale (needs low > 0 and step 1)

    @model_validator(mode="after")
    def _consistent(self) -> IntRange:
        _check_range(self.low, self.high, self.log)
        if self.log and self.step != 1:
            raise FieldError("step", self.step, "a log-scale int range needs step 1")
        if (self.high - self.low) % self.step:
            raise FieldError("high", self.high, f"high - low must be a multiple of step {self.step}")
        return self


class FloatRange(_Frozen):
    type: Literal["float"]
    low: StrictFloat
    high: StrictFloat
    log: bool = False  # sample on a log scale (needs low > 0)

    @model_validator(mode="after")
    def _consistent(self) -> FloatRange:
        _check_range(self.low, self.high, self.log)
        return self


def _check_range(low: float, high: float, log: bool) -> None:
    if low >= high:
        raise FieldError("low", low, f"expected low < high = {high}")
    if log and low <= 0:
        raise FieldError("low", low, "a log-scale range needs low > 0")


Param = Annotated[Categorical | IntRange | FloatRange, Field(discriminator="type")]
PARAM_TYPES: dict[str, type[_Frozen]] = {"categorical": Categorical, "int": IntRange, "float": FloatRange}


class Objective(_Frozen):
    metric: str  # a key of OBJECTIVES, or "task:<task name>"
    direction: Literal["maximize", "minimize"]

    @field_validator("metric")
    @classmethod
    def _known(cls, metric: str) -> str:
        if metric in OBJECTIVES or (metric.startswith(TASK_OBJECTIVE) and len(metric) > len(TASK_OBJECTIVE)):
            return metric
        raise ValueError(f"{did_you_mean(metric, list(OBJECTIVES))} (or task:<task name>)")


class SweepSpec(_Frozen):
    study: str = Field(min_length=1)  # Optuna study name; also the MLflow parent run
    suite: str
    profile: str = "default"
    seeds: int = Field(1, ge=1)  # seeds per trial (0, 1, ...); objectives are averaged over them
    n_trials: int = Field(ge=1)
    space: dict[str, Param] = Field(min_length=1)  # dotted config path -> range or choices; also the Optuna name
    objectives: list[Objective] = Field(min_length=1)
    sampler: Literal["tpe", "nsga2", "random"]  # default: tpe for one objective, nsga2 for several
    pruner: Literal["none", "median", "hyperband"]  # default: median for one objective, none for several
    sets: list[str] = Field(default_factory=list, alias="set")  # fixed "dotted.key=value" overrides for every trial
    # a categorical space key whose choices get equal numbers of trials (the runner enqueues them round-robin)
    balance: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """Sampler and pruner defaults depend on the number of objectives."""
        if isinstance(data, dict):
            several = isinstance(data.get("objectives"), list) and len(data["objectives"]) > 1
            data = {"sampler": "nsga2" if several else "tpe", "pruner": "none" if several else "median", **data}
        return data

    @field_validator("profile")
    @classmethod
    def _profile(cls, profile: str) -> str:
        if profile not in PROFILES:
            raise ValueError(did_you_mean(profile, list(PROFILES)))
        return profile

    @field_validator("space")
    @classmethod
    def _space_keys(cls, space: dict[str, Any]) -> dict[str, Any]:
        for key in space:
            if key in RESERVED:
                raise FieldError(key, key, f"set by the sweep's own field {RESERVED[key]!r}, not searched")
        return space

    @field_validator("sets")
    @classmethod
    def _set_items(cls, items: list[str]) -> list[str]:
        for i, item in enumerate(items):
            key = item.split("=", 1)[0].strip()
            if "=" not in item or not key:
                raise FieldError(str(i), item, "expected dotted.key=value, e.g. train.epochs=5")
            if key in RESERVED:
                raise FieldError(str(i), item, f"set by the sweep's own field {RESERVED[key]!r}")
        return items

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        several = len(self.objectives) > 1
        if several and self.sampler == "tpe":
            raise FieldError("sampler", self.sampler, "several objectives need nsga2 or random")
        if several and self.pruner != "none":
            raise FieldError("pruner", self.pruner, "Optuna cannot prune multi-objective studies; use none")
        metrics = [o.metric for o in self.objectives]
        for i, metric in enumerate(metrics):
            if metric in metrics[:i]:
                raise FieldError(f"objectives.{i}.metric", metric, f"duplicate of objective {metrics.index(metric)}")
        for i, item in enumerate(self.sets):
            if item.split("=", 1)[0].strip() in self.space:
                raise FieldError(f"set.{i}", item, "this key is also searched in 'space'; keep one")
        if self.balance is not None:
            param = self.space.get(self.balance)
            if not isinstance(param, Categorical):
                raise FieldError("balance", self.balance, "expected a categorical key of 'space'")
            if self.n_trials % len(param.choices):
                raise FieldError("n_trials", self.n_trials, f"expected a multiple of the {len(param.choices)} "
                                 f"choices of {self.balance!r}, so each gets the same number of trials")
        return self
