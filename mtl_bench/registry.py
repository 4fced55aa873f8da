"""One generic name -> builder registry used for every pluggable axis (tasks types, encoders, fusion, ...).

Registry names use hyphens; the module that registers a name is that name with underscores
(``cross_attention.py`` registers ``cross-attention``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from mtl_bench.errors import UserError

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str]) -> str:
    """A short hint listing close matches (or all choices when none is close)."""
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "expected one of: " + ", ".join(sorted(choices))


class Registry(Generic[T]):
    """Maps names to builders. Duplicate names are errors; misses suggest close matches.

    >>> FRUIT: Registry[type] = Registry("fruit")
    >>> @FRUIT.register("apple")
    ... class Apple: ...
    >>> FRUIT.get("apple") is Apple
    True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            if isinstance(obj, type):
                obj.registry_name = name  # type: ignore[attr-defined]  (lets an instance name itself in errors)
            return obj

        return decorator

    def get(self, name: str) -> T:
        if name not in self._items:
            raise UserError(f"unknown {self.kind} {name!r}: {did_you_mean(name, self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
