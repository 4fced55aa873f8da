"""Load a sweep file and check it against the project before any trial runs.

Every failure is one UserError line naming the file, the dotted field (``space.model.dim.low``), the value and
what was expected. Beyond the schema (``spec.py``): the suite exists, every searched or fixed key is a config path,
strategy names are registered, ``task:`` objectives name a task of the suite, and every categorical choice and
every range end builds a valid run config (so ``model.dim: 1.5`` fails here, not in trial 17).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mtl_bench.config.load import apply_set, build_config, parse_set
from mtl_bench.config.schema import RunConfig
from mtl_bench.errors import UserError
from mtl_bench.registry import did_you_mean
from mtl_bench.sweeps.space import to_sets
from mtl_bench.sweeps.spec import (
    PARAM_TYPES,
    TASK_OBJECTIVE,
    Categorical,
    FieldError,
    FloatRange,
    Objective,
    SweepSpec,
)
from mtl_bench.yamlfile import read_mapping


def load_sweep(path: str | Path) -> SweepSpec:
    """The validated sweep in ``path``, checked against the suite, the config schema and the registries."""
    path = Path(path)
    raw = read_mapping(path, "sweep file")
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as exc:
        raise _one_line(exc, path) from None
    check_sweep(spec, path)
    return spec


def with_overrides(spec: SweepSpec, path: str | Path, profile: str | None = None,
                   n_trials: int | None = None) -> SweepSpec:
    """The spec with ``--profile`` / ``--n-trials`` applied, validated and checked again like the file itself."""
    flags = {"profile": profile, "n_trials": n_trials}
    changes = {k: v for k, v in flags.items() if v is not None}
    if not changes:
        return spec
    try:
        spec = SweepSpec.model_validate({**spec.model_dump(by_alias=True), **changes})
    except ValidationError as exc:
        message = str(_one_line(exc, Path(path)))
        flag = next((k for k in changes if f"'{k}'" in message), next(iter(changes)))
        raise UserError(f"--{flag.replace('_', '-')} {changes[flag]}: {message.split(': ', 2)[-1]}") from None
    check_sweep(spec, f"{path} with --profile {spec.profile}" if profile else path)
    return spec


def _fail(source: str | Path, field: str, value: Any, expected: str) -> UserError:
    return UserError(f"{source}: field {field!r} = {value!r}: {expected}")


def _one_line(exc: ValidationError, path: Path) -> UserError:
    """The first pydantic error as one line, with its location as a dotted field of the file.

    An unknown key wins over the rest: a misspelt key also makes its field missing, and the hint is more useful.
    """
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [str(p) for p in err["loc"]]
    tag = None
    if len(loc) >= 3 and loc[0] == "space" and loc[2] in PARAM_TYPES:
        tag = loc.pop(2)  # the union tag pydantic inserts: space.<key>.int.low -> space.<key>.low
    value, message = err.get("input"), err["msg"]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, FieldError):
        loc.append(cause.field)
        value, message = cause.value, str(cause)
    elif isinstance(cause, ValueError):
        message = str(cause)
    elif err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc.append("type")
        value, message = err["ctx"].get("tag", "(missing)"), f"expected one of: {', '.join(PARAM_TYPES)}"
    elif err["type"] == "model_attributes_type" and loc[0] == "space" and len(loc) == 2:
        message = "expected {type: categorical, choices: [...]}, {type: int, low, high} or {type: float, low, high}"
    elif err["type"] == "missing":
        value = "(missing)"
    elif err["type"] == "extra_forbidden":
        message += f"; {did_you_mean(loc[-1], _known_fields(loc, tag))}"
    return _fail(path, ".".join(loc), value, message)


def _known_fields(loc: list[str], tag: str | None) -> list[str]:
    """The field names allowed next to the unknown one at ``loc`` (for a did-you-mean hint)."""
    model = PARAM_TYPES[tag] if tag else Objective if loc[0] == "objectives" else SweepSpec
    return [info.alias or name for name, info in model.model_fields.items()]


def check_sweep(spec: SweepSpec, source: str | Path) -> None:
    """Checks against the project; call again after changing the spec (e.g. ``--profile``) before running it."""
    from mtl_bench.tasks.catalog import all_suites, suite_tasks  # local import: the catalog loads task types

    suites = all_suites()
    if spec.suite not in suites:
        raise _fail(source, "suite", spec.suite, did_you_mean(spec.suite, list(suites)))
    tasks = [t.name for t in suite_tasks(spec.suite)]
    for i, objective in enumerate(spec.objectives):
        task = objective.metric.removeprefix(TASK_OBJECTIVE)
        if objective.metric.startswith(TASK_OBJECTIVE) and task not in tasks:
            hint = f"no such task in suite {spec.suite!r}: {did_you_mean(task, tasks)}"
            raise _fail(source, f"objectives.{i}.metric", objective.metric, hint)
    for i, item in enumerate(spec.sets):
        keys, value = parse_set(item)
        _check_key(keys, f"set.{i}", item, source)
        _check_name(keys, value, f"set.{i}", item, source)
    for key, param in spec.space.items():
        _check_key(key.split("."), f"space.{key}", key, source)
        for j, choice in enumerate(param.choices if isinstance(param, Categorical) else []):
            _check_name(key.split("."), choice, f"space.{key}.choices.{j}", choice, source)
    _check_builds(spec, source)


def _check_key(keys: list[str], field: str, value: Any, source: str | Path) -> None:
    """The dotted key exists in RunConfig (or below a free-form options dict), with a did-you-mean hint."""
    flag = ".".join(keys)
    try:
        apply_set(copy.deepcopy(_defaults()), keys, None, flag)
    except UserError as exc:
        raise _fail(source, field, value, str(exc).removeprefix(f"--set {flag}: ")) from None
    model: Any = RunConfig
    for key in keys:  # apply_set accepts a whole section as a key; a sweep wants a value
        model = model.model_fields[key].annotation if model is not None else None
        model = model if isinstance(model, type) and issubclass(model, BaseModel) else None
    if model is not None:
        example = f"{flag}.{next(iter(model.model_fields))}"
        raise _fail(source, field, value, f"{flag} is a config section, not a value; name a field, e.g. {example}")


def _check_name(keys: list[str], name: Any, field: str, value: Any, source: str | Path) -> None:
    """``sharing.name``, ``fusion.name`` and ``weighting.name`` values are registered names."""
    if len(keys) != 2 or keys[1] != "name" or not isinstance(name, str):
        return  # a non-string name is left to the config's type check
    from mtl_bench.fusion import FUSIONS  # local imports: keep this module light to import
    from mtl_bench.sharing import SHARINGS
    from mtl_bench.weighting import WEIGHTINGS

    registry = {"sharing": SHARINGS, "fusion": FUSIONS, "weighting": WEIGHTINGS}.get(keys[0])
    if registry is not None and name not in registry:
        raise _fail(source, field, value, f"unknown {registry.kind}: {did_you_mean(name, registry.names())}")


def _check_builds(spec: SweepSpec, source: str | Path) -> None:
    """Each fixed override, then each choice and range end (others at their first value) builds a RunConfig."""
    for i in range(len(spec.sets)):
        _build(spec, spec.sets[: i + 1], f"set.{i}", spec.sets[i], source)
    first = {key: _candidates(param)[0][1] for key, param in spec.space.items()}
    for key, param in spec.space.items():
        for field, value in _candidates(param):
            _build(spec, [*spec.sets, *to_sets({**first, key: value})], f"space.{key}{field}", value, source)


def _candidates(param: Any) -> list[tuple[str, Any]]:
    """(field suffix, value) pairs worth building: every choice, both ends, and a fractional float inside."""
    if isinstance(param, Categorical):
        return [(f".choices.{j}", choice) for j, choice in enumerate(param.choices)]
    ends = [(".low", param.low), (".high", param.high)]
    if isinstance(param, FloatRange):  # catches a float range on an int field, whose ends may look integral
        ends.append(("", param.low + (param.high - param.low) * 0.382))
    return ends


def _build(spec: SweepSpec, sets: list[str], field: str, value: Any, source: str | Path) -> None:
    try:
        build_config(spec.suite, spec.profile, sets=sets)
    except UserError as exc:
        reason = str(exc).removeprefix("--set: ")
        raise _fail(source, field, value, f"rejected by the run config: {reason}") from None


def _defaults() -> dict[str, Any]:
    return RunConfig(suite="any").model_dump(mode="json")
