"""Atomic writes: a temporary file in the same folder, fsync, then rename, so no reader sees half a file. And the one
validated read of a results.json, so every consumer works on the typed ``Results``."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mtl_bench.errors import UserError, field_error
from mtl_bench.results.schema import Results


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private; results and leaderboard entries are meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any, compact: bool = False) -> Path:
    """Indented for reading, or ``compact`` (no whitespace) for bulky files such as predictions."""
    text = json.dumps(obj, separators=(",", ":")) if compact else json.dumps(obj, indent=2, sort_keys=False)
    return write_text_atomic(path, text + "\n")


def read_json(path: str | Path, what: str) -> Any:
    """The JSON value in ``path``; a one-line UserError naming the file when it cannot be read (``what``: "results",
    "submission") or is not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not JSON: {exc.msg} at line {exc.lineno}") from None


def read_results(path: str | Path) -> Results:
    """A results.json, checked against the schema; a UserError naming the file (and the field) when it cannot be read,
    is not JSON or does not fit ``Results`` (e.g. written by an mtl-bench of another ``SCHEMA_VERSION``)."""
    raw = read_json(path, "results")
    try:
        return Results.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{path}: {field_error(exc)}") from None
