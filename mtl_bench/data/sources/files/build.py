"""Reading and cleaning for the ``files`` source: a data file's rows to one DatasetDict of fixed-size arrays.

Each row is checked in this order; the first check that fails skips the row, counted under its reason with a few
examples (``row N: detail``, N counting data rows from 1, the header not counted): ``malformed line`` (JSONL),
``empty target``, ``malformed tag list``, ``unknown split value`` (with ``split_column``), ``empty file path``,
``file missing``, ``image cannot be decoded``, ``video cannot be read``, then ``unknown label`` (not in ``labels``,
or without it not seen in the training split). A value of the wrong kind for its column (a list where one label is
expected, a number where tags or a file path are expected) is not a bad row but data that does not match the YAML:
a UserError naming the task, the field, the row and the value.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image, ImageOps

from mtl_bench.data.sources.arrow import to_dataset
from mtl_bench.data.sources.files.types import Column, Recipe, Table
from mtl_bench.data.sources.files.video import VideoReadError, read_clip, resize_crop
from mtl_bench.data.sources.types import Skipped
from mtl_bench.errors import UserError

SPLITS = ("train", "validation", "test")
SPLIT_NAMES = {"train": 0, "training": 0, "validation": 1, "val": 1, "valid": 1, "dev": 1, "test": 2}
TAGS_EXPECTED = 'tagging needs a list of tags per row: a JSON list (["a", "b"]) or an "a|b" string'


class _Skip(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail


# --- reading ------------------------------------------------------------------------------------------------------


def read_files(paths: list[Path]) -> Table:
    """CSV / TSV (all values strings), JSONL / JSON, or parquet, by suffix; several files are concatenated."""
    h = hashlib.sha256()
    rows: list[dict[str, Any]] = []
    where: list[str] = []
    malformed: list[str] = []
    common: list[str] | None = None
    for path in paths:
        raw = path.read_bytes()
        h.update(f"{path.name}:{len(raw)}:".encode() + raw)
        prefix = f"{path.name} row" if len(paths) > 1 else "row"
        columns, records = _parse(path, raw)
        common = columns if common is None else [c for c in common if c in columns]
        for n, record in enumerate(records, start=1):
            if isinstance(record, dict):
                rows.append(record)
                where.append(f"{prefix} {n}")
            else:
                malformed.append(f"{prefix} {n}")
    return Table(", ".join(p.name for p in paths), h.hexdigest(), common or [], rows, where, None, malformed)


def _parse(path: Path, raw: bytes) -> tuple[list[str], list[Any]]:
    """(columns, records) of one file; a record that is not a JSON object is returned as None."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(pa.BufferReader(raw))
        except (pa.ArrowException, OSError) as err:
            raise UserError(f"data file {str(path)!r}: not a readable parquet file ({err})") from None
        return table.column_names, table.to_pylist()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"data file {str(path)!r}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        records = [{k: v for k, v in r.items() if k is not None} for r in reader]
        return list(reader.fieldnames or []), records
    if suffix == ".json" and text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"data file {str(path)!r}: not valid JSON ({err})") from None
    else:  # .jsonl / .ndjson / .json: one object a line, blank lines ignored
        records = []
        for line in text.splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    records.append(None)
    columns = list(dict.fromkeys(k for r in records if isinstance(r, dict) for k in r))
    return columns, [r if isinstance(r, dict) else None for r in records]


