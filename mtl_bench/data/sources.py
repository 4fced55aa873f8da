"""Data sources: where a task's dataset comes from. Each source is a loader registered by name in ``SOURCES``.

A task YAML names its source in ``dataset.source`` (default ``builtin``, the generated shop) and passes the source's
own settings in ``dataset.options``. A loader receives the specs of every task using it and the run's data config,
and returns a ``Loaded``: ``{subset name: datasets.DatasetDict with train/validation/test splits}``, a content
fingerprint, and a report of the rows it skipped (missing or corrupt files, unknown labels), which the run prints
and stores. A dataset that does not match its YAML (a missing column, a wrong type) is a UserError at load time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtl_bench.config.schema import DataConfig
from mtl_bench.registry import Registry
from mtl_bench.tasks.spec import TaskSpec


@dataclass
class Skipped:
    """Rows left out of one task's data, by reason, with a few examples (row ids or file names) per reason."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, example: str, keep: int = 3) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < keep:
            shown.append(example)


@dataclass
class Loaded:
    subsets: dict[str, Any]  # subset name -> datasets.DatasetDict (train / validation / test)
    fingerprint: str  # sha256 hex of the content
    skipped: dict[str, Skipped] = field(default_factory=dict)  # subset name -> rows skipped while loading
    notes: list[str] = field(default_factory=list)  # other facts worth reporting (classes folded, duplicates dropped)


Loader = Callable[[list[TaskSpec], DataConfig], Loaded]
SOURCES: Registry[Loader] = Registry("data source")


@SOURCES.register("builtin")
def load_builtin(specs: list[TaskSpec], cfg: DataConfig) -> Loaded:
    """The generated shop's subsets (generated once, then read from the Arrow cache)."""
    from mtl_bench.data.cache import load_shop  # heavy import (datasets), only when data is needed

    sizes = {k: tuple(v) for k, v in cfg.sizes.items()} or None
    data_dir = Path(cfg.dir).expanduser()
    subsets, fingerprint = load_shop(
        data_dir, seed=cfg.seed, sizes=sizes, image_size=cfg.image_size, num_frames=cfg.num_frames
    )
    return Loaded(subsets, fingerprint)


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


from mtl_bench.data import fashion  # noqa: E402,F401  (registers the "fashion" source)
from mtl_bench.data import files as files  # noqa: E402,F401  (registers the "files" source)
