"""The comparison table of ``mtl-bench compare``: one row per cell (sharing × fusion × weighting), over seeds.

Input is a list of runs' ``Results`` (``results/schema.py``). Scores are the test-split main score of every task,
Δp / Δm against the single-task baseline of the same seed (``results/scores.py``), the mean rank of the cells, and the
run cost. Every mean over seeds comes with a Student-t 95% confidence half-width in a column named ``"<column> ci95"``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from mtl_bench.results.comparisons import PAIRED_COLUMNS, PowerLine, paired_markdown, power_markdown
from mtl_bench.results.io import write_bytes_atomic, write_text_atomic
from mtl_bench.results.ranking import RANK_HIGH, RANK_LOW, front_markdown, front_png
from mtl_bench.results.schema import Results
from mtl_bench.results.scores import Directions, delta_m, delta_p, mean_ci95, mean_rank

AXES = ("sharing", "fusion", "weighting")
CI = " ci95"  # suffix of the confidence half-width column of a mean column
DELTAS = ("delta_p", "delta_m")
# Cost columns, mean over seeds; flops_per_sample is stored per task and summed over tasks.
COSTS = ("params", "trainable_params", "flops_per_sample", "step_ms", "peak_memory_mb", "train_seconds",
         "backward_passes")
_COUNTS = {"rank", "seeds", "params", "trainable_params", "flops_per_sample", "backward_passes"}  # shown as integers
_LABELS = {"delta_p": "Δp % ↑", "delta_m": "Δm % ↓", "mean_rank": "mean rank ↓", "mean_main": "mean main score ↑"}
LEGEND = (
    "Δp: mean over tasks of the mean relative improvement over the task's metrics vs. single-task training of the "
    "same seed, % (higher is better; LibMTL, Maninis et al. 2019). Δm: mean relative change over all metrics, signed "
    "so that lower is better, % (Nash-MTL, Navon et al. 2022). Mean rank: of the cells on each task's main score, "
    "1 = best. ± is the Student-t 95% confidence interval over seeds."
)


def cell_label(results: Results) -> str:
    """``sharing/fusion/weighting``, then ``axis={options json}`` for every axis whose options are not empty.

    Options are compared as written in the config (its default is ``{}``), keys sorted, so the same options always
    give the same label: ``hard/early/ew weighting={"alpha":1.5}``.
    """
    return config_label(results.config)


def config_label(config: Mapping[str, Any]) -> str:
    """``cell_label`` of a resolved config (a run's ``config`` as JSON)."""
    label = "/".join(str(config[axis]["name"]) for axis in AXES)
    options = [
        f"{axis}={json.dumps(config[axis]['options'], sort_keys=True, separators=(',', ':'))}"
        for axis in AXES
        if config[axis].get("options")
    ]
    return " ".join([label, *options])


def _cost(results: Results, field: str) -> float | None:
    """A cost field as a number; ``flops_per_sample`` (per task) summed over tasks, None when it has no task."""
    value = getattr(results.cost, field)
    if isinstance(value, Mapping):
        return float(sum(value.values())) if value else None
    return float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _seed_deltas(
    results: Results, baselines: Mapping[int, Any] | None, directions: Directions | None, label: str
) -> tuple[float, float, list[str]] | None:
    """(Δp, Δm, skipped) of one run, or None when its seed has no baseline (nor a stored delta, without baselines)."""
    if baselines is None:
        stored = results.delta
        return None if stored is None else (stored.delta_p, stored.delta_m, list(stored.skipped))
    if results.seed not in baselines:
        return None
    method = {task: r.metrics for task, r in results.tasks.items()}
    base = {task: m for task, m in baselines[results.seed].items() if task in method}
    try:
        p, m = delta_p(method, base, directions or {}), delta_m(method, base, directions or {})
    except ValueError as exc:
        raise ValueError(f"cell {label!r}, seed {results.seed}: {exc}") from None
    return p.value, m.value, p.skipped


def _cells(results_list: Sequence[Results], label: Callable[[Results], str]) -> dict[str, list[Results]]:
    """The runs of each cell, cells in order of first appearance; one suite, each seed once per cell."""
    suites = sorted({r.suite for r in results_list})
    if len(suites) > 1:
        raise ValueError(f"results of several suites cannot be compared in one table: {', '.join(suites)}")
    cells: dict[str, list[Results]] = {}
    for results in results_list:
        name = label(results)
        runs = cells.setdefault(name, [])
        if any(r.seed == results.seed for r in runs):
            raise ValueError(f"cell {name!r} has seed {results.seed} twice")
        runs.append(results)
    return cells


def _main_scores(results_list: Sequence[Results]) -> dict[str, tuple[str, bool]]:
    """task -> (main score, higher is better), which every run must agree on."""
    mains: dict[str, tuple[str, bool]] = {}
    for results in results_list:
        for task, r in results.tasks.items():
            main = (r.main_score, r.higher_is_better)
            if mains.setdefault(task, main) != main:
                raise ValueError(f"task {task!r}: main score {main} in one run, {mains[task]} in another")
    return mains


class _Seeds(NamedTuple):
    missing: set[int]  # seeds without a baseline (nor a stored delta)
    skipped: set[str]  # "task/metric" left out of Δ for a zero baseline


def _cell_row(
    name: str, runs: list[Results], mains: dict[str, tuple[str, bool]], baselines: Mapping[int, Any] | None,
    directions: Directions | None, seeds: _Seeds,
) -> dict[str, Any]:
    """One cell's row: mean and CI over its seeds of every main score, of Δp and Δm, and the mean costs."""
    config = runs[0].config
    row: dict[str, Any] = {"cell": name, **{axis: config[axis]["name"] for axis in AXES}, "seeds": len(runs)}
    for task, (main, _) in mains.items():
        values = [r.tasks[task].metrics[main] if task in r.tasks else math.nan for r in runs]
        row[f"{task}/{main}"], row[f"{task}/{main}{CI}"] = mean_ci95(values)
    deltas: dict[str, list[float]] = {d: [] for d in DELTAS}
    for results in runs:
        seed_deltas = _seed_deltas(results, baselines, directions, name)
        if seed_deltas is None:
            seeds.missing.add(results.seed)
            seed_deltas = (math.nan, math.nan, [])
        deltas["delta_p"].append(seed_deltas[0])
        deltas["delta_m"].append(seed_deltas[1])
        seeds.skipped.update(seed_deltas[2])
    for d in DELTAS:
        row[d], row[f"{d}{CI}"] = mean_ci95(deltas[d])
    for field in COSTS:
        values = [v for r in runs if (v := _cost(r, field)) is not None]
        if values:
            row[field] = float(np.mean(values))
    return row


def _ranked_frame(rows: list[dict[str, Any]], mains: dict[str, tuple[str, bool]]) -> pd.DataFrame:
    """The rows with their mean rank, columns in order, sorted best first."""
    ranks = mean_rank(
        {row["cell"]: {task: row[f"{task}/{main}"] for task, (main, _) in mains.items()} for row in rows},
        {task: hib for task, (_, hib) in mains.items()},
    )
    for row in rows:
        row["mean_rank"] = ranks[row["cell"]]
    score_columns = [c for task, (main, _) in mains.items() for c in (f"{task}/{main}", f"{task}/{main}{CI}")]
    head = ["cell", *AXES, "seeds", *score_columns, *[c for d in DELTAS for c in (d, f"{d}{CI}")], "mean_rank"]
    frame = pd.DataFrame(rows)
    frame = frame[head + [c for c in COSTS if c in frame.columns]]
    if frame["delta_p"].notna().any():
        frame = frame.sort_values(["delta_p", "mean_rank", "cell"], ascending=[False, True, True], na_position="last")
    else:
        frame = frame.sort_values(["mean_rank", "cell"], na_position="last")
    return frame.reset_index(drop=True)


def compare_frame(
    results_list: Sequence[Results],
    baselines: Mapping[int, Mapping[str, Mapping[str, float]]] | None = None,
    directions: Directions | None = None,
    label: Callable[[Results], str] = cell_label,
) -> pd.DataFrame:
    """One row per cell, sorted best first: by Δp (descending) when any cell has one, else by mean rank.

    ``baselines`` maps seed -> single-task scores ``{task: {metric: value}}``; each run is scored against the baseline
    of its own seed, over the tasks it has, with ``directions`` ``{task: {metric: higher_is_better}}`` covering every
    metric. ``label`` names the row of a run (default: its cell). A run whose seed has no baseline gets NaN, which
    makes its cell's Δp / Δm NaN. With ``baselines=None``
    the Δ stored in each run's results (``delta``) is used where present. ``frame.attrs`` holds
    ``missing_baseline_seeds`` (sorted seeds without a baseline), ``skipped_metrics`` ("task/metric" with a zero
    baseline), ``higher_is_better`` (score column -> direction) and ``suite``.
    """
    if not results_list:
        raise ValueError("compare_frame needs at least one run's results")
    if baselines is not None and directions is None:
        raise ValueError("compare_frame: baselines given without metric directions")
    cells = _cells(results_list, label)
    mains = _main_scores(results_list)
    seeds = _Seeds(set(), set())
    frame = _ranked_frame([_cell_row(name, runs, mains, baselines, directions, seeds) for name, runs in cells.items()],
                          mains)
    frame.attrs = {
        "suite": results_list[0].suite,
        "missing_baseline_seeds": sorted(seeds.missing),
        "skipped_metrics": sorted(seeds.skipped),
        "higher_is_better": {f"{t}/{main}": hib for t, (main, hib) in mains.items()}
        | {"delta_p": True, "delta_m": False, "mean_rank": False},
    }
    return frame


def _mean_columns(frame: pd.DataFrame) -> list[str]:
    """Columns with a CI partner, in order; the main scores are these minus Δp and Δm."""
    return [c for c in frame.columns if not c.endswith(CI) and f"{c}{CI}" in frame.columns]


def _number(value: float, decimals: int) -> str:
    return f"{value:,.0f}" if decimals == 0 else f"{value:.{decimals}f}"


def _decimals(column: pd.Series) -> int:
    """One precision per column, from its largest magnitude: 4 decimals below 10, 2 below 1000, else none."""
    largest = pd.to_numeric(column, errors="coerce").abs().max()
    if math.isnan(largest) or largest < 10:
        return 4
    return 2 if largest < 1000 else 0


def _format(column: str, row: pd.Series, decimals: int) -> str:
    value = row[column]
    if isinstance(value, bool | np.bool_):
        return "✓" if value else ""
    if not _is_number(value) and not isinstance(value, np.number):
        return str(value).replace("|", "\\|")
    value = float(value)
    if math.isnan(value):
        return "n/a"
    if column in _COUNTS and value == round(value):
        return f"{int(value):,}"
    text = _number(value, decimals)
    if f"{column}{CI}" in row.index:
        ci = float(row[f"{column}{CI}"])
        text += " (1 seed)" if math.isnan(ci) and row.get("seeds") == 1 else f" ± {_number(ci, decimals)}"
    if column == "mean_rank" and not math.isnan(float(row.get(RANK_LOW, math.nan))):
        text += f" [{_number(float(row[RANK_LOW]), decimals)}, {_number(float(row[RANK_HIGH]), decimals)}]"
    return text


def display_cells(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Headers (with ↑/↓) and formatted rows ("mean ± ci", one precision per column) of ``columns``."""
    directions = frame.attrs.get("higher_is_better", {})
    headers = [_LABELS.get(c, f"{c} {'↑' if directions[c] else '↓'}" if c in directions else c) for c in columns]
    decimals = {c: _decimals(frame[c]) for c in columns}
    marks = frame.attrs.get("marks", {})  # {row name: {column: ▲ / ▼ / =}}, paired verdicts against a baseline
    rows = []
    for _, row in frame.iterrows():
        mine = marks.get(row.get("cell", row.get("name")), {})
        rows.append([_format(c, row, decimals[c]) + (f" {mine[c]}" if c in mine else "") for c in columns])
    return headers, rows


def markdown_table(frame: pd.DataFrame, columns: Sequence[str], text_columns: Sequence[str] = ("cell",)) -> list[str]:
    headers, rows = display_cells(frame, columns)
    rule = "|" + "|".join("---" if c in text_columns else "---:" for c in columns) + "|"
    return ["| " + " | ".join(headers) + " |", rule] + ["| " + " | ".join(cells) + " |" for cells in rows]


def compare_markdown(frame: pd.DataFrame) -> str:
    """The table as markdown, "mean ± ci" per cell, all-NaN columns and the per-axis names left out, plus a legend."""
    hidden = {*AXES, RANK_LOW, RANK_HIGH}
    columns = [c for c in frame.columns if c not in hidden and not c.endswith(CI) and frame[c].notna().any()]
    title = f"# mtl-bench compare: {frame.attrs['suite']}" if "suite" in frame.attrs else "# mtl-bench compare"
    lines = [title, "", *markdown_table(frame, columns), "", LEGEND]
    if RANK_LOW in frame.columns and frame[RANK_LOW].notna().any():
        lines.append("Mean rank [low, high]: 95% percentile bootstrap interval over the seeds every cell has.")
    if frame.attrs.get("marks"):
        lines.append(f"▲ / ▼ / = beside a mean: better / worse than {frame.attrs['baseline']} / tie, in the paired "
                     "test below (Holm-adjusted).")
    if frame.attrs.get("missing_baseline_seeds"):
        seeds = ", ".join(str(s) for s in frame.attrs["missing_baseline_seeds"])
        lines.append(f"No single-task baseline for seed(s) {seeds}: Δp and Δm of their cells are n/a.")
    if frame.attrs.get("skipped_metrics"):
        lines.append(f"Left out of Δ (baseline value 0): {', '.join(frame.attrs['skipped_metrics'])}.")
    lines += _statistics_sections(frame)
    return "\n".join(lines) + "\n"


def _statistics_sections(frame: pd.DataFrame) -> list[str]:
    """The Pareto front line, the paired comparisons and the power lines, where the frame carries them."""
    lines = [line for line in front_markdown(frame) if line]
    if frame.attrs.get("paired_note"):
        lines.append(frame.attrs["paired_note"])
    paired = frame.attrs.get("paired")
    for section in (paired_markdown(pd.DataFrame(paired) if paired else None),
                    power_markdown([PowerLine(**p) for p in frame.attrs.get("power", [])])):
        if section:
            lines += ["", *section]
    return lines


def compare_png(frame: pd.DataFrame) -> bytes:
    """Horizontal bars, one panel per task main score and one for Δp (when any), mean with 95% CI error bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    directions = frame.attrs.get("higher_is_better", {})
    panels = [c for c in _mean_columns(frame) if c not in DELTAS or (c == "delta_p" and frame[c].notna().any())]
    fig = Figure(figsize=(3.2 * len(panels) + 2.5, 0.45 * len(frame) + 1.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    y = np.arange(len(frame))
    for ax, column in zip(axes, panels, strict=True):
        means = frame[column].to_numpy(dtype=float)
        errors = frame[f"{column}{CI}"].to_numpy(dtype=float)
        ok, ci = ~np.isnan(means), ~np.isnan(means) & ~np.isnan(errors)  # no error bar for one seed
        ax.barh(y[ok], means[ok], color="tab:orange" if column == "delta_p" else "tab:blue")
        ax.errorbar(means[ci], y[ci], xerr=errors[ci], fmt="none", ecolor="black", capsize=3)
        arrow = f" {'↑' if directions[column] else '↓'}" if column in directions else ""
        ax.set_title(_LABELS.get(column, column + arrow), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        if column == "delta_p":
            ax.axvline(0.0, color="black", linewidth=0.8)
    axes[0].set_yticks(y, labels=list(frame["cell"]), fontsize=8)
    axes[0].invert_yaxis()  # best first, as in the table
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def write_compare(frame: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """compare.csv (full precision), compare.md and compare.png in ``out_dir``, each written atomically; with paired
    statistics in ``frame.attrs`` also paired.csv, power.csv and compare_front.png (the Pareto front)."""
    out_dir = Path(out_dir)
    written = [
        write_text_atomic(out_dir / "compare.csv", frame.to_csv(index=False)),
        write_text_atomic(out_dir / "compare.md", compare_markdown(frame)),
        write_bytes_atomic(out_dir / "compare.png", compare_png(frame)),
    ]
    if "paired" in frame.attrs:
        paired = pd.DataFrame(frame.attrs["paired"], columns=list(PAIRED_COLUMNS))
        written.append(write_text_atomic(out_dir / "paired.csv", paired.to_csv(index=False)))
        power = pd.DataFrame(frame.attrs.get("power", []), columns=list(PowerLine._fields))
        written.append(write_text_atomic(out_dir / "power.csv", power.to_csv(index=False)))
    if (png := front_png(frame)) is not None:
        written.append(write_bytes_atomic(out_dir / "compare_front.png", png))
    return written
