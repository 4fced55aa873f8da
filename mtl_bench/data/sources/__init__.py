"""Data sources: where a task's dataset comes from. Each source is a loader registered by name in ``SOURCES``.

A task YAML names its source in ``dataset.source`` (default ``builtin``, the generated shop) and passes the source's
own settings in ``dataset.options``. A loader receives the specs of every task using it and the run's data config,
and returns a ``Loaded``: ``{subset name: datasets.DatasetDict with train/validation/test splits}``, a content
fingerprint, and a report of the rows it skipped (missing or corrupt files, unknown labels), which the run prints
and stores. A dataset that does not match its YAML (a missing column, a wrong type) is a UserError at load time.

Layout: ``types.py`` holds what every source returns (``Loaded``, ``Skipped``); ``cache.py`` and ``arrow.py`` the
Arrow cache, content fingerprint and dataset building they share; each built-in source is a sub-package whose
``load.py`` registers it (``builtin``: the generated shop, ``fashion``: Fashion Product Images, ``files``: your own
CSV / JSONL / parquet), declared here by module path so names are known without importing them (``registry.py``).
"""

from __future__ import annotations

import hashlib

from mtl_bench.config.schema import DataConfig
from mtl_bench.data.sources.types import Loaded, Loader
from mtl_bench.registry import Registry
from mtl_bench.tasks.spec import TaskSpec

SOURCES: Registry[Loader] = Registry("data source", builtins={
    name: f"mtl_bench.data.sources.{name}.load" for name in ("builtin", "fashion", "files")
})


def load_sources(specs: list[TaskSpec], cfg: DataConfig) -> Loaded:
    """Every source the tasks use, merged; one source keeps its own fingerprint, several get a combined one."""
    by_source: dict[str, list[TaskSpec]] = {}
    for spec in specs:
        by_source.setdefault(spec.dataset.source, []).append(spec)
    parts = {name: SOURCES.get(name)(group, cfg) for name, group in sorted(by_source.items())}
    if len(parts) == 1:
        return next(iter(parts.values()))
    merged = Loaded({}, hashlib.sha256("".join(f"{n}:{p.fingerprint};" for n, p in parts.items()).encode()).hexdigest())
    for part in parts.values():
        merged.subsets.update(part.subsets)
        merged.skipped.update(part.skipped)
        merged.notes += part.notes
    return merged
