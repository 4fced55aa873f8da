"""Lazy registries: names known without importing their modules, one declaration per built-in name, kept honest.

The built-in names of every pluggable axis are declared in the package's ``__init__`` with the module that
registers each; these tests import every module of every package and check that the declarations and the
registrations are the same, name for name and module for module.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from mtl_bench.errors import UserError
from mtl_bench.registry import Registry

PACKAGES = {
    "mtl_bench.sharing": "SHARINGS",
    "mtl_bench.fusion": "FUSIONS",
    "mtl_bench.weighting": "WEIGHTINGS",
    "mtl_bench.encoders": "ENCODERS",
    "mtl_bench.heads": "HEADS",
    "mtl_bench.tasks": "TASK_TYPES",
}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_declared_names_are_exactly_what_the_package_registers(package):
    registry: Registry = getattr(importlib.import_module(package), PACKAGES[package])
    declared = registry.declared_modules()
    # importing every module of the package: one registering an undeclared name raises here
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{info.name}")
    registered = {name: obj.__module__ for name, obj in registry._items.items() if obj.__module__.startswith(package)}
    assert registered == declared
    assert registry.names() == sorted(declared)
    for name, module in declared.items():
        assert registry.get(name).__module__ == module


def _toy_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> None:
    """``toyreg_<name>`` on sys.path: a module registering into ``tests.test_registry.FRUIT_<name>``."""
    (tmp_path / f"toyreg_{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_names_are_known_and_checked_without_importing(tmp_path, monkeypatch):
    fruit: Registry = Registry("fruit", builtins={"apple": "toyreg_apple", "pear": "toyreg_apple"})
    monkeypatch.setitem(sys.modules, "toyreg_holder", type(sys)("toyreg_holder"))
    sys.modules["toyreg_holder"].FRUIT = fruit
    _toy_package(tmp_path, monkeypatch, "apple", "from toyreg_holder import FRUIT\n\n"
                 "@FRUIT.register('apple')\nclass Apple: ...\n\n@FRUIT.register('pear')\nclass Pear: ...\n")
    assert fruit.names() == ["apple", "pear"] and "pear" in fruit and "plum" not in fruit
    fruit.check("apple")
    with pytest.raises(UserError, match=r"^unknown fruit 'appel': did you mean 'apple'\?$"):
        fruit.check("appel")
    assert "toyreg_apple" not in sys.modules  # nothing above imported the module
    assert fruit.get("pear").__name__ == "Pear" and fruit.get("pear").registry_name == "pear"
    assert "toyreg_apple" in sys.modules
    monkeypatch.delitem(sys.modules, "toyreg_apple")


def test_a_builtin_module_may_register_only_declared_names(tmp_path, monkeypatch):
    fruit: Registry = Registry("fruit", builtins={"apple": "toyreg_rogue"})
    monkeypatch.setitem(sys.modules, "toyreg_holder", type(sys)("toyreg_holder"))
    sys.modules["toyreg_holder"].FRUIT = fruit
    _toy_package(tmp_path, monkeypatch, "rogue", "from toyreg_holder import FRUIT\n\n"
                 "@FRUIT.register('apple')\nclass Apple: ...\n\n@FRUIT.register('quince')\nclass Quince: ...\n")
    with pytest.raises(ValueError, match="toyreg_rogue registers fruit 'quince', which .* does not declare"):
        fruit.get("apple")
    monkeypatch.delitem(sys.modules, "toyreg_rogue", raising=False)


def test_a_declared_module_that_does_not_register_its_name_is_an_error(tmp_path, monkeypatch):
    fruit: Registry = Registry("fruit", builtins={"apple": "toyreg_empty"})
    _toy_package(tmp_path, monkeypatch, "empty", "")
    with pytest.raises(ImportError, match="toyreg_empty is declared to register fruit 'apple' but did not"):
        fruit.get("apple")
    monkeypatch.delitem(sys.modules, "toyreg_empty", raising=False)


def test_plugins_register_or_declare_new_names_but_not_builtin_ones():
    fruit: Registry = Registry("fruit", builtins={"apple": "toyreg_never_imported"})

    @fruit.register("plum")  # a plugin registering directly (its module is not a built-in one)
    class Plum: ...

    fruit.declare("fig", "toyreg_fig_plugin")  # or lazily, by module
    assert fruit.names() == ["apple", "fig", "plum"] and fruit.get("plum") is Plum
    with pytest.raises(ValueError, match="'apple' is registered twice"):
        fruit.register("apple")(type("Apple", (), {}))
    with pytest.raises(ValueError, match="'plum' is registered twice"):
        fruit.declare("plum", "elsewhere")
    with pytest.raises(ValueError, match="'plum' is registered twice"):
        fruit.register("plum")(Plum)


def test_importing_the_registries_and_the_catalog_imports_no_torch():
    """What the CLI's early checks import: every registry face, the task catalog's schema pass and the config."""
    code = (
        "import sys\n"
        "import mtl_bench.sharing, mtl_bench.fusion, mtl_bench.weighting, mtl_bench.encoders, mtl_bench.heads\n"
        "import mtl_bench.tasks.catalog as c, mtl_bench.config.check, mtl_bench.config.grid, mtl_bench.config.student\n"
        "c.check_suite_name('ecommerce')\n"
        "print(sorted(m for m in ('torch', 'lightning', 'mlflow', 'torchmetrics', 'pandas', 'datasets')"
        " if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
