"""The package's layout rules, read from the source with ``ast`` (nothing is imported):

- no import circle among ``mtl_bench`` modules;
- ``mtl_bench/core/`` is the ground floor: it imports nothing from ``mtl_bench`` but ``mtl_bench.core`` and
  ``mtl_bench.errors``;
- ``mtl_bench.commands`` (what the CLI calls) is the top floor: only the rooms of commands import it, that is
  ``mtl_bench/commands/``, ``mtl_bench/cli.py``, the sweep command (``mtl_bench/sweeps/``: a trial is a run) and
  the leaderboard command (``mtl_bench/leaderboard/``).

Every ``import`` and ``from ... import`` counts, at any depth (inside functions, under ``if TYPE_CHECKING``), as the
house check (``../shared/tools/house_check.py``) counts them: a function-level import hides a circle from the
interpreter, not from the reader. For circles, like the house check, importing a package's face (its
``__init__.py``: registries, declared names) is not an edge, since registering through the face is the intended
pattern; the floor rules count faces too.
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mtl_bench"


class Edge:
    """``source`` imports ``target`` at ``where`` (path:line)."""

    def __init__(self, source: str, target: str, where: str) -> None:
        self.source, self.target, self.where = source, target, where


def modules(pkg: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file; a package's ``__init__.py`` is named after the package."""
    out = {}
    for path in sorted(pkg.rglob("*.py")):
        parts = path.relative_to(pkg.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(pkg: Path = PACKAGE) -> list[Edge]:
    """Every import of one of the package's modules by another, resolved to the module (or face) it loads."""
    mods = modules(pkg)

    def owner(name: str) -> str:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    edges = []
    for mod, path in mods.items():
        is_face = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's own package, up level - 1 more
                    anchor = mod.split(".")[: len(mod.split(".")) - node.level + (1 if is_face else 0)]
                    base = ".".join([*anchor, *([base] if base else [])])
                # ``from a.b import c`` loads module a.b.c if there is one, else takes c from a.b (its face); like
                # ``import a.b.c``, it also runs the faces above, which are not counted as edges
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for name in names:
                target = owner(name) if name.split(".")[0] == pkg.name else ""
                if target and target != mod:
                    edges.append(Edge(mod, target, f"{path.relative_to(pkg.parent)}:{node.lineno}"))
    return edges


def circles(edges: list[Edge], faces: set[str]) -> list[tuple[list[Edge], set[str]]]:
    """Per strongly connected group of modules (edges into faces left out): one shortest circle, as its edges, and
    the whole group."""
    graph: dict[str, dict[str, Edge]] = {}
    for e in edges:
        if e.target not in faces:
            graph.setdefault(e.source, {}).setdefault(e.target, e)
            graph.setdefault(e.target, {})

    def reach(start: str) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    reachable = {m: reach(m) for m in graph}
    found, done = [], set()
    for start in sorted(graph):
        group = {m for m in reachable[start] if start in reachable[m]}
        if start in done or len(group) < 2:
            continue
        done |= group
        back: dict[str, Edge] = {}  # breadth-first from start, within the group, back to start
        queue = deque([start])
        while queue:
            node = queue.popleft()
            if start in graph[node]:
                path = [graph[node][start]]
                while node != start:
                    path.append(back[node])
                    node = back[node].source
                found.append((path[::-1], group))
                break
            for nxt, edge in sorted(graph[node].items()):
                if nxt in group and nxt not in back and nxt != start:
                    back[nxt] = edge
                    queue.append(nxt)
    return found


def describe(circle: list[Edge], group: set[str]) -> str:
    names = " -> ".join([circle[0].source, *(e.target for e in circle)])
    line = f"import circle: {names} ({', '.join(f'{e.where} imports {e.target}' for e in circle)})"
    others = sorted(group - {e.source for e in circle})
    return line + (f"; {', '.join(others)} are on circles with them too" if others else "")


def within(name: str, *packages: str) -> bool:
    """``name`` is one of ``packages`` or a module inside one."""
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_no_import_circle():
    faces = {name for name, path in modules().items() if path.name == "__init__.py"}
    found = [describe(*c) for c in circles(imports(), faces)]
    assert not found, "\n".join(found)


def test_core_imports_only_core_and_errors():
    allowed = ["mtl_bench.core", "mtl_bench.errors"]
    wrong = [f"{e.where}: mtl_bench.core imports {e.target} (the ground floor may import only "
             f"{' and '.join(allowed)})" for e in imports()
             if within(e.source, "mtl_bench.core") and not within(e.target, *allowed)]
    assert not wrong, "\n".join(wrong)


COMMAND_ROOMS = ("mtl_bench.commands", "mtl_bench.cli", "mtl_bench.sweeps", "mtl_bench.leaderboard")


def test_only_the_rooms_of_commands_import_commands():
    wrong = [f"{e.where}: {e.source} imports {e.target} (only {', '.join(COMMAND_ROOMS)} may)"
             for e in imports() if within(e.target, "mtl_bench.commands") and not within(e.source, *COMMAND_ROOMS)]
    assert not wrong, "\n".join(wrong)


def _pkg(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / "mtl_bench" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "mtl_bench" / name).write_text(text)
    return tmp_path / "mtl_bench"


def test_the_checker_finds_function_level_relative_and_face_imports(tmp_path):
    """A hand-made package: a -> b at top level, b -> c inside a function, c -> a relatively; d imports the face of
    sub, whose __init__ imports d back (a face, so no circle); e imports sub.f by ``from mtl_bench.sub import f``."""
    pkg = _pkg(tmp_path, {
        "__init__.py": "",
        "a.py": "import mtl_bench.b\n",
        "b.py": "def f():\n    from mtl_bench.c import x\n",
        "c.py": "from . import a\n",
        "d.py": "from mtl_bench.sub import REGISTRY\n",
        "e.py": "from mtl_bench.sub import f\n",
        "sub/__init__.py": "import mtl_bench.d\nREGISTRY = {}\n",
        "sub/f.py": "from ..c import x\nfrom .. import e\n",
    })
    edges = imports(pkg)
    pairs = {(e.source, e.target) for e in edges}
    assert pairs == {
        ("mtl_bench.a", "mtl_bench.b"), ("mtl_bench.b", "mtl_bench.c"), ("mtl_bench.c", "mtl_bench.a"),
        ("mtl_bench.d", "mtl_bench.sub"), ("mtl_bench.e", "mtl_bench.sub.f"),
        ("mtl_bench.sub", "mtl_bench.d"), ("mtl_bench.sub.f", "mtl_bench.c"), ("mtl_bench.sub.f", "mtl_bench.e"),
    }
    found = circles(edges, faces={"mtl_bench", "mtl_bench.sub"})
    assert [describe(*c) for c in found] == [
        "import circle: mtl_bench.a -> mtl_bench.b -> mtl_bench.c -> mtl_bench.a (mtl_bench/a.py:1 imports "
        "mtl_bench.b, mtl_bench/b.py:2 imports mtl_bench.c, mtl_bench/c.py:1 imports mtl_bench.a)",
        "import circle: mtl_bench.e -> mtl_bench.sub.f -> mtl_bench.e (mtl_bench/e.py:1 imports mtl_bench.sub.f, "
        "mtl_bench/sub/f.py:2 imports mtl_bench.e)",
    ]


@pytest.mark.parametrize("name", ["errors", "core/other"])
def test_the_ground_floor_rule_allows_core_and_errors(tmp_path, name):
    pkg = _pkg(tmp_path, {"__init__.py": "", "errors.py": "", "core/__init__.py": "", "core/other.py": "",
                          "core/types.py": f"from mtl_bench.{name.replace('/', '.')} import x\n"})
    assert {(e.source, e.target) for e in imports(pkg)} == {("mtl_bench.core.types",
                                                             f"mtl_bench.{name.replace('/', '.')}")}
