"""A leaderboard's ranked table from its accepted submissions, as a rich terminal table, markdown, HTML or CSV.

One row per submission: mean ± 95% CI over seeds of every task's main score, Δp against the leaderboard's baseline
submission (mean over its seeds), the mean main score, the mean rank, and the cost columns the leaderboard names.
"""

from __future__ import annotations

import html
import math
from io import StringIO
from typing import Any

import numpy as np
import pandas as pd

from mtl_bench.errors import UserError
from mtl_bench.leaderboard.definition import LeaderboardSpec
from mtl_bench.leaderboard.submission import Submission
from mtl_bench.results.baselines import metric_directions
from mtl_bench.results.comparisons import PowerLine, paired_markdown, power_markdown
from mtl_bench.results.scores import mean_ci95
from mtl_bench.results.table import AXES, CI, compare_frame, display_cells, markdown_table

FORMATS = ("table", "md", "html", "csv")
TEXT = ("name", "submitted", *AXES)
SORT = {"delta_p": False, "mean_main": False, "mean_rank": True}  # aggregate -> ascending


def _baseline(spec: LeaderboardSpec, entries: list[Submission]) -> dict[str, dict[str, float]] | None:
    """The baseline submission's mean test metrics over its seeds, {task: {metric: value}}."""
    found = [e for e in entries if e.name == spec.baseline]
    if not found:
        return None
    runs = found[0].runs
    return {
        task: {m: float(np.mean([r.results.tasks[task].metrics[m] for r in runs])) for m in metrics}
        for task, metrics in ((t, runs[0].results.tasks[t].metrics) for t in spec.tasks)
    }


def _mean_main(spec: LeaderboardSpec, entry: Submission) -> tuple[float, float]:
    """Mean ± CI over seeds of the mean over tasks of the main score (negated where lower is better)."""
    per_seed = []
    for run in entry.runs:
        tasks = run.results.tasks
        per_seed.append(np.mean([tasks[t].metrics[m] * (1 if tasks[t].higher_is_better else -1)
                                 for t, m in spec.tasks.items()]))
    return mean_ci95(per_seed)


def board_frame(spec: LeaderboardSpec, entries: list[Submission]) -> pd.DataFrame:
    """The ranked table (best first, by the leaderboard's aggregate); an empty frame when nothing was accepted."""
    if not entries:
        return pd.DataFrame(columns=["rank", "name"])
    results_list, owner = [], {}
    for entry in entries:
        for run in entry.runs:  # the leaderboard's tasks only
            tasks = {t: r for t, r in run.results.tasks.items() if t in spec.tasks}
            results = run.results.model_copy(update={"tasks": tasks})
            owner[id(results)] = entry.name
            results_list.append(results)
    base = _baseline(spec, entries)
    seeds = {r.seed for r in results_list}
    directions = metric_directions(results_list[0])
    frame = compare_frame(results_list, {s: base for s in seeds} if base else {}, directions,
                          label=lambda r: owner[id(r)])
    frame = frame.rename(columns={"cell": "name"})
    by_name = {e.name: e for e in entries}
    frame["submitted"] = [(by_name[n].accepted.date if by_name[n].accepted else by_name[n].created)[:10]
                          for n in frame["name"]]
    means = [_mean_main(spec, by_name[n]) for n in frame["name"]]
    frame["mean_main"], frame[f"mean_main{CI}"] = [m for m, _ in means], [h for _, h in means]
    for column in ("delta_p", "delta_m"):  # the baseline against itself: 0, not -4e-15
        frame[column] = frame[column].round(9) + 0.0
    key = spec.rank_by
    frame = frame.sort_values([key, "name"], ascending=[SORT[key], True], na_position="last").reset_index(drop=True)
    frame.insert(0, "rank", [float(i + 1) if not math.isnan(v) else math.nan for i, v in enumerate(frame[key])])
    shown = _columns(spec, frame)
    frame = frame[shown + [c for c in frame.columns if c not in shown]]
    frame.attrs["higher_is_better"] = frame.attrs.get("higher_is_better", {}) | {"mean_main": True}
    frame.attrs["baseline"] = spec.baseline if base else None
    return frame