def read_dataset(loaded: Any, name: str) -> Table:
    """Rows of a ``datasets`` Dataset or DatasetDict, all splits together, or only train / validation / test (kept
    as the splits) when the dataset has exactly one of each (``val``, ``dev``, ... count as validation)."""
    parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    own = {s: SPLIT_NAMES.get(s.lower()) for s in parts}
    keep_splits = sorted(v for v in own.values() if v is not None) == [0, 1, 2]
    if keep_splits:
        parts = {s: ds for s, ds in parts.items() if own[s] is not None}  # e.g. an "unsupervised" split: left out
    rows, where, splits, columns = [], [], [], None
    for split, ds in parts.items():
        for column, feature in ds.features.items():
            if isinstance(feature, datasets.Image):
                ds = ds.cast_column(column, datasets.Image(decode=False))  # {"bytes", "path"}: decoded by us
        columns = ds.column_names if columns is None else [c for c in columns if c in ds.column_names]
        for n, row in enumerate(ds.to_list(), start=1):
            rows.append(row)
            where.append(f"{split} row {n}")
            splits.append(own[split] if keep_splits else 0)
    key = hashlib.sha256("|".join([name, *(f"{s}:{ds._fingerprint}" for s, ds in parts.items())]).encode())
    return Table(name, key.hexdigest(), columns or [], rows, where, splits if keep_splits else None)


def media_key(table: Table, columns: list[Column], media_root: Path) -> str:
    """sha256 over every referenced media file's resolved path, size and mtime (cheap: one stat per file)."""
    h = hashlib.sha256()
    for row in table.rows:
        for col in columns:
            value = row.get(col.name)
            if isinstance(value, dict) and not value.get("bytes"):  # a datasets Image feature holding a path
                value = value.get("path")
            if col.kind in ("image", "video") and isinstance(value, str) and value.strip():
                path = media_root / value.strip()
                try:
                    stat = path.stat()
                    h.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns};".encode())
                except OSError:
                    h.update(f"{path}:missing;".encode())
    return h.hexdigest()


# --- values -------------------------------------------------------------------------------------------------------


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip())  # fmt: skip


def _wrong_kind(col: Column, where: str, value: Any, expected: str) -> UserError:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return UserError(f"task {col.task}: field {col.field!r} = {col.name!r}: {where} holds {shown}; {expected}")


def _label(col: Column, where: str, value: Any) -> str:
    if isinstance(value, (list, tuple, dict, np.ndarray)) or (
        isinstance(value, str) and value.strip().startswith("[") and _json_list(value) is not None
    ):
        raise _wrong_kind(col, where, value, "classification needs one label per row (lists are for type tagging)")
    return str(value).strip()


def _json_list(text: str) -> list | None:
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, list) else None


