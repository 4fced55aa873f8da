"""What every data source returns: the loaded subsets (``Loaded``) and the rows left out (``Skipped``).

The ground floor of ``mtl_bench.data.sources``: it imports no source, so the face (``SOURCES``, ``load_sources``)
and every source's own modules can import it without an import circle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mtl_bench.config.schema import DataConfig
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


Loader = Callable[[list[TaskSpec], DataConfig], Loaded]  # (specs of every task using the source, data config) -> data
