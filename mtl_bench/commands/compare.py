"""``mtl-bench compare``: run a grid of configurations over several seeds and tabulate them side by side.

Each cell x seed is an ordinary run (results.json, checkpoint, an MLflow child run under one parent run) in
``DIR/runs/<cell>/seed<k>``; a rerun skips every run whose results.json exists for the same resolved config, and
continues a run that was stopped (SIGTERM, SIGINT, a crash) from its last epoch checkpoint, in the same MLflow run,
as ``run --resume`` does; so the command that continues a stopped compare is the same command.
Single-task cells run first, so every other run of the same seed finds its baseline for Delta-p / Delta-m.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl_bench.commands.run import run, validate
from mtl_bench.config.grid import STRATEGY_KEYS, parse_grid, plan  # config work only: cli.py checks a grid first
from mtl_bench.config.schema import RunConfig
from mtl_bench.errors import UserError
from mtl_bench.results import baselines
from mtl_bench.results.comparisons import Statistics
from mtl_bench.results.io import read_results, write_json_atomic
from mtl_bench.results.schema import Results
from mtl_bench.training.disk import check_writable
from mtl_bench.training.signals import Stopped, handle_stops, later


def _done(path: Path, cfg: RunConfig) -> Results | None:
    """The results of an earlier run into ``path`` with the same resolved config, if any (a results.json that does
    not fit the results schema, or whose config no longer validates, is not reused: that run is made again)."""
    results_file = path / "results.json"
    if not results_file.is_file():
        return None
    try:  # through the schema, so a config field added later with its default still matches an older run
        results = read_results(results_file)
        same = RunConfig.model_validate(results.config) == cfg
    except (UserError, ValueError):
        return None
    return results if same else None


def _stopped_midway(path: Path, cfg: RunConfig) -> bool:
    """Whether ``path`` holds an unfinished run of the same config with an epoch checkpoint to continue from."""
    from mtl_bench.training.resume import CHECKPOINTS, LAST, RESULTS, resume_point

    if (path / RESULTS).exists() or not (path / CHECKPOINTS / f"{LAST}.ckpt").is_file():
        return False
    try:
        resume_point(cfg.model_dump(mode="json"), path)
    except UserError:  # other settings, or no run-state.json: start that run again
        return False
    return True


def _describe_stop(stop: Stopped, index: int, total: int, cell: str | None, seed: int) -> None:
    """Which run was training, and that the same command continues: finished runs are reused, the stopped one
    resumes after its last finished epoch (or starts again when it had none)."""
    if cell is None:
        stop.where, how = "after all runs finished, while writing the tables", f"all {total} runs are reused"
    elif stop.epochs is None:  # between two runs
        stop.where = f"at run {index} of {total} ({cell}, seed {seed}), outside its training"
        how = "finished runs are reused"
    else:
        done = stop.epochs[0]
        stop.where = f"in run {index} of {total} ({cell}, seed {seed}) {stop.where}"
        how = "finished runs are reused, " + (f"this one continues after epoch {done}" if done else
                                              "this one starts again")
    stop.advice = f"continue with the same command ({how})"
    stop.add_resume = False


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
    statistics: Statistics | None = None,
) -> tuple[Any, list[Path]]:
    """Run (or reuse) every cell x seed, then write compare.csv / compare.md / compare.png into the output dir,
    with the paired comparisons of ``statistics`` (default: each cell against single-task) in compare.md, paired.csv
    and power.csv and the Pareto front in compare_front.png; with ``submit``, also one leaderboard submission per
    cell (all its seeds) as ``submissions/<cell>.json``.

    SIGTERM or SIGINT raises ``Stopped`` naming the run (cell, seed) that was training; the parent MLflow run and
    that run's are marked KILLED.
    """
    with handle_stops():
        return _compare(suite, grid_items, seeds, profile, sets, config_file, output_dir, tracking_uri,
                        baselines_dir, submit, statistics or Statistics())


@dataclass
class _Progress:
    """The run in progress, for the line a stop signal prints; ``cell`` None once every run has finished."""

    index: int = 0
    cell: str | None = ""
    seed: int = 0


def _compare(
    suite: str,
    grid_items: list[str],
    seeds: int,
    profile: str,
    sets: list[str] | None,
    config_file: str | None,
    output_dir: str | Path | None,
    tracking_uri: str | None,
    baselines_dir: str | Path | None,
    submit: bool,
    statistics: Statistics,
) -> tuple[Any, list[Path]]:
    from mtl_bench.tracking.tracker import default_tracking_uri

    out = Path(output_dir) if output_dir is not None else Path("runs") / suite / "compare"
    runs = plan(suite, parse_grid(grid_items), seeds, profile, list(sets or []), config_file)
    _check_plan(runs, out, grid_items, statistics.baseline)
    check_writable(out)
    out.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri or default_tracking_uri()
    with later():  # the parent run and compare_run.json exist together
        parent = _parent(uri, suite, out)
    root = Path(baselines_dir) if baselines_dir is not None else None
    progress = _Progress()
    try:
        collected = _run_all(runs, out, uri, root, parent.run_id, progress)
        progress.cell = None  # every run finished: the tables are being written
        frame, written = _tables(_with_late_deltas(collected, root), grid_items, out, submit, statistics)
        for path in written:
            parent.log_artifact(path)
    except Stopped as stop:
        parent.finish("KILLED")
        _describe_stop(stop, progress.index, len(runs), progress.cell, progress.seed)
        raise
    except BaseException:
        parent.finish("KILLED")
        raise
    parent.finish("FINISHED")
    return frame, written


def _run_all(runs: list[tuple[str, RunConfig]], out: Path, uri: str, root: Path | None, parent_run_id: str,
             progress: _Progress) -> list[tuple[str, Results]]:
    """(cell, results) of every run of the plan, in its order: reused when done, continued when stopped midway."""
    collected = []
    for index, (cell, cfg) in enumerate(runs, start=1):
        progress.index, progress.cell, progress.seed = index, cell, cfg.seed
        path = out / "runs" / cell / f"seed{cfg.seed}"
        results = _done(path, cfg)
        midway = results is None and _stopped_midway(path, cfg)
        status = "running"
        if results is not None:
            status = "done before, reused"
        elif midway:
            status = "continuing from its last epoch checkpoint"
        print(f"[{index}/{len(runs)}] {cell} seed {cfg.seed}: {status}", flush=True)
        if results is None:
            results = run(cfg, path, uri, root, parent_run_id=parent_run_id, resume=midway)
        collected.append((cell, results))
    return collected


def _with_late_deltas(collected: list[tuple[str, Results]], root: Path | None) -> list[tuple[str, Results]]:
    """Runs made before their baseline existed get their delta now (for the table; their results.json stays)."""
    done = []
    for cell, results in collected:
        if results.delta is None and (found := baselines.load(results, root)) is not None:
            results = results.model_copy(update={"delta": baselines.delta_against(results, *found)})
        done.append((cell, results))
    return done


def _row_name(cell: str, config: dict[str, Any], grid_items: list[str]) -> str:
    """A cell's row: named by sharing/fusion/weighting, or by the grid's values when it varies anything else."""
    from mtl_bench.results.table import config_label

    return config_label(config) if set(parse_grid(grid_items)) <= STRATEGY_KEYS else cell


def _check_plan(runs: list[tuple[str, RunConfig]], out: Path, grid_items: list[str], baseline: str | None) -> None:
    """Every run can go into ``out``, and --baseline names a cell of the grid (as the plan or the table names it),
    before anything runs."""
    for _, cfg in runs:
        validate(cfg, out)
    names = {n for cell, cfg in runs for n in (cell, _row_name(cell, cfg.model_dump(mode="json"), grid_items))}
    if baseline is not None and baseline not in names:
        raise UserError(f"--baseline {baseline!r}: not a cell of this grid (cells: {', '.join(sorted(names))})")


def _tables(collected: list[tuple[str, Results]], grid_items: list[str], out: Path, submit: bool,
            statistics: Statistics) -> tuple[Any, list[Path]]:
    """compare.csv / .md / .png with the paired statistics, and with ``submit`` one submission per cell."""
    from mtl_bench.results.table import compare_frame, write_compare

    row_of = {id(results): _row_name(cell, results.config, grid_items) for cell, results in collected}
    frame = compare_frame([results for _, results in collected], label=lambda r: row_of[id(r)])
    frame = _statistics(frame, collected, grid_items, out, statistics)
    written = write_compare(frame, out)
    if submit:
        from mtl_bench.leaderboard.submission import make_submission, write_submission

        cell_dirs: dict[str, list[Path]] = {}
        for cell, results in collected:
            cell_dirs.setdefault(cell, []).append(out / "runs" / cell / f"seed{results.seed}")
        for name, dirs in cell_dirs.items():
            written.append(write_submission(out / "submissions" / f"{name}.json", make_submission(dirs)))
    return frame, written


def _statistics(frame: Any, collected: list[tuple[str, Results]], grid_items: list[str], out: Path,
                statistics: Statistics) -> Any:
    """Mean-rank CI and Pareto front from the runs' scores; paired comparisons and power from their predictions."""
    from mtl_bench.evaluation.rescore import run_scorers
    from mtl_bench.results.comparisons import add_paired
    from mtl_bench.results.ranking import add_rank_and_front

    run_dirs: dict[str, list[Path]] = {}
    per_seed: dict[str, dict[int, dict[str, float]]] = {}
    mains, single_task = {}, set()
    for cell, results in collected:
        row = _row_name(cell, results.config, grid_items)
        run_dirs.setdefault(row, []).append(out / "runs" / cell / f"seed{results.seed}")
        per_seed.setdefault(row, {})[results.seed] = {t: r.metrics[r.main_score] for t, r in results.tasks.items()}
        mains |= {t: (r.main_score, r.higher_is_better) for t, r in results.tasks.items()}
        if results.config["sharing"]["name"] == "single-task":
            single_task.add(row)
    names = {cell: _row_name(cell, results.config, grid_items) for cell, results in collected}
    baseline = names.get(statistics.baseline, statistics.baseline)
    single = baseline if baseline in single_task else (next(iter(single_task)) if len(single_task) == 1 else None)
    frame = add_rank_and_front(frame, per_seed, mains, single)
    if len(fingerprints := sorted({results.data_fingerprint for _, results in collected})) > 1:
        frame.attrs["paired_note"] = (f"No paired comparisons: the cells were tested on different data (fingerprints "
                                      f"{', '.join(fingerprints)}); pairing needs the same test items.")
        return frame
    started = time.perf_counter()
    frame = add_paired(frame, run_scorers(run_dirs), mains, baseline or single, single, statistics)
    print(f"paired statistics: {len(frame.attrs['paired'])} comparison(s) in {time.perf_counter() - started:.1f} s",
          flush=True)
    return frame
