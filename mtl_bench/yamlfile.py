"""Reading a YAML file that must hold a mapping, with one-line errors naming the file (task, suite, sweep files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mtl_bench.errors import UserError


def read_mapping(path: Path, what: str = "file") -> dict[str, Any]:
    """The mapping in ``path``; unreadable files, YAML syntax errors and non-mappings are a UserError."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}: malformed YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of fields, got {type(raw).__name__}")
    return raw