def _tags(col: Column, where: str, value: Any) -> list[str]:
    """A JSON list (a real list, or a string holding one) or an ``a|b|c`` string; duplicates dropped, order kept."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            parsed = _json_list(text)
            if parsed is None:
                raise _Skip("malformed tag list", f"{where}: {text[:40]}")
            value = parsed
        else:
            return list(dict.fromkeys(t.strip() for t in text.split("|") if t.strip()))
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise _wrong_kind(col, where, value, TAGS_EXPECTED)
    if any(isinstance(t, (list, tuple, dict)) or t is None for t in value):
        raise _Skip("malformed tag list", f"{where}: {str(list(value))[:40]}")
    return list(dict.fromkeys(str(t).strip() for t in value if str(t).strip()))


def _media(col: Column, where: str, value: Any, recipe: Recipe) -> np.ndarray:
    """Pixels of an image ([S, S, 3]) or clip ([T, S, S, 3]) named by a path (or given as bytes by a dataset)."""
    data = None
    if isinstance(value, dict):  # a datasets Image feature, not decoded: {"bytes", "path"}
        data, value = value.get("bytes"), value.get("path")
    if data is None and not isinstance(value, str | None):
        raise _wrong_kind(col, where, value, f"{col.field} needs a file path (relative to media_root)")
    if data is None and _is_empty(value):
        raise _Skip("empty file path", f"{where}: {col.name}")
    path = None if data is not None else recipe.media_root / value.strip()
    if path is not None and not path.is_file():
        raise _Skip("file missing", f"{where}: {value.strip()}")
    if col.kind == "video":
        if path is None:
            raise _wrong_kind(col, where, "<bytes>", "inputs.video needs a file path")
        try:
            return read_clip(path, recipe.num_frames, recipe.image_size, recipe.clip_cache)
        except VideoReadError:
            raise _Skip("video cannot be read", f"{where}: {value.strip()}") from None
    try:
        with Image.open(io.BytesIO(data) if path is None else path) as image:
            return resize_crop(ImageOps.exif_transpose(image), recipe.image_size)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise _Skip("image cannot be decoded", f"{where}: {value.strip() if path else '<bytes>'}") from None


def _clean(row: dict[str, Any], where: str, recipe: Recipe) -> tuple[dict[str, Any], int | None]:
    """({column: value}, split from the split column or None); raises _Skip for a bad row."""
    values: dict[str, Any] = {}
    for col in sorted(recipe.columns, key=lambda c: (not c.target, c.name)):  # targets first, then inputs
        value = row.get(col.name)
        if col.kind in ("image", "video"):
            continue
        if _is_empty(value):
            if col.target:
                raise _Skip("empty target", f"{where}: {col.name}")
            value = ""
        if col.kind == "label":
            values[col.name] = _label(col, where, value)
        elif col.kind == "tags":
            values[col.name] = _tags(col, where, value)
        elif isinstance(value, (list, tuple, dict, np.ndarray)):
            raise _wrong_kind(col, where, value, f"{col.field} needs text")
        else:
            values[col.name] = str(value)
    split = None
    if recipe.split_column:
        raw = row.get(recipe.split_column)
        split = SPLIT_NAMES.get(str(raw).strip().lower())
        if split is None:
            raise _Skip("unknown split value", f"{where}: {raw!r}")
    for col in recipe.columns:
        if col.kind in ("image", "video"):
            values[col.name] = _media(col, where, row.get(col.name), recipe)
    return values, split


# --- building -----------------------------------------------------------------------------------------------------


def seeded_split(keys: list[str], fractions: tuple[float, float, float], seed: int) -> list[int]:
    """Split index per row: rows ordered by a seeded hash of their content, then cut at the exact fractions.

    A row's place depends on its content, not its position, so reordering the file or adding rows keeps most rows
    where they were; with 3 rows or more, validation and test get at least one each.
    """
    n = len(keys)
    n_val, n_test = round(fractions[1] * n), round(fractions[2] * n)
    if n >= 3:
        n_val, n_test = max(1, n_val), max(1, n_test)
    order = sorted(range(n), key=lambda i: (hashlib.sha256(f"{seed}|{keys[i]}".encode()).digest(), i))
    split = [0] * n
    for rank, i in enumerate(order):
        split[i] = 2 if rank < n_test else 1 if rank < n_test + n_val else 0
    return split


def _row_key(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, default=lambda v: hashlib.sha256(v).hexdigest() if isinstance(
        v, bytes) else str(v))  # fmt: skip


def build(table: Table, recipe: Recipe, key: str) -> tuple[datasets.DatasetDict, Skipped, list[str]]:
    """Clean every row, split, check labels, and build the train/validation/test DatasetDict (`key`: the cache key)."""
    skipped = Skipped()
    for example in table.malformed:
        skipped.add("malformed line", example)
    kept: list[tuple[int, dict[str, Any], int | None]] = []
    for i, row in enumerate(table.rows):
        try:
            values, split = _clean(row, table.where[i], recipe)
        except _Skip as skip:
            skipped.add(skip.reason, skip.detail)
            continue
        kept.append((i, values, split if split is not None else table.splits[i] if table.splits else None))
    if recipe.split_column:
        how = f"from column {recipe.split_column!r}"
        splits = [s for _, _, s in kept]
    elif table.splits:
        how = "the dataset's own splits"
        splits = [s for _, _, s in kept]
    else:
        how = f"seeded by row content (data.seed {recipe.seed}, fractions {'/'.join(map(str, recipe.fractions))})"
        splits = seeded_split([_row_key(table.rows[i]) for i, _, _ in kept], recipe.fractions, recipe.seed)

    notes: list[str] = []
    names: dict[str, list[str]] = {}
    for col in recipe.columns:
        if col.kind in ("label", "tags"):
            given = recipe.labels.get(col.name)
            seen = {t for (_, v, _), s in zip(kept, splits, strict=True) if s == 0 for t in _as_list(v[col.name])}
            names[col.name] = list(given) if given is not None else sorted(seen)
            origin = "dataset.options.labels" if given is not None else "the training split"
            if len(names[col.name]) < 2:
                raise UserError(
                    f"task {col.task}: field {col.field!r} = {col.name!r}: {len(names[col.name])} "
                    f"{_noun(col)} in {origin} ({', '.join(names[col.name]) or 'none'}); need 2 or more"
                )
            notes.append(f"files {recipe.subset}: {col.name!r}: {len(names[col.name])} {_noun(col)} from {origin}")
    rows: list[tuple[dict[str, Any], int]] = []
    for (i, values, _), split in zip(kept, splits, strict=True):
        unknown = next((t for c in names for t in _as_list(values[c]) if t not in names[c]), None)
        if unknown is not None:
            skipped.add("unknown label", f"{table.where[i]}: {unknown!r}")
        else:
            rows.append((values, split))
    counts = [sum(1 for _, s in rows if s == k) for k in range(3)]
    if 0 in counts:
        problems = ", ".join(f"{n} {r}" for r, n in skipped.counts.items()) or "none"
        raise UserError(
            f"dataset subset {recipe.subset!r} ({table.name}): {'/'.join(map(str, counts))} usable train/validation/"
            f"test rows of {len(table.rows) + len(table.malformed)} (skipped: {problems}); every split needs rows"
        )
    notes.insert(0, f"files {recipe.subset}: {len(rows)} of {len(table.rows) + len(table.malformed)} rows kept from "
                    f"{table.name}; split {'/'.join(map(str, counts))} (train/validation/test), {how}")  # fmt: skip
    media = [c for c in recipe.columns if c.kind in ("image", "video")]
    if media:
        clips = f"; clips: {recipe.num_frames} evenly spaced frames" if any(c.kind == "video" for c in media) else ""
        shown = ", ".join(c.name for c in media)
        notes.append(f"files {recipe.subset}: {shown}: shorter side resized to {recipe.image_size} px, centre-cropped"
                     f"{clips}")  # fmt: skip
    return _datasets(rows, names, recipe, key), skipped, notes


def _as_list(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def _noun(col: Column) -> str:
    return "classes" if col.kind == "label" else "tags"


def _datasets(rows: list[tuple[dict[str, Any], int]], names: dict[str, list[str]], recipe: Recipe, key: str) -> Any:
    """The DatasetDict, with the same feature types as the built-in shop (so prepare.py reads it unchanged)."""
    size, frames = recipe.image_size, recipe.num_frames
    shapes = {"image": (size, size, 3), "video": (frames, size, size, 3)}
    features: dict[str, Any] = {}
    for col in sorted(recipe.columns, key=lambda c: c.name):
        if col.kind == "image":
            features[col.name] = datasets.Array3D(shapes["image"], "uint8")
        elif col.kind == "video":
            features[col.name] = datasets.Array4D(shapes["video"], "uint8")
        elif col.kind == "label":
            features[col.name] = datasets.ClassLabel(names=names[col.name])
        elif col.kind == "tags":
            features[col.name] = datasets.List(datasets.ClassLabel(names=names[col.name]))
        else:
            features[col.name] = datasets.Value("string")
    feats = datasets.Features(features)
    kinds = {c.name: c.kind for c in recipe.columns}
    ids = {name: {label: i for i, label in enumerate(labels)} for name, labels in names.items()}
    out = {}
    for index, split in enumerate(SPLITS):
        picked = [values for values, s in rows if s == index]
        cols: dict[str, Any] = {}
        for name, kind in kinds.items():
            column = [values[name] for values in picked]
            if kind in shapes:
                cols[name] = np.stack(column)
            elif kind == "label":
                cols[name] = [ids[name][v] for v in column]
            elif kind == "tags":
                cols[name] = [[ids[name][t] for t in v] for v in column]
            else:
                cols[name] = column
        out[split] = to_dataset(cols, feats, split, hashlib.sha256(f"{key}|{split}".encode()).hexdigest()[:32])
    return datasets.DatasetDict(out)
