"""The ``files`` data source: a task on your own CSV, JSONL or parquet file (or a ``datasets`` id), YAML only.

A task YAML names the columns; the source reads the file, decodes the images and videos the rows point at, splits
and caches the result::

    dataset:
      source: files
      subset: my-products        # tasks naming the same subset share one loaded copy (their options must agree)
      options:
        data_files: products.csv # or a list of files; .csv / .tsv, .jsonl / .ndjson / .json, .parquet (by suffix)
        # hub: user/name         # instead of data_files: anything datasets.load_dataset opens (cached, or a folder)
        media_root: images/      # where relative image / video paths are found; default: the data file's folder
        split_column: split      # optional: train / validation / test per row (val, valid, dev mean validation)
        labels: [shirt, shoe]    # optional: the allowed classes or tags, in id order; {column: [...]} for several
        split: [0.8, 0.1, 0.1]   # without split_column: train / validation / test fractions of the seeded split
    inputs: {image: image_path, text: title}   # image and video columns hold file paths
    target: category             # classification: one label; tagging: a JSON list or "a|b|c"; captioning: text

Relative ``data_files``, ``hub`` folders and ``media_root`` are relative to ``data.path`` when it is set, else to the
current directory. Without ``labels``, the classes are those of the training split (sorted). Without a split column,
each row's split comes from a hash of its content and ``data.seed`` (``build.seeded_split``), so the same file
always splits the same way and reordering it changes nothing; a dataset with its own train/validation/test splits
keeps them. A row is kept only when it is usable for every task of its subset; bad rows (missing or corrupt files,
empty targets, unknown labels, ...; see ``build.py``) are skipped and reported, never fatal. A dataset that does
not match the YAML (a missing column, a missing file, a target of the wrong kind) is a one-line UserError.

Cache: the cleaned subset is saved as Arrow under ``data.dir`` in ``files-v{VERSION}-{subset}-{hash}``, the hash
covering the options, the columns and their kinds, the data file bytes (or the datasets fingerprints), every media
file's path, size and mtime, the image size, frame count and seed; it is written to a temporary sibling and renamed
into place, like the shop cache. Decoded clips are also cached per file in ``data.dir/files-clips``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, field_validator

from mtl_bench.config.schema import DataConfig
from mtl_bench.data.sources import SOURCES
from mtl_bench.data.sources.files.types import Column, Recipe, Table
from mtl_bench.data.sources.types import Loaded, Skipped
from mtl_bench.errors import UserError
from mtl_bench.registry import did_you_mean
from mtl_bench.tasks.spec import TaskSpec

VERSION = 1  # bump when the cleaned output for the same input changes (load.py, build.py)
REPORT_FILE = "report.json"
SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet")
TARGET_KINDS = {"classification": "label", "tagging": "tags", "captioning": "string"}
INPUT_KINDS = {"image": "image", "video": "video", "text": "string"}
_EXPECTED = {  # what each option takes, for type errors
    "data_files": "expected a file path or a list of file paths",
    "hub": "expected a dataset id or folder (for datasets.load_dataset)",
    "split_column": "expected a column name",
    "labels": "expected a list of labels, or {column: [labels]} when the subset has several label columns",
    "media_root": "expected a folder",
    "split": "expected three fractions (train, validation, test) summing to 1",
}


def _scalar_str(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


Label = Annotated[str, BeforeValidator(_scalar_str)]  # YAML `labels: [1, 2]` means the strings "1", "2" of a CSV


def _distinct(labels: list[str]) -> list[str]:
    if not labels or any(not label.strip() for label in labels):
        raise ValueError("expected a non-empty list of non-empty labels")
    if len(set(labels)) < len(labels):
        raise ValueError(f"repeated label {next(x for x in labels if labels.count(x) > 1)!r}")
    return labels


class FilesOptions(BaseModel):
    """``dataset.options`` of a files task (see the module docstring); unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_files: list[str] | None = None  # one path is read as a list of one
    hub: str | None = None
    media_root: str | None = None
    split_column: str | None = None
    labels: list[Label] | dict[str, list[Label]] | None = None
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)

    @field_validator("data_files", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        value = [value] if isinstance(value, str) else value
        if isinstance(value, list) and (not value or any(isinstance(v, str) and not v.strip() for v in value)):
            raise ValueError("expected a file path or a non-empty list of file paths")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        for labels in value.values() if isinstance(value, dict) else [value] if value is not None else []:
            _distinct(labels)
        return value

    @field_validator("split")
    @classmethod
    def _fractions(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(v <= 0 for v in value) or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError("expected three positive fractions (train, validation, test) summing to 1")
        return value


def parse_options(spec: TaskSpec) -> FilesOptions:
    """The task's validated options; a problem is one line naming ``dataset.options.<field>``."""
    raw = spec.dataset.options
    try:
        options = FilesOptions.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else ""
        where = f"task {spec.name}: field 'dataset.options.{key}'"
        if err["type"] == "extra_forbidden":
            hint = did_you_mean(key, list(FilesOptions.model_fields))
            raise UserError(f"{where}: not an option of the files source; {hint}") from None
        shown = repr(raw.get(key)) if len(repr(raw.get(key))) <= 60 else repr(raw.get(key))[:57] + "..."
        message = str(err["msg"]).removeprefix("Value error, ") if err["type"] == "value_error" else _EXPECTED[key]
        raise UserError(f"{where} = {shown}: {message}") from None
    if (options.data_files is None) == (options.hub is None):
        which = "both are set" if options.data_files else "neither is set"
        raise UserError(
            f"task {spec.name}: field 'dataset.options.data_files': give either data_files (a CSV, JSONL or parquet "
            f"file) or hub (a datasets id); {which}"
        )
    return options


def _groups(specs: list[TaskSpec]) -> dict[str, tuple[FilesOptions, list[TaskSpec]]]:
    """subset -> (options, its tasks); tasks sharing a subset must give the same options."""
    groups: dict[str, tuple[FilesOptions, list[TaskSpec]]] = {}
    for spec in sorted(specs, key=lambda s: s.name):
        options = parse_options(spec)
        bad_splits = sorted(set(spec.dataset.splits.values()) - {"train", "validation", "test"})
        if bad_splits:
            raise UserError(f"task {spec.name}: field 'dataset.splits' names {bad_splits[0]!r}: the files source "
                            "makes the splits train, validation and test")  # fmt: skip
        subset = spec.dataset.subset
        if subset in groups and groups[subset][0] != options:
            first = groups[subset][1][0].name
            raise UserError(
                f"task {spec.name}: field 'dataset.options' differs from task {first}'s for subset {subset!r}; tasks "
                "sharing a subset share one loaded copy, so give them the same options (or another subset name)"
            )
        groups.setdefault(subset, (options, []))[1].append(spec)
    return groups


def plan_columns(specs: list[TaskSpec]) -> list[Column]:
    """The columns the subset's tasks read, each with one kind (a column cannot be a label and a text)."""
    columns: dict[str, Column] = {}
    for spec in specs:
        if spec.type not in TARGET_KINDS:
            raise UserError(f"task {spec.name}: field 'type' = {spec.type!r}: the files source serves "
                            f"{', '.join(sorted(TARGET_KINDS))}")  # fmt: skip
        wanted = [(f"inputs.{m}", c, INPUT_KINDS[m], False) for m, c in sorted(spec.inputs.items())]
        for field, name, kind, target in [*wanted, ("target", spec.target, TARGET_KINDS[spec.type], True)]:
            old = columns.get(name)
            if old is None:
                columns[name] = Column(name, kind, target, spec.name, field)
            elif old.kind != kind:
                raise UserError(
                    f"task {spec.name}: field {field!r} = {name!r}: read as {kind} here but as {old.kind} by task "
                    f"{old.task} ({old.field}); a column holds one kind of value"
                )
            elif target and not old.target:
                columns[name] = Column(name, kind, True, spec.name, field)
    return sorted(columns.values(), key=lambda c: c.name)


def _labels(options: FilesOptions, columns: list[Column], where: str) -> dict[str, list[str]]:
    """label / tags column -> allowed names, from ``labels`` (a list when the subset has one such column)."""
    label_columns = [c.name for c in columns if c.kind in ("label", "tags")]
    if options.labels is None:
        return {}
    if isinstance(options.labels, list):
        if len(label_columns) != 1:
            raise UserError(
                f"{where}: field 'dataset.options.labels': the subset has {len(label_columns)} label columns "
                f"({', '.join(label_columns) or 'none'}); give labels as {{column: [labels]}}"
            )
        return {label_columns[0]: list(options.labels)}
    for column in options.labels:
        if column not in label_columns:
            hint = did_you_mean(column, label_columns) if label_columns else "the subset has no label column"
            raise UserError(f"{where}: field 'dataset.options.labels.{column}': not a classification or tagging "
                            f"target in this subset; {hint}")  # fmt: skip
    return {k: list(v) for k, v in options.labels.items()}


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _open(options: FilesOptions, base: Path, relative_to: str, where: str) -> tuple[Table, Path]:
    """(the table, the default media root: the first data file's folder, else the base folder)."""
    from mtl_bench.data.sources.files.build import read_dataset, read_files

    if options.data_files is not None:
        paths = []
        for value in options.data_files:
            path = _resolve(base, value)
            field = f"{where}: field 'dataset.options.data_files' = {value!r}"
            if path.suffix.lower() not in SUFFIXES:
                raise UserError(f"{field}: unsupported suffix {path.suffix!r}; expected one of {', '.join(SUFFIXES)}")
            if not path.is_file():
                raise UserError(f"{field}: no such file ({path}; relative paths are relative to {relative_to})")
            paths.append(path)
        return read_files(paths), paths[0].parent
    import datasets

    from mtl_bench.data.sources.cache import quiet_progress

    local = _resolve(base, str(options.hub))
    try:
        with quiet_progress():
            loaded = datasets.load_dataset(str(local) if local.is_dir() else options.hub)
    except Exception as err:  # noqa: BLE001  (datasets raises many types: not found, offline, bad files)
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"{where}: field 'dataset.options.hub' = {options.hub!r}: datasets.load_dataset failed: "
                        f"{reason}") from None  # fmt: skip
    return read_dataset(loaded, str(options.hub)), base


@SOURCES.register("files")
def load_files(specs: list[TaskSpec], cfg: DataConfig) -> Loaded:
    """Each subset the tasks name, read from its files (first use) or from the Arrow cache; see the module docstring."""
    parts = {subset: _load_subset(subset, options, group, cfg) for subset, (options, group) in _groups(specs).items()}
    if len(parts) == 1:
        return next(iter(parts.values()))
    joined = "".join(f"{name}:{part.fingerprint};" for name, part in sorted(parts.items()))
    merged = Loaded({}, hashlib.sha256(joined.encode()).hexdigest())
    for part in parts.values():
        merged.subsets.update(part.subsets)
        merged.skipped.update(part.skipped)
        merged.notes += part.notes
    return merged


def _load_subset(subset: str, options: FilesOptions, specs: list[TaskSpec], cfg: DataConfig) -> Loaded:
    from mtl_bench.data.sources.files.build import media_key

    where = f"task {specs[0].name}"
    base = Path(cfg.path).expanduser().absolute() if cfg.path else Path.cwd()
    table, default_root = _open(options, base, "data.path" if cfg.path else "the current directory", where)
    columns = plan_columns(specs)
    for col in columns:
        if col.name not in table.columns:
            raise UserError(f"task {col.task}: field {col.field!r} = {col.name!r}: no such column in {table.name} "
                            f"(columns: {', '.join(table.columns) or 'none'})")  # fmt: skip
    if options.split_column and options.split_column not in table.columns:
        raise UserError(f"{where}: field 'dataset.options.split_column' = {options.split_column!r}: no such column in "
                        f"{table.name} (columns: {', '.join(table.columns) or 'none'})")  # fmt: skip
    media_root = _resolve(base, options.media_root) if options.media_root else default_root
    data_dir = Path(cfg.dir).expanduser()
    recipe = Recipe(subset, columns, _labels(options, columns, where), options.split_column, options.split,
                    media_root, cfg.seed, cfg.image_size, cfg.num_frames, data_dir / "files-clips")  # fmt: skip
    params = {
        "version": VERSION,
        "subset": subset,
        "options": options.model_dump(mode="json"),
        "columns": [[c.name, c.kind, c.target] for c in columns],
        "content": table.key,
        "media": media_key(table, columns, media_root),
        "media_root": str(media_root),
        "seed": cfg.seed,
        "image_size": cfg.image_size,
        "num_frames": cfg.num_frames,
    }
    return _cached(data_dir, table, recipe, params)


def cache_dir_name(subset: str, params: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    return f"files-v{VERSION}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', subset)[:40]}-{digest}"


def _cached(data_dir: Path, table: Table, recipe: Recipe, params: dict[str, Any]) -> Loaded:
    from mtl_bench.data.sources.cache import build_once, content_fingerprint, write_subsets

    def write(tmp: Path) -> None:
        from mtl_bench.data.sources.files.build import build

        key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
        dsd, skipped, notes = build(table, recipe, key)
        report = {"skipped": {"counts": skipped.counts, "examples": skipped.examples}, "notes": notes}
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
        write_subsets(tmp, {"data": dsd}, content_fingerprint({recipe.subset: dsd}), params)  # fingerprint.txt last

    return _read(build_once(data_dir / cache_dir_name(recipe.subset, params), write, "files"), recipe.subset)


def _read(path: Path, subset: str) -> Loaded:
    import datasets

    from mtl_bench.data.sources.cache import FINGERPRINT_FILE, quiet_progress

    try:
        with quiet_progress():
            dsd = datasets.load_from_disk(str(path / "data"))
        report = json.loads((path / REPORT_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError) as err:
        raise UserError(f"files cache {str(path)!r} is damaged ({err}); delete that directory to rebuild it") from err
    skipped = Skipped(report["skipped"]["counts"], report["skipped"]["examples"])
    fingerprint = (path / FINGERPRINT_FILE).read_text().strip()
    return Loaded({subset: dsd}, fingerprint, {subset: skipped} if skipped.counts else {}, report["notes"])
