"""The contract every registered data source keeps, checked on a tiny valid input per source.

Each source returns a ``Loaded`` whose subsets are DatasetDicts with exactly train/validation/test, holding every
column the task specs read (``inputs`` and ``target``); a 64-hex content fingerprint that is the same when loaded
again (from the cache, and rebuilt in a fresh cache folder) and changes when one input byte changes; and ``Skipped``
counts equal to the bad rows planted in the input. A new source is covered by adding one entry to ``CASES``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import pytest

from mtl_bench.config.schema import DataConfig
from mtl_bench.data.sources import SOURCES
from mtl_bench.data.sources.fashion.rows import TITLE
from mtl_bench.data.sources.types import Loaded
from mtl_bench.tasks.catalog import suite_tasks
from mtl_bench.tasks.spec import TaskSpec
from tests.data import test_fashion, test_files
from tests.data.test_shop import SMALL

SPLITS = ["train", "validation", "test"]


@dataclass
class Case:
    """A tiny valid input for one source: the tasks reading it, the data config, and what was planted in it."""

    specs: list[TaskSpec]
    cfg: DataConfig
    planted: dict[str, dict[str, int]]  # subset -> skip reason -> rows planted for it
    change_one_byte: Callable[[], DataConfig]  # changes one input byte; returns the config to load it with


def _flip_byte(path: Path, old: bytes, new: bytes) -> None:
    """Replace the single occurrence of ``old`` in the file with ``new``, one byte different, same length."""
    raw = path.read_bytes()
    assert raw.count(old) == 1 and len(old) == len(new) and sum(a != b for a, b in zip(old, new, strict=True)) == 1
    path.write_bytes(raw.replace(old, new))


def builtin_case(tmp_path: Path) -> Case:
    """The ecommerce suite on the generated shop at small sizes; the shop's input is its parameters (the seed)."""
    cfg = DataConfig(dir=str(tmp_path / "cache"), sizes=SMALL, image_size=16, num_frames=4)
    return Case(suite_tasks("ecommerce"), cfg, {}, lambda: cfg.model_copy(update={"seed": cfg.seed + 1}))


def fashion_case(tmp_path: Path) -> Case:
    """The fashion suite on 30 real rows plus a missing, a corrupt and a duplicate photo (test_fashion's folder)."""
    folder = test_fashion.tiny_folder(tmp_path / "tiny")
    specs = suite_tasks("fashion")
    cfg = test_fashion.data_cfg(folder, tmp_path / "cache")
    title = test_fashion._real_rows(4)[3][TITLE].encode()  # rows 0-2 have copies among the planted rows
    changed = title[:-1] + (b"z" if title[-1:] != b"z" else b"y")

    def change() -> DataConfig:
        _flip_byte(folder / "styles.csv", title, changed)
        return cfg

    planted = {spec.dataset.subset: test_fashion.PLANTED for spec in specs}
    return Case(specs, cfg, planted, change)


def files_case(tmp_path: Path) -> Case:
    """A CSV of 20 products (test_files' rows) and one more row whose image file is missing."""
    rows = test_files.product_rows(tmp_path)
    rows.append(dict(rows[0], id=20, image_path="img/missing.jpg"))
    path = test_files.write_rows(tmp_path / "products.csv", rows)
    spec = test_files.spec({"data_files": "products.csv", "split_column": "split"})
    cfg = test_files.cfg(tmp_path, tmp_path)

    def change() -> DataConfig:
        _flip_byte(path, b"product 3 in", b"product 3 on")
        return cfg

    return Case([spec], cfg, {spec.dataset.subset: {"file missing": 1}}, change)


CASES: dict[str, Callable[[Path], Case]] = {"builtin": builtin_case, "fashion": fashion_case, "files": files_case}
MARKS = {"fashion": test_fashion.needs_real}  # the fashion rows are copied from the real data folder


def _planted(loaded: Loaded) -> dict[str, dict[str, int]]:
    return {subset: dict(skipped.counts) for subset, skipped in loaded.skipped.items() if skipped.counts}


def test_every_case_is_a_registered_source():
    assert set(CASES) <= set(SOURCES.names()), f"CASES names unregistered sources: {set(CASES) - set(SOURCES)}"


@pytest.mark.parametrize("name", [pytest.param(n, marks=MARKS.get(n, ())) for n in SOURCES.names()])
def test_source_keeps_the_contract(name: str, tmp_path: Path) -> None:
    if name not in CASES:
        pytest.fail(f"data source {name!r} is registered but has no tiny input: add a case for it to CASES in "
                    f"{Path(__file__).name}")  # fmt: skip
    case = CASES[name](tmp_path)
    load = SOURCES.get(name)
    loaded = load(case.specs, case.cfg)
    assert isinstance(loaded, Loaded)
    for spec in case.specs:
        dsd = loaded.subsets[spec.dataset.subset]
        assert isinstance(dsd, datasets.DatasetDict) and list(dsd) == SPLITS, (spec.name, list(dsd))
        wanted = {*spec.inputs.values(), spec.target}
        for split in SPLITS:
            assert wanted <= set(dsd[split].column_names), (spec.name, split, dsd[split].column_names)
            assert len(dsd[split]) > 0, (spec.name, split)
    assert re.fullmatch(r"[0-9a-f]{64}", loaded.fingerprint)
    assert _planted(loaded) == case.planted

    again = load(case.specs, case.cfg)  # from the cache
    rebuilt = load(case.specs, case.cfg.model_copy(update={"dir": str(tmp_path / "fresh-cache")}))
    assert again.fingerprint == rebuilt.fingerprint == loaded.fingerprint
    assert _planted(again) == _planted(rebuilt) == case.planted

    changed = load(case.specs, case.change_one_byte())
    assert re.fullmatch(r"[0-9a-f]{64}", changed.fingerprint) and changed.fingerprint != loaded.fingerprint
