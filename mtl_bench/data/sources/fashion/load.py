"""The ``fashion`` data source: Fashion Product Images (Myntra catalogue, Kaggle) as four subsets of real products.

``data.path`` is a folder holding ``styles.csv`` and ``images/<id>.jpg`` (an ``image`` column of relative paths is
used when present), or anything ``datasets.load_dataset`` opens with the same columns and an ``image`` column of type
``Image`` (a hub id, a local dataset folder). Rows are cleaned once, then cached as Arrow under ``data.dir`` in
``fashion-v{VERSION}-{hash}``, the hash covering the table's content (and the referenced image files' sizes) and the
processing parameters; like the shop cache it is written to a temporary sibling and renamed into place.

Clean-up, reported in ``Loaded.skipped`` (per subset) and ``Loaded.notes``: rows with a missing or undecodable
image, malformed CSV lines, repeated ids and duplicate photos (identical bytes; the first is kept) are skipped;
article types and tag values seen fewer than ``min_class_count`` times are folded into ``other`` or dropped
(``rare_classes``). One split serves every subset, so a product is in the same split for every task; it is grouped
by normalised title (``rows.normalise_title``), so colour variants of one product never straddle splits.

Subsets (every one has an ``id`` column; images uint8 [S, S, 3], clips uint8 [T, S, S, 3]):
- ``classification``: image, title (article-type words masked, ``rows.mask_title``) -> label (articleType)
- ``captioning``: image -> caption (the product title, lower case)
- ``attributes``: image -> tags (``colour:``, ``gender:``, ``season:``, ``usage:``); no title, which names the colour
  and gender in about 90% of rows
- ``video``: frames (camera motion over the photo, ``images.py``) -> tags (the attribute tags + ``motion:``),
  motion

Source options (``dataset.options`` of the task YAML; tasks sharing the source must agree, as they share one cache):
``min_class_count`` (20), ``rare_classes`` (fold | drop), ``split`` (train, validation, test fractions; 0.7 0.15 0.15).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mtl_bench.config.schema import DataConfig
from mtl_bench.data.sources import SOURCES
from mtl_bench.data.sources.fashion.rows import REQUIRED, parse_styles
from mtl_bench.data.sources.fashion.types import SUBSETS, VERSION, Catalogue
from mtl_bench.data.sources.types import Loaded, Skipped
from mtl_bench.errors import UserError
from mtl_bench.registry import did_you_mean
from mtl_bench.tasks.spec import TaskSpec

OPTIONS: dict[str, Any] = {"min_class_count": 20, "rare_classes": "fold", "split": [0.7, 0.15, 0.15]}
REPORT_FILE = "report.json"


def _check_option(key: str, value: Any) -> str | None:
    """What is wrong with one option value, or None."""
    if key == "min_class_count" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        return "expected an integer >= 1"
    if key == "rare_classes" and value not in ("fold", "drop"):
        return "expected 'fold' (into 'other') or 'drop'"
    if key == "split":
        ok = (
            isinstance(value, list)
            and len(value) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value)
        )
        if not ok or abs(sum(value) - 1.0) > 1e-6:
            return "expected three positive fractions (train, validation, test) summing to 1"
    return None


def resolve_options(specs: list[TaskSpec]) -> dict[str, Any]:
    """The source options: defaults, overridden by the tasks' ``dataset.options``, which must agree across tasks."""
    chosen: dict[str, tuple[Any, str]] = {}
    for spec in sorted(specs, key=lambda s: s.name):
        for key, value in sorted(spec.dataset.options.items()):
            where = f"task {spec.name}: field 'dataset.options.{key}'"
            if key not in OPTIONS:
                raise UserError(f"{where}: unknown fashion option; {did_you_mean(key, list(OPTIONS))}")
            if problem := _check_option(key, value):
                raise UserError(f"{where} = {value!r}: {problem}")
            if key in chosen and chosen[key][0] != value:
                raise UserError(
                    f"{where} = {value!r} differs from task {chosen[key][1]} ({chosen[key][0]!r}); the "
                    "fashion tasks share one processed copy, so their options must agree"
                )
            chosen[key] = (value, spec.name)
    return {**OPTIONS, **{k: v for k, (v, _) in chosen.items()}}


def _local(folder: Path) -> Catalogue:
    csv_path = folder / "styles.csv"
    raw = csv_path.read_bytes()
    table = parse_styles(raw.decode("utf-8-sig", errors="replace"), str(csv_path))
    h = hashlib.sha256(raw)

    def image_path(row: dict[str, Any]) -> Path:  # relative to the folder (an absolute path is kept as it is)
        return folder / (row.get("image") or f"images/{row['id']}.jpg")

    def read(row: dict[str, Any]) -> bytes | None:
        try:
            return image_path(row).read_bytes()
        except OSError:
            return None

    for row in table.rows:  # image sizes in the key: a replaced photo invalidates the cache (cheap: one stat each)
        path = image_path(row)
        h.update(f"{row['id']}:{path.stat().st_size if path.is_file() else -1};".encode())
    return Catalogue(str(csv_path), h.hexdigest(), table.rows, table.malformed, read)


