"""pyproject.toml lists packages explicitly (tasks/ ships inside the wheel); the list must stay complete."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "mtl_bench").rglob("__init__.py")
    }
    assert found | {"mtl_bench.builtin_tasks"} == listed