def _baseline_entry(spec: LeaderboardSpec, entries: list[Submission], wanted: str | None) -> str | None:
    """The entry paired tests compare against: ``wanted``, else the leaderboard's baseline, else the one
    single-task entry; None when there is none."""
    names = [e.name for e in entries]
    if wanted is not None:
        if wanted not in names:
            raise UserError(f"--baseline {wanted!r}: leaderboard {spec.name} has no entry of that name (entries: "
                            f"{', '.join(names)})")
        return wanted
    if spec.baseline in names:
        return spec.baseline
    single = [e.name for e in entries if e.config["sharing"]["name"] == "single-task"]
    return single[0] if len(single) == 1 else None


def entry_scorers(spec: LeaderboardSpec, entries: list[Submission]) -> dict[str, dict[int, dict[str, Any]]]:
    """{entry: {seed: {task: item scorer}}} from the submitted test predictions (``evaluation/rescore.py``)."""
    from mtl_bench.evaluation.rescore import item_scorers
    from mtl_bench.leaderboard.verify import submission_test_data

    scorers = {}
    for entry in entries:
        prepared = submission_test_data(entry, f"submission {entry.name}")
        scorers[entry.name] = {run.results.seed: item_scorers(prepared, run.predictions, f"submission {entry.name}: "
                                                              f"seed {run.results.seed}", list(spec.tasks))
                               for run in entry.runs}
    return scorers


def with_paired(spec: LeaderboardSpec, entries: list[Submission], frame: pd.DataFrame, baseline: str | None = None,
                replicates: int | None = None) -> pd.DataFrame:
    """The ranked frame with every entry's paired test against the baseline entry (verdict marks beside the means;
    the numbers as ``paired <quantity> <field>`` columns), scored from the submitted test predictions."""
    from mtl_bench.results.comparisons import Statistics, add_paired

    base = _baseline_entry(spec, entries, baseline)
    if frame.empty or base is None:
        return frame
    scorers = entry_scorers(spec, entries)
    first = entries[0].runs[0].results.tasks
    mains = {t: (m, first[t].higher_is_better) for t, m in sorted(spec.tasks.items())}
    single = spec.baseline if spec.baseline in scorers else None
    frame = add_paired(frame, scorers, mains, base, single, Statistics(base, replicates=replicates), name="name")
    for row in frame.attrs["paired"]:
        at = frame.index[frame["name"] == row["cell"]]
        for field in ("difference", "low", "high", "p", "p_holm", "verdict"):
            frame.loc[at, f"paired {row['quantity']} {field}"] = row[field]
    return frame


def _marks_note(frame: pd.DataFrame) -> str:
    if not frame.attrs.get("marks"):
        return ""
    return (f" ▲ / ▼ / = beside a mean: better / worse than {frame.attrs['baseline']} / tie in a paired test (same "
            "seeds, test items resampled, Holm-adjusted p < 0.05 over the comparisons shown; Δp on main scores).")


def _columns(spec: LeaderboardSpec, frame: pd.DataFrame, axes: bool = True) -> list[str]:
    """The columns shown, in order (``axes``: also sharing, fusion and weighting, which the name usually says)."""
    mains = [f"{t}/{m}" for t, m in sorted(spec.tasks.items())]
    shown = ["rank", "name", *(AXES if axes else ()), "seeds", *mains, "delta_p", "mean_main", "mean_rank",
             *spec.cost_columns, "submitted"]
    return [c for c in shown if c in frame.columns]


def legend(spec: LeaderboardSpec) -> str:
    base = f"submission {spec.baseline!r}" if spec.baseline else "no baseline submission"
    return (
        f"Ranked by {spec.rank_by}. Δp: mean over tasks of the mean relative improvement over the task's test metrics "
        f"against {base} (mean over its seeds), % (LibMTL). Mean main score: mean over tasks of the main score. Mean "
        "rank: over tasks, 1 = best. ± is the Student-t 95% confidence interval over the submission's seeds (for "
        "Δp the baseline's mean is taken as fixed, so its own seed spread is not in the interval). Every score was "
        "recomputed from the submitted test predictions; costs are as reported by the submitter."
    )


def _heading(spec: LeaderboardSpec) -> str:
    return (f"Suite {spec.suite} v{spec.suite_version}, data fingerprint {spec.data_fingerprint}, at least "
            f"{spec.min_seeds} seeds per submission.")


