"""One generic name -> builder registry used for every pluggable axis (tasks types, encoders, fusion, ...).

Registry names use hyphens; the module that registers a name is that name with underscores
(``cross_attention.py`` registers ``cross-attention``).

Registries are lazy: a package declares its built-in names with the module that registers each one
(``Registry("sharing", builtins={"hard": "mtl_bench.sharing.hard", ...})``), so names are known, listed and checked
("did you mean") without importing torch; a module is imported the first time one of its names is fetched with
``get``. The declaration is the one list of built-in names: a built-in module that registers an undeclared name, or
fails to register a declared one, is an error the moment it is imported. Other modules (plugins) may ``register``
names directly, or ``declare`` them with their module to stay lazy too.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator, Mapping
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

    ``builtins`` maps each built-in name to the module that registers it when imported (see the module docstring).
    """

    def __init__(self, kind: str, builtins: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._modules: dict[str, str] = {}  # declared name -> module that registers it when imported
        self._builtin_modules: set[str] = set()  # modules that may register declared names only
        for name, module in (builtins or {}).items():
            self.declare(name, module)
        self._builtin_modules = set(self._modules.values())

    def declare(self, name: str, module: str) -> None:
        """Make ``name`` known without importing anything: ``module`` is imported (and registers it) on ``get``."""
        if name in self._modules or name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._modules[name] = module

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            module = getattr(obj, "__module__", None)
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if name in self._modules and self._modules[name] != module:
                raise ValueError(f"{self.kind} {name!r} is registered twice: {module} registers the name that "
                                 f"{self._modules[name]} declares")
            if name not in self._modules and module in self._builtin_modules:
                raise ValueError(f"{module} registers {self.kind} {name!r}, which its package's Registry(..., "
                                 "builtins=...) does not declare: add it there (names are known without importing)")
            self._items[name] = obj
            if isinstance(obj, type):
                obj.registry_name = name  # type: ignore[attr-defined]  (lets an instance name itself in errors)
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The builder registered as ``name``, importing its declared module first if needed."""
        if name not in self._items and name in self._modules:
            importlib.import_module(self._modules[name])
            if name not in self._items:
                raise ImportError(f"{self._modules[name]} is declared to register {self.kind} {name!r} but did not")
        if name not in self._items:
            raise UserError(f"unknown {self.kind} {name!r}: {did_you_mean(name, self.names())}")
        return self._items[name]

    def check(self, name: str) -> None:
        """A UserError with a did-you-mean hint for an unknown name; imports nothing."""
        if name not in self:
            raise UserError(f"unknown {self.kind} {name!r}: {did_you_mean(name, self.names())}")

    def load_all(self) -> dict[str, T]:
        """Every name with its builder, importing every declared module (what listings by class attribute need)."""
        return {name: self.get(name) for name in self.names()}

    def declared_modules(self) -> dict[str, str]:
        """Declared name -> the module that registers it (a copy)."""
        return dict(self._modules)

    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._modules))

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
