"""``mtl-bench compare``: run a grid of configurations over several seeds and tabulate them side by side.

Each cell x seed is an ordinary run (results.json, checkpoint, an MLflow child run under one parent run) in
``DIR/runs/<cell>/seed<k>``; a rerun skips every run whose results.json exists for the same resolved config.
Single-task cells run first, so every other run of the same seed finds its baseline for Delta-p / Delta-m.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from mtl_bench.config.load import build_config
from mtl_bench.config.schema import RunConfig
from mtl_bench.errors import UserError
from mtl_bench.results import baselines
from mtl_bench.results.io import write_json_atomic
from mtl_bench.training.run import check_writable, run, validate

STRATEGIES = ("sharing", "fusion", "weighting")


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """``["sharing=hard,soft", "model.dim=64,128"]`` -> {"sharing.name": ["hard", "soft"], "model.dim": [...]}."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not choices:
            raise UserError(f"--grid {item!r}: expected KEY=V1,V2,... e.g. --grid sharing=hard,soft")
        key = key.strip()
        key = f"{key}.name" if key in STRATEGIES else key
        if key in grid:
            raise UserError(f"--grid {item!r}: {key} is given twice")
        grid[key] = choices
    return grid


STRATEGY_KEYS = {f"{part}{suffix}" for part in ("sharing", "fusion", "weighting") for suffix in ("", ".name")}


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


def _done(path: Path, cfg: RunConfig) -> dict[str, Any] | None:
    """The results of an earlier run into ``path`` with the same resolved config, if any."""
    results_file = path / "results.json"
    if not results_file.is_file():
        return None
    results = json.loads(results_file.read_text())
    try:  # through the schema, so a config field added later with its default still matches an older run
        same = RunConfig.model_validate(results.get("config")) == cfg
    except ValueError:
        return None
    return results if same else None


def _parent(uri: str, suite: str, out: Path) -> Any:
    """The compare's parent MLflow run: reopened on a rerun into the same folder, else created."""
    from mtl_bench.tracking.tracker import EXPERIMENT_PREFIX, Tracker

    state = out / "compare_run.json"
    run_id = json.loads(state.read_text()).get("run_id") if state.is_file() else None
    tracker = Tracker(
        uri, f"{EXPERIMENT_PREFIX}/{suite}", run_name=f"compare {out.name}", tags={"mtl-bench.kind": "compare"},
        run_id=run_id,
    )
    write_json_atomic(state, {"run_id": tracker.run_id, "tracking_uri": uri})
    return tracker


def compare(
    suite: str,
    grid_items: list[str],
    seeds: int = 3,
    profile: str = "default",
    sets: list[str] | None = None,
    config_file: str | None = None,
    output_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    baselines_dir: str | Path | None = None,
    submit: bool = False,
) -> tuple[Any, list[Path]]:
    """Run (or reuse) every cell x seed, then write compare.csv / compare.md / compare.png into the output dir;
    with ``submit``, also one leaderboard submission per cell (all its seeds) as ``submissions/<cell>.json``."""
    from mtl_bench.results.table import compare_frame, write_compare
    from mtl_bench.tracking.tracker import default_tracking_uri

    out = Path(output_dir) if output_dir is not None else Path("runs") / suite / "compare"
    runs = plan(suite, parse_grid(grid_items), seeds, profile, list(sets or []), config_file)
    for _, cfg in runs:
        validate(cfg, out)
    check_writable(out)
    out.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri or default_tracking_uri()
    parent = _parent(uri, suite, out)
    root = Path(baselines_dir) if baselines_dir is not None else None
    collected = []
    cell_of: dict[int, str] = {}  # id(results) -> its grid cell
    cell_dirs: dict[str, list[Path]] = {}
    try:
        for index, (cell, cfg) in enumerate(runs, start=1):
            path = out / "runs" / cell / f"seed{cfg.seed}"
            cell_dirs.setdefault(cell, []).append(path)
            results = _done(path, cfg)
            status = "done before, reused" if results is not None else "running"
            print(f"[{index}/{len(runs)}] {cell} seed {cfg.seed}: {status}", flush=True)
            if results is None:
                results = run(cfg, path, uri, root, parent_run_id=parent.run_id)
            collected.append(results)
            cell_of[id(results)] = cell
    except BaseException:
        parent.finish("KILLED")
        raise
    for results in collected:  # runs made before their baseline existed get their delta now
        if results.get("delta") is None and (found := baselines.load(results, root)) is not None:
            results["delta"] = baselines.delta_against(results, *found)
    # rows are named by sharing/fusion/weighting, or by the grid's values when it varies anything else
    by_strategy = set(parse_grid(grid_items)) <= STRATEGY_KEYS
    frame = compare_frame(collected) if by_strategy else compare_frame(collected, label=lambda r: cell_of[id(r)])
    written = write_compare(frame, out)
    if submit:
        from mtl_bench.leaderboard.submission import make_submission, write_submission

        for cell, dirs in cell_dirs.items():
            written.append(write_submission(out / "submissions" / f"{cell}.json", make_submission(dirs)))
    for path in written:
        parent.log_artifact(path)
    parent.finish("FINISHED")
    return frame, written
