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


def test_every_requested_extra_is_published_under_that_exact_name():
    """pip 23.2 (what `python3 -m venv` brings on Python 3.11) matches extras without normalising them: asking for
    ``torchjd[quadprog_projector]`` when torchjd publishes ``quadprog-projector`` installs nothing and only warns.
    So every ``pkg[extra]`` we request must be spelled exactly as the installed distribution's metadata spells it."""
    from importlib.metadata import PackageNotFoundError, metadata

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requested = [*project["dependencies"], *(r for reqs in project["optional-dependencies"].values() for r in reqs)]
    checked = 0
    for text in requested:
        req = Requirement(text)
        if not req.extras or req.name == "mtl-bench":
            continue
        try:
            published = set(metadata(req.name).get_all("Provides-Extra") or [])
        except PackageNotFoundError:  # an optional extra not installed here
            continue
        assert req.extras <= published, f"{text}: {sorted(req.extras - published)} not in {sorted(published)}"
        checked += 1
    assert checked >= 2  # torchjd's quadprog-projector (dependencies) and cagrad, nash-mtl (solvers)