def markdown(spec: LeaderboardSpec, frame: pd.DataFrame) -> str:
    lines = [f"# Leaderboard: {spec.name}", "", spec.description.strip(), "", _heading(spec), ""]
    if frame.empty:
        lines.append("No submissions yet.")
    else:
        lines += [*markdown_table(frame, _columns(spec, frame), TEXT), "", legend(spec) + _marks_note(frame)]
        paired = frame.attrs.get("paired")
        if paired:
            lines += ["", *paired_markdown(pd.DataFrame(paired))]
            power = [PowerLine(**p) for p in frame.attrs.get("power", [])]
            if power:
                lines += ["", *power_markdown(power)]
    lines += ["", "Generated by `mtl-bench leaderboard` from the files in `submissions/`; do not edit by hand."]
    return "\n".join(lines) + "\n"


def rich_table(spec: LeaderboardSpec, frame: pd.DataFrame) -> Any:
    from rich.table import Table

    table = Table(title=f"Leaderboard {spec.name} (suite {spec.suite} v{spec.suite_version})",
                  caption=legend(spec) + _marks_note(frame))
    if frame.empty:
        table.add_column("No submissions yet.")
        return table
    columns = _columns(spec, frame, axes=False)
    headers, rows = display_cells(frame, columns)
    for column, header in zip(columns, headers, strict=True):
        table.add_column(header, justify="left" if column in TEXT else "right", no_wrap=column in TEXT)
    for cells in rows:
        table.add_row(*cells)
    return table


_SCRIPT = """
document.querySelectorAll('#board th').forEach((th, col) => th.addEventListener('click', () => {
  const body = document.querySelector('#board tbody');
  const asc = th.dataset.order !== 'asc';
  document.querySelectorAll('#board th').forEach(h => { delete h.dataset.order; h.removeAttribute('aria-sort'); });
  th.dataset.order = asc ? 'asc' : 'desc';
  th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
  const cell = tr => tr.children[col];
  const key = tr => th.dataset.type === 'num' ? parseFloat(cell(tr).dataset.value) : cell(tr).textContent;
  const rows = [...body.rows].sort((a, b) => {
    const x = key(a), y = key(b);
    if (typeof x === 'string') return asc ? x.localeCompare(y) : y.localeCompare(x);
    if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);
    return asc ? x - y : y - x;
  });
  rows.forEach(r => body.appendChild(r));
}));
"""
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; white-space: nowrap; }
th { cursor: pointer; background: #f4f4f4; user-select: none; }
th[data-order=asc]::after { content: " ▲"; } th[data-order=desc]::after { content: " ▼"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
p.legend { max-width: 60em; font-size: 13px; color: #555; }
"""


def html_page(spec: LeaderboardSpec, frame: pd.DataFrame) -> str:
    """One static file: the table with click-to-sort columns (numbers sort by value), no external resources."""
    esc = html.escape
    body = ["<p>No submissions yet.</p>"]
    if not frame.empty:
        columns = _columns(spec, frame)
        headers, rows = display_cells(frame, columns)
        kinds = ["text" if c in TEXT else "num" for c in columns]
        head = "".join(f'<th data-type="{k}">{esc(h)}</th>' for k, h in zip(kinds, headers, strict=True))
        lines = []
        for (_, row), cells in zip(frame.iterrows(), rows, strict=True):
            tds = []
            for column, kind, text in zip(columns, kinds, cells, strict=True):
                if kind == "num":
                    value = float(row[column]) if pd.notna(row[column]) else math.nan
                    tds.append(f'<td class="num" data-value="{value!r}">{esc(text)}</td>')
                else:
                    tds.append(f"<td>{esc(text)}</td>")
            lines.append("<tr>" + "".join(tds) + "</tr>")
        body = [f'<table id="board"><thead><tr>{head}</tr></thead><tbody>', *lines, "</tbody></table>",
                f'<p class="legend">{esc(legend(spec) + _marks_note(frame))}</p>']
    return "\n".join([
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>mtl-bench leaderboard: {esc(spec.name)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Leaderboard: {esc(spec.name)}</h1>", f"<p>{esc(spec.description.strip())}</p>",
        f"<p>{esc(_heading(spec))}</p>", *body, f"<script>{_SCRIPT}</script>", "</body></html>",
    ]) + "\n"


def render(spec: LeaderboardSpec, frame: pd.DataFrame, fmt: str) -> str:
    if fmt == "table":  # plain text, for a file; a terminal gets rich_table's colours
        from rich.console import Console

        console = Console(record=True, width=240, file=StringIO())
        console.print(rich_table(spec, frame))
        return console.export_text()
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "md":
        return markdown(spec, frame)
    if fmt == "html":
        return html_page(spec, frame)
    raise ValueError(f"unknown format {fmt!r}")
