"""Mean rank with its bootstrap CI and the Pareto front of a compare table's cells (``results/fronts.py`` maths).

The front lives in relative improvements over the single-task cell (% per task, higher is better, single-task at the
origin); hypervolumes are from the fixed reference point ``fronts.REFERENCE_IMPROVEMENT`` (-100 % on every task) and
divided by single-task's own box, 100^T, so single-task has hypervolume 1 and a front above 1 covers more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from io import BytesIO

import numpy as np
import pandas as pd

from mtl_bench.results import fronts

PerSeed = Mapping[str, Mapping[int, Mapping[str, float]]]  # cell -> seed -> task -> main score
RANK_LOW, RANK_HIGH = "mean_rank low", "mean_rank high"


def rank_intervals(per_seed: PerSeed, directions: Mapping[str, bool], seed: int = 0) -> dict[str, fronts.RankCI]:
    """Mean rank CI of every cell over the seeds all cells have (with every task); {} with fewer than 2 of them."""
    common = set.intersection(*({s for s, t in runs.items() if set(directions) <= set(t)}
                                for runs in per_seed.values()))
    if len(common) < 2:
        return {}
    seeds = sorted(common)
    scores = {c: {t: [per_seed[c][s][t] for s in seeds] for t in directions} for c in per_seed}
    return fronts.mean_rank_ci(scores, directions, seed=seed)


def improvements(frame: pd.DataFrame, single: str, mains: Mapping[str, tuple[str, bool]]) -> pd.DataFrame:
    """Per cell (index) and task (columns): the relative improvement of its seed-mean main score over ``single``'s."""
    rows = frame.set_index("cell")
    base = {t: float(rows.loc[single, f"{t}/{m}"]) for t, (m, _) in mains.items()}
    directions = {t: hib for t, (_, hib) in mains.items()}
    return pd.DataFrame({
        cell: fronts.relative_improvements({t: float(rows.loc[cell, f"{t}/{m}"]) for t, (m, _) in mains.items()},
                                           base, directions)
        for cell in rows.index
    }).T


def add_rank_and_front(frame: pd.DataFrame, per_seed: PerSeed, mains: Mapping[str, tuple[str, bool]],
                       single: str | None) -> pd.DataFrame:
    """The frame with ``mean_rank low/high`` and, when ``single`` is a cell, ``on_front`` and ``hypervolume`` (the
    cell's own box / 100^T); ``attrs['front']`` holds the front's hypervolume or why there is none."""
    frame = frame.copy()
    ranks = rank_intervals(per_seed, {t: hib for t, (_, hib) in mains.items()})
    frame[RANK_LOW] = [ranks[c].low if c in ranks else math.nan for c in frame["cell"]]
    frame[RANK_HIGH] = [ranks[c].high if c in ranks else math.nan for c in frame["cell"]]
    if single is None or len(mains) < 2:
        frame.attrs["front"] = {"note": "no Pareto front: it needs a single-task cell to normalise against and "
                                        "at least 2 tasks"}
        return frame
    points = improvements(frame, single, mains).dropna()
    on_front = set(points.index[fronts.pareto_front(points.to_numpy())])
    unit = 100.0 ** len(mains)
    frame["on_front"] = [c in on_front for c in frame["cell"]]
    frame["hypervolume"] = [fronts.hypervolume(points.loc[[c]].to_numpy()) / unit if c in points.index else math.nan
                            for c in frame["cell"]]
    frame.attrs["front"] = {"hypervolume": fronts.hypervolume(points.loc[sorted(on_front)].to_numpy()) / unit,
                            "single": single, "improvements": points.to_dict(orient="index")}
    return frame


def front_markdown(frame: pd.DataFrame) -> list[str]:
    """The front's line for compare.md."""
    front = frame.attrs.get("front", {})
    if "hypervolume" not in front:
        return [front.get("note", "")] if front else []
    cells = ", ".join(frame.loc[frame["on_front"], "cell"])
    return [f"Pareto front over the tasks' main scores, relative to {front['single']} (% improvement per task): "
            f"{cells}. Hypervolume {front['hypervolume']:.4f} (reference point {fronts.REFERENCE_IMPROVEMENT:.0f} % "
            "on every task; single-task's own box = 1; column hypervolume: each cell's own box)."]


def front_png(frame: pd.DataFrame) -> bytes | None:
    """The cells in improvement space: a scatter with the front for 2 tasks, parallel coordinates for more."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    front = frame.attrs.get("front", {})
    if "improvements" not in front:
        return None
    points = pd.DataFrame(front["improvements"]).T
    on = set(frame.loc[frame["on_front"], "cell"])
    fig = Figure(figsize=(6.5, 4.8) if points.shape[1] == 2 else (1.8 * points.shape[1] + 3, 4.8),
                 layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    (_scatter if points.shape[1] == 2 else _parallel)(ax, points, on)
    ax.set_title(f"cells vs {front['single']}: % improvement of the main score (↑ better); "
                 f"hypervolume {front['hypervolume']:.3f}", fontsize=9)
    ax.grid(alpha=0.3)
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def _scatter(ax, points: pd.DataFrame, on: set[str]) -> None:
    x, y = points.columns
    for cell, row in points.iterrows():
        ax.scatter(row[x], row[y], color="tab:orange" if cell in on else "tab:gray", zorder=3)
        ax.annotate(cell, (row[x], row[y]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    best = points.loc[sorted(on)].sort_values(x)
    ax.step(best[x], best[y], where="post", color="tab:orange", linewidth=1)  # the front's staircase
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel(f"{x} %", fontsize=8)
    ax.set_ylabel(f"{y} %", fontsize=8)


def _parallel(ax, points: pd.DataFrame, on: set[str]) -> None:
    xs = np.arange(points.shape[1])
    for cell, row in points.iterrows():
        front = cell in on
        ax.plot(xs, row.to_numpy(), marker="o", linestyle="-" if front else "--", linewidth=1.5 if front else 0.8,
                color=None if front else "tab:gray", label=cell + (" (front)" if front else ""))
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(xs, labels=list(points.columns), fontsize=8)
    ax.set_ylabel("% improvement", fontsize=8)
    ax.legend(fontsize=7, loc="best")
