"""What the files source's modules share: the columns a subset's tasks read (``Column``), how to clean it
(``Recipe``) and the rows read from the data file(s) (``Table``).

The ground floor of ``files/``: it imports nothing from the source, so ``load.py`` (options, columns, cache) and
``build.py`` (reading and cleaning) both import it without importing each other back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Column:
    """One column the subset's tasks read, with what it must hold, and the first task field naming it."""

    name: str
    kind: str  # image | video (file paths), string, label (one class), tags (a list of classes)
    target: bool  # an empty value skips the row (targets); an empty text input is kept as ""
    task: str
    field: str  # "inputs.image", "target", ...


@dataclass
class Recipe:
    """What cleaning a subset needs besides the table; all of it but clip_cache is part of the cache key."""

    subset: str
    columns: list[Column]
    labels: dict[str, list[str]]  # label / tags column -> allowed names (absent: from the training split)
    split_column: str | None
    fractions: tuple[float, float, float]
    media_root: Path
    seed: int
    image_size: int
    num_frames: int
    clip_cache: Path | None


@dataclass
class Table:
    """Rows read from the data file(s) or a ``datasets`` dataset."""

    name: str  # the file names or dataset id, for messages
    key: str  # sha256 over the content (file bytes, or the datasets fingerprints)
    columns: list[str]  # columns present in every file
    rows: list[dict[str, Any]]
    where: list[str]  # per row: "row N" ("FILE row N" when there are several files), for examples
    splits: list[int] | None = None  # per row, the dataset's own split (a hub dataset with train/validation/test)
    malformed: list[str] = field(default_factory=list)  # examples of lines that are no JSON object
