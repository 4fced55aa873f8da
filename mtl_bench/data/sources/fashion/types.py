"""What the fashion source's modules share: its subsets, its processing VERSION and the raw table (``Catalogue``).

The ground floor of ``fashion/``: it imports nothing from the source, so ``load.py`` (which opens the table and
manages the cache) and ``build.py`` (which processes it) both import it without importing each other back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

VERSION = 1  # bump when processing changes the output for the same input (build.py, its helpers)
SUBSETS = ("attributes", "captioning", "classification", "video")


@dataclass
class Catalogue:
    """The raw table, wherever it came from."""

    name: str  # the CSV file or dataset id, for messages
    key: str  # sha256 of the content the processed data depend on
    rows: list[dict[str, Any]]
    malformed: list[int]  # CSV line numbers that could not be parsed
    read_image: Callable[[dict[str, Any]], bytes | None]  # None: missing
