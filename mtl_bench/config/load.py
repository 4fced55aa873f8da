"""Build a RunConfig in layers: schema defaults, profile YAML, CLI flags, then ``--set dotted.key=value`` overrides.

Every failure is a UserError naming the file or flag, the field, the value and what was expected.
"""

from __future__ import annotations

import typing
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mtl_bench.config.schema import RunConfig
from mtl_bench.errors import UserError
from mtl_bench.registry import did_you_mean

PROFILES = ("default", "smoke")


def profile_overrides(profile: str) -> dict[str, Any]:
    """The override dict stored in ``mtl_bench/config/profiles/<profile>.yaml``."""
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}: {did_you_mean(profile, list(PROFILES))}")
    text = resources.files("mtl_bench.config").joinpath("profiles", f"{profile}.yaml").read_text()
    return yaml.safe_load(text) or {}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``override`` merged into ``base`` recursively (override wins)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _is_open_dict_annotation(annotation: Any) -> bool:
    """True for free-form dict fields (strategy options, data sizes) that accept new keys."""
    return typing.get_origin(annotation) is dict


def parse_set(item: str) -> tuple[list[str], Any]:
    """``"train.lr=0.01"`` -> (["train", "lr"], 0.01); values are parsed as YAML scalars or lists."""
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected dotted.key=value, e.g. --set train.lr=0.001")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_set(config: dict[str, Any], path: list[str], value: Any, flag: str) -> dict[str, Any]:
    """Set one dotted key, refusing keys that do not exist in the schema (with a did-you-mean hint).

    Keys below a free-form dict field (``sharing.options.*``, ``data.sizes.*``) are accepted as given.
    """
    model: type[BaseModel] | None = RunConfig  # schema of the current node; None inside a free-form dict
    node = config
    for depth, key in enumerate(path):
        if model is not None and key not in model.model_fields:
            where = ".".join(path[:depth]) or "the config"
            hint = did_you_mean(key, list(model.model_fields))
            raise UserError(f"--set {flag}: {where} has no field {key!r}: {hint}")
        if depth == len(path) - 1:
            break
        if model is not None:
            sub = model.model_fields[key].annotation
            model = sub if isinstance(sub, type) and issubclass(sub, BaseModel) else None
            if model is None and not _is_open_dict_annotation(sub):
                raise UserError(f"--set {flag}: {'.'.join(path[: depth + 1])} is a value, not a section")
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {flag}: {'.'.join(path[: depth + 1])} is a value, not a section")
    node[path[-1]] = value
    return config


def validate(raw: dict[str, Any], source: str) -> RunConfig:
    """RunConfig from a plain dict; the first schema error becomes one line naming field and value."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise UserError(f"{source}: field {field!r} = {err.get('input')!r}: {err['msg']}") from None


def build_config(
    suite: str,
    profile: str = "default",
    flags: dict[str, Any] | None = None,
    sets: list[str] | None = None,
    config_file: str | Path | None = None,
) -> RunConfig:
    """The resolved run config. ``flags`` are CLI shortcuts given as dotted keys (e.g. {"sharing.name": "hard"})."""
    raw = RunConfig(suite=suite).model_dump(mode="json")
    raw = deep_merge(raw, profile_overrides(profile))
    raw["profile"] = profile
    if config_file is not None:
        path = Path(config_file)
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"{path}: cannot read config: {exc}".splitlines()[0]) from None
        validate(deep_merge(raw, loaded or {}), str(path))
        raw = deep_merge(raw, loaded or {})
    for dotted, value in (flags or {}).items():
        if value is not None:
            raw = apply_set(raw, dotted.split("."), value, f"{dotted}={value}")
    for item in sets or []:
        path_, value = parse_set(item)
        raw = apply_set(raw, path_, value, item)
    return validate(raw, "--set" if sets else "config")
