"""``compare``'s grid: ``--grid KEY=V1,V2`` items -> every cell's resolved config, validated up front.

Config work only (no torch), so the CLI checks a whole grid before any heavy import; ``commands/compare.py`` runs it.
"""

from __future__ import annotations

import itertools

from mtl_bench.config.load import build_config
from mtl_bench.config.schema import RunConfig
from mtl_bench.errors import UserError

COMPONENTS = ("sharing", "fusion", "weighting")  # the three strategy choices a compare grid crosses
STRATEGY_KEYS = {f"{part}{suffix}" for part in COMPONENTS for suffix in ("", ".name")}


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """``["sharing=hard,soft", "model.dim=64,128"]`` -> {"sharing.name": ["hard", "soft"], "model.dim": [...]}."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not choices:
            raise UserError(f"--grid {item!r}: expected KEY=V1,V2,... e.g. --grid sharing=hard,soft")
        key = key.strip()
        key = f"{key}.name" if key in COMPONENTS else key
        if key in grid:
            raise UserError(f"--grid {item!r}: {key} is given twice")
        grid[key] = choices
    return grid


def cell_name(assignment: dict[str, str]) -> str:
    """A folder-safe name of a cell: its grid values joined, e.g. ``hard-early-ew``."""
    return "-".join(str(v).replace("/", "_") for v in assignment.values()) or "default"


def plan(
    suite: str, grid: dict[str, list[str]], seeds: int, profile: str, sets: list[str], config_file: str | None
) -> list[tuple[str, RunConfig]]:
    """Every (cell name, resolved config) of the grid x seeds, single-task cells first; all validated up front."""
    if seeds < 1:
        raise UserError(f"--seeds {seeds}: expected at least 1")
    keys = list(grid)
    runs = []
    for values in itertools.product(*grid.values()):
        assignment = dict(zip(keys, values, strict=True))
        cell_sets = [*sets, *(f"{k}={v}" for k, v in assignment.items())]
        for seed in range(seeds):
            cfg = build_config(suite, profile, flags={"seed": seed}, sets=cell_sets, config_file=config_file)
            runs.append((cell_name(assignment), cfg))
    runs.sort(key=lambda item: item[1].sharing.name != "single-task")  # stable: grid order otherwise
    return runs