def _hub(path: str) -> Catalogue:
    import datasets

    try:
        loaded = datasets.load_dataset(path)
    except Exception as err:  # noqa: BLE001  (datasets raises many types: not found, offline, bad files)
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(
            f"data.path = {path!r}: not a folder with styles.csv, and `datasets.load_dataset` failed: {reason}"
        ) from None
    parts = [loaded[s] for s in sorted(loaded)] if isinstance(loaded, datasets.DatasetDict) else [loaded]
    ds = datasets.concatenate_datasets(parts)
    for column in (*REQUIRED, "image"):
        if column not in ds.column_names:
            raise UserError(f"dataset {path!r}: no column {column!r} (columns: {', '.join(ds.column_names)})")
    if not isinstance(ds.features["image"], datasets.Image):
        raise UserError(f"dataset {path!r}: column 'image' is {ds.features['image']}; expected an Image feature")
    images = ds.select_columns(["image"]).cast_column("image", datasets.Image(decode=False))
    rows = [{k: "" if v is None else str(v) for k, v in r.items()} for r in ds.remove_columns("image").to_list()]
    for i, row in enumerate(rows):
        row["_index"] = i

    def read(row: dict[str, Any]) -> bytes | None:
        entry = images[row["_index"]]["image"] or {}
        if entry.get("bytes"):
            return entry["bytes"]
        try:
            return Path(entry["path"]).read_bytes() if entry.get("path") else None
        except OSError:
            return None

    key = hashlib.sha256("|".join([path, *(p._fingerprint for p in parts)]).encode()).hexdigest()
    return Catalogue(path, key, rows, [], read)


def open_catalogue(path: str) -> Catalogue:
    """A folder with styles.csv; else a local dataset folder or hub id, through ``datasets.load_dataset``."""
    folder = Path(path).expanduser()
    if (folder / "styles.csv").is_file():
        return _local(folder)
    if path.startswith(("/", ".", "~")) and not folder.is_dir():  # a file system path, not a hub id
        raise UserError(f"data.path = {path!r}: no such folder; expected a folder with styles.csv and images/")
    return _hub(str(folder) if folder.is_dir() else path)


@SOURCES.register("fashion")
def load_fashion(specs: list[TaskSpec], cfg: DataConfig) -> Loaded:
    """The four fashion subsets (processed on first use, then read from the Arrow cache); see the module docstring."""
    options = resolve_options(specs)
    if not cfg.path:
        raise UserError(
            "the fashion tasks need the Fashion Product Images data: pass --set data.path=DIR (a folder "
            "with styles.csv and images/) or a dataset id"
        )
    catalogue = open_catalogue(cfg.path)
    params = {
        "version": VERSION,
        "content": catalogue.key,
        "seed": cfg.seed,
        "image_size": cfg.image_size,
        "num_frames": cfg.num_frames,
        **options,
    }
    loaded = _cached(Path(cfg.dir).expanduser(), catalogue, params)
    used = {spec.dataset.subset for spec in specs}
    return Loaded(
        loaded.subsets, loaded.fingerprint, {k: v for k, v in loaded.skipped.items() if k in used}, loaded.notes
    )


def cache_dir_name(params: dict[str, Any]) -> str:
    return f"fashion-v{VERSION}-{hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]}"


def _cached(data_dir: Path, catalogue: Catalogue, params: dict[str, Any]) -> Loaded:
    from mtl_bench.data.sources.cache import build_once, content_fingerprint, write_subsets

    def write(tmp: Path) -> None:
        from mtl_bench.data.sources.fashion.build import build  # heavy imports (datasets, PIL) only when building

        built = build(catalogue, params)
        report = {
            "skipped": {k: {"counts": v.counts, "examples": v.examples} for k, v in built.skipped.items()},
            "notes": built.notes,
        }
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
        write_subsets(tmp, built.subsets, content_fingerprint(built.subsets), params)  # fingerprint.txt last

    return _read(build_once(data_dir / cache_dir_name(params), write, "fashion"))


def _read(path: Path) -> Loaded:
    import datasets

    from mtl_bench.data.sources.cache import FINGERPRINT_FILE, quiet_progress

    try:
        with quiet_progress():
            subsets = {name: datasets.load_from_disk(str(path / name)) for name in SUBSETS}
        report = json.loads((path / REPORT_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError) as err:
        raise UserError(f"fashion cache {str(path)!r} is damaged ({err}); delete that directory to rebuild it") from err
    skipped = {k: Skipped(v["counts"], v["examples"]) for k, v in report["skipped"].items()}
    return Loaded(subsets, (path / FINGERPRINT_FILE).read_text().strip(), skipped, report["notes"])
