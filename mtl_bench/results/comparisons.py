"""Paired comparisons of the cells of a compare table (or a leaderboard's entries) and the power of each test.

Input: every cell's item scorers, ``{cell: {seed: {task: scorer}}}`` (``evaluation/rescore.py`` makes them from the
runs' predictions.json and the test labels), and each task's main score and direction. A scorer has ``n_items``,
``per_item`` (per-item values whose mean is the main score on any item multiset, or None for a corpus metric such as
CIDEr-D or mAP) and ``score(indices)``, optionally ``scores(index_matrix)``.

For each pair (A, B) and each task's main score, and for Δp when a single-task cell is known, the difference B - A
over the seeds both cells have is tested with ``results/paired.py`` (crossed bootstrap of test items shared by seeds
and cells, t-calibrated); Holm's correction runs over every comparison shown; power comes from the same data
(``results/power.py``). Paired Δp is Δp on the tasks' main scores (the table's Δp also averages the other metrics).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from mtl_bench.results import paired, power
from mtl_bench.results.paired import PairedResult
from mtl_bench.results.power import VarianceComponents

FAST_REPLICATES = 1000  # mean metrics: one matrix product per seed, cheap
CORPUS_REPLICATES = paired.CORPUS_REPLICATES  # corpus metrics: one metric evaluation per replicate, seed and cell
DELTA_P = "delta_p"
Scorers = Mapping[str, Mapping[int, Mapping[str, Any]]]  # cell -> seed -> task -> item scorer
Mains = Mapping[str, tuple[str, bool]]  # task -> (main score, higher is better)


class Comparison(NamedTuple):
    cell: str  # B
    baseline: str  # A: the difference is B - A
    quantity: str  # "task/main score" or "delta_p"
    higher_is_better: bool
    result: PairedResult
    components: VarianceComponents | None  # of the per-seed, per-item difference; None with one seed


class _Replicates:
    """Bootstrap draws and every scorer's score on them, each computed once (a baseline serves many pairs)."""

    def __init__(self, scorers: Scorers, replicates: int | None, seed: int) -> None:
        self.scorers, self.replicates, self.seed = scorers, replicates, seed
        self._draws: dict[Any, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
        self._scores: dict[Any, np.ndarray] = {}

    def count(self, fast: bool) -> int:
        return self.replicates or (FAST_REPLICATES if fast else CORPUS_REPLICATES)

    def draws(self, n_seeds: int, n_items: Mapping[str, int], count: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        key = (n_seeds, tuple(sorted(n_items.items())), count)
        if key not in self._draws:
            self._draws[key] = paired.draws(n_seeds, n_items, count, self.seed)
        return self._draws[key]

    def matrix(self, cell: str, seeds: Sequence[int], task: str, key: Any, item_idx: np.ndarray) -> np.ndarray:
        """[R, S]: each seed's main score of ``task`` on each replicate's items (``key`` names the draws)."""
        columns = []
        for s in seeds:
            if (cell, s, task, key) not in self._scores:
                self._scores[(cell, s, task, key)] = replicate_scores(self.scorers[cell][s][task], item_idx)
            columns.append(self._scores[(cell, s, task, key)])
        return np.stack(columns, axis=1)

    def observed(self, cell: str, seeds: Sequence[int], task: str) -> np.ndarray:
        """[S]: each seed's main score on all test items."""
        return self.matrix(cell, seeds, task, "all", np.arange(self.scorers[cell][seeds[0]][task].n_items)[None])[0]


def replicate_scores(scorer: Any, item_idx: np.ndarray) -> np.ndarray:
    """[R]: the scorer's main score on each row of ``item_idx`` (a matrix product for a mean metric)."""
    if scorer.per_item is not None:
        return paired.replicate_means(np.asarray(scorer.per_item, float)[None, :], item_idx)[:, 0]
    if hasattr(scorer, "scores"):
        return np.asarray(scorer.scores(item_idx), dtype=float)
    return np.array([scorer.score(row) for row in item_idx], dtype=float)


def common_seeds(scorers: Scorers, cells: Sequence[str], tasks: Sequence[str]) -> list[int]:
    """Seeds every one of ``cells`` has, with every one of ``tasks``, sorted."""
    sets = [{s for s, by_task in scorers[c].items() if all(t in by_task for t in tasks)} for c in cells]
    return sorted(set.intersection(*sets)) if sets else []


def _task_comparison(reps: _Replicates, a: str, b: str, task: str, main: tuple[str, bool]) -> Comparison | None:
    """B - A on one task's main score over their common seeds; None when they share no seed."""
    seeds = common_seeds(reps.scorers, [a, b], [task])
    if not seeds:
        return None
    first = [reps.scorers[c][s][task] for c in (a, b) for s in seeds]
    n = first[0].n_items
    if all(x.per_item is not None for x in first):
        values_a, values_b = (np.stack([np.asarray(reps.scorers[c][s][task].per_item, float) for s in seeds])
                              for c in (a, b))
        result = paired.paired_bootstrap_means(values_a, values_b, reps.count(True), reps.seed)
        components = power.variance_components(values_b - values_a) if len(seeds) > 1 else None
    else:
        count = reps.count(False)
        seed_idx, item_idx = reps.draws(len(seeds), {task: n}, count)
        key = (len(seeds), n, count)
        diff = reps.matrix(b, seeds, task, key, item_idx[task]) - reps.matrix(a, seeds, task, key, item_idx[task])
        observed = reps.observed(b, seeds, task) - reps.observed(a, seeds, task)
        result = PairedResult(*paired.paired_inference(observed, diff, seed_idx, n), len(seeds), n, count, reps.seed)
        components = power.components_from_bootstrap(observed, diff, n) if len(seeds) > 1 else None
    return Comparison(b, a, f"{task}/{main[0]}", main[1], result, components)


def delta_p_main(scores: Mapping[str, np.ndarray], single: Mapping[str, np.ndarray], mains: Mains) -> np.ndarray:
    """Δp (LibMTL, %) on the tasks' main scores, elementwise over arrays of replicates and seeds: per task the
    relative improvement signed by direction, a task with a zero single-task score left out (as ``scores.delta_p``
    skips it), then the mean over tasks; nan where every task is left out."""
    gains = []
    for task, (_, higher) in mains.items():
        base = np.asarray(single[task], float)
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = (1.0 if higher else -1.0) * (np.asarray(scores[task], float) - base) / base
        gains.append(np.where(base == 0.0, np.nan, gain))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all tasks left out: nan, said by the caller
        return 100.0 * np.nanmean(np.stack(gains), axis=0)


def _delta_p_comparison(reps: _Replicates, a: str, b: str, single: str, mains: Mains) -> Comparison | None:
    """Δp(B) - Δp(A), both against the single-task cell of the same seed, on the same resampled items."""
    cells = list(dict.fromkeys([a, b, single]))
    seeds = common_seeds(reps.scorers, cells, list(mains))
    if not seeds:
        return None
    n_items = {t: reps.scorers[a][seeds[0]][t].n_items for t in mains}
    fast = all(reps.scorers[c][s][t].per_item is not None for c in cells for s in seeds for t in mains)
    count = reps.count(fast)
    seed_idx, item_idx = reps.draws(len(seeds), n_items, count)
    key = (len(seeds), tuple(sorted(n_items.items())), count)
    rep = {c: {t: reps.matrix(c, seeds, t, key, item_idx[t]) for t in mains} for c in cells}
    obs = {c: {t: reps.observed(c, seeds, t) for t in mains} for c in cells}
    diff = delta_p_main(rep[b], rep[single], mains) - delta_p_main(rep[a], rep[single], mains)
    observed = delta_p_main(obs[b], obs[single], mains) - delta_p_main(obs[a], obs[single], mains)
    if np.isnan(observed).any() or np.isnan(diff).any():
        return None
    smallest = min(n_items.values())
    result = PairedResult(*paired.paired_inference(observed, diff, seed_idx, smallest), len(seeds), smallest, count,
                          reps.seed)
    components = power.components_from_bootstrap(observed, diff, smallest) if len(seeds) > 1 else None
    return Comparison(b, a, DELTA_P, True, result, components)


def compare_pairs(scorers: Scorers, mains: Mains, pairs: Sequence[tuple[str, str]], single: str | None = None,
                  replicates: int | None = None, seed: int = 0) -> list[Comparison]:
    """B - A for every (A, B) in ``pairs``: each task's main score, then Δp when ``single`` (the single-task cell)
    is given. ``replicates`` None: FAST_REPLICATES for mean metrics, CORPUS_REPLICATES for corpus ones."""
    reps = _Replicates(scorers, replicates, seed)
    out = []
    for a, b in pairs:
        found = [_task_comparison(reps, a, b, task, main) for task, main in mains.items()]
        if single is not None:
            found.append(_delta_p_comparison(reps, a, b, single, mains))
        out += [c for c in found if c is not None]
    return out


PAIRED_COLUMNS = ("cell", "baseline", "quantity", "difference", "low", "high", "p", "p_holm", "verdict", "seeds",
                  "items", "replicates", "se", "df", "higher_is_better")


def paired_frame(comparisons: Sequence[Comparison], alpha: float = 0.05) -> Any:
    """One row per comparison (paired.csv): B - A, its 95% CI, p, Holm-adjusted p over exactly these rows (those
    with a p-value: one seed gives none) and the verdict better / worse / tie in the quantity's direction."""
    import pandas as pd

    adjusted = paired.holm([c.result.p_value for c in comparisons]) if comparisons else np.array([])
    rows = []
    for c, p_holm in zip(comparisons, adjusted, strict=True):
        r = c.result
        rows.append({"cell": c.cell, "baseline": c.baseline, "quantity": c.quantity, "difference": r.difference,
                     "low": r.low, "high": r.high, "p": r.p_value, "p_holm": float(p_holm),
                     "verdict": paired.verdict(r.difference, float(p_holm), c.higher_is_better, alpha),
                     "seeds": r.seeds, "items": r.items, "replicates": r.replicates, "se": r.se, "df": r.df,
                     "higher_is_better": c.higher_is_better})
    return pd.DataFrame(rows, columns=list(PAIRED_COLUMNS))


class PowerLine(NamedTuple):
    quantity: str
    seed_variance: float  # σ_a²: of one run's difference across seeds
    item_variance: float  # (σ_b² + σ_e²)/N: of one run's difference across test splits of N items
    items: int
    seeds: int  # seeds of the comparisons (the fewest, when they differ)
    mdd: float  # minimum detectable difference at 80% power, ``seeds`` seeds, N items
    detect: float  # the difference asked about (--detect), nan when none
    seeds_needed: float  # seeds that detect it at 80% power; inf when no number of seeds can (items dominate)
    split_size: float  # test items for item variance <= half the seed variance; nan when seeds add no variance


def _mean_components(found: Sequence[VarianceComponents]) -> VarianceComponents:
    """The components averaged over comparisons (unbiased estimates stay unbiased)."""
    return VarianceComponents(*(float(np.mean([getattr(c, f) for c in found])) for f in ("seed", "item", "residual")),
                              found[0].items)


def power_lines(comparisons: Sequence[Comparison], detect: Mapping[str, float] | None = None) -> list[PowerLine]:
    """Per quantity, over the comparisons shown with >= 2 seeds: the difference's variance components (averaged),
    the MDD at the seeds used, the seeds needed for ``detect[task]`` (key: task name, or "delta_p"), and the test
    split that keeps item variance at most half the seed variance (tasks only; Δp pools several splits)."""
    detect = detect or {}
    by_quantity: dict[str, list[Comparison]] = {}
    for c in comparisons:
        if c.components is not None:
            by_quantity.setdefault(c.quantity, []).append(c)
    lines = []
    for quantity, found in by_quantity.items():
        comps = _mean_components([c.components for c in found if c.components is not None])
        seeds = min(c.result.seeds for c in found)
        run = power.run_variances(comps)
        wanted = detect.get(quantity.split("/")[0], math.nan)
        needed = math.nan if math.isnan(wanted) else power.seeds_needed(comps, wanted)
        split = power.split_size_for_half_seed_variance(comps) if quantity != DELTA_P else None
        lines.append(PowerLine(quantity, run.seed, run.items, comps.items, seeds,
                               power.minimum_detectable_difference(comps, seeds), wanted,
                               math.inf if needed is None else float(needed), math.nan if split is None else split))
    return lines


MARKS = {"better": "▲", "worse": "▼", "tie": "="}


def _num(value: float, quantity: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.2f}" if quantity == DELTA_P else f"{value:+.4f}"


def _p(value: float) -> str:
    return "n/a" if math.isnan(value) else ("<0.001" if value < 0.001 else f"{value:.3f}")


def paired_markdown(paired_rows: Any) -> list[str]:
    """The paired section of compare.md / the terminal: one row per comparison, marks, and what they mean."""
    if paired_rows is None or len(paired_rows) == 0:
        return []
    lines = ["## Paired comparisons", "", "| cell | vs | quantity | difference | 95% CI | p | p (Holm) | verdict |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for _, r in paired_rows.iterrows():
        ci = f"[{_num(r['low'], r['quantity'])}, {_num(r['high'], r['quantity'])}]"
        verdict = f"{MARKS[r['verdict']]} {r['verdict']}" + (" (1 seed: untested)" if r["seeds"] < 2 else "")
        lines.append(f"| {r['cell']} | {r['baseline']} | {r['quantity']} | {_num(r['difference'], r['quantity'])} | "
                     f"{ci} | {_p(r['p'])} | {_p(r['p_holm'])} | {verdict} |")
    tested = int(paired_rows["p"].notna().sum())
    lines += ["", f"Difference: cell - vs, the mean over their common seeds of same-seed differences on the same test "
              "items; CI and p from a bootstrap of test items shared by seeds and cells, t-calibrated "
              f"(results/paired.py). Holm's correction over the {tested} comparison(s) above with a p-value; "
              "▲ better / ▼ worse when the Holm-adjusted p < 0.05, = tie otherwise. A tie means no difference was "
              "detected at this power (see the minimum detectable difference below), not that the cells are equal. "
              "Paired Δp (%) is Δp on the tasks' main scores, each seed against single-task of the same seed."]
    if (paired_rows["seeds"] < 2).any():
        lines.append("Comparisons over 1 seed have no CI and no p-value: a paired test needs at least 2 seeds of "
                     "both cells (run compare with --seeds 2 or more); their verdict is tie.")
    return lines


def power_markdown(lines: Sequence[PowerLine]) -> list[str]:
    """One line per quantity: what the comparisons could detect, and what more seeds or test items would need."""
    if not lines:
        return []
    out = ["## Power (80 %, two-sided α = 0.05)", ""]
    for p in lines:
        text = (f"- {p.quantity}: one run's difference has variance {p.seed_variance:.3g} across seeds and "
                f"{p.item_variance:.3g} across test splits of {p.items} items; minimum detectable difference "
                f"{p.mdd:.4g} with {p.seeds} seeds")
        if not math.isnan(p.detect):
            text += (f"; {p.detect:g} needs {p.seeds_needed:.0f} seeds" if math.isfinite(p.seeds_needed) else
                     f"; {p.detect:g} is out of reach of more seeds alone (the test items' shared variance floors "
                     "it: a larger test split)")
        if p.quantity != DELTA_P:
            text += (f"; a test split of {p.split_size:.0f} items keeps item variance at most half the seed variance"
                     if not math.isnan(p.split_size) else "; seeds add no variance here: only the test split counts")
        out.append(text + ".")
    return out


def verdict_marks(paired_rows: Any, baseline: str | None) -> dict[str, dict[str, str]]:
    """{cell: {quantity: mark}} of the comparisons against ``baseline``, for the marks beside the table's means."""
    marks: dict[str, dict[str, str]] = {}
    if paired_rows is None or baseline is None:
        return marks
    for _, r in paired_rows[paired_rows["baseline"] == baseline].iterrows():
        if r["seeds"] >= 2:
            marks.setdefault(r["cell"], {})[r["quantity"]] = MARKS[r["verdict"]]
    return marks


class Statistics(NamedTuple):
    """What ``compare`` / ``leaderboard show`` test: against ``baseline`` (None: single-task when there is exactly
    one such cell) or, with ``pairs="all"``, every pair; ``replicates`` None picks by metric kind."""

    baseline: str | None = None
    pairs: str = "baseline"  # or "all"
    replicates: int | None = None
    detect: Mapping[str, float] = {}  # task (or "delta_p") -> difference to detect; "*" for every task
    seed: int = 0


def pairs_of(cells: Sequence[str], baseline: str | None, how: str) -> list[tuple[str, str]]:
    """(A, B) pairs: every other cell against ``baseline``, or with ``how="all"`` every pair in table order."""
    if how == "all":
        return [(a, b) for i, a in enumerate(cells) for b in cells[i + 1:]]
    return [] if baseline is None else [(baseline, c) for c in cells if c != baseline]


def detect_for(detect: Mapping[str, float], tasks: Sequence[str]) -> dict[str, float]:
    """Per task (and "delta_p" when given) the difference to detect: its own, else the one given for every task."""
    out = {t: detect[t] if t in detect else detect["*"] for t in tasks if t in detect or "*" in detect}
    return out | ({DELTA_P: detect[DELTA_P]} if DELTA_P in detect else {})


def add_paired(frame: Any, scorers: Scorers, mains: Mains, baseline: str | None, single: str | None,
               statistics: Statistics, name: str = "cell") -> Any:
    """The frame (rows named by column ``name``) with its paired comparisons, power lines and the verdict marks
    against ``baseline`` in ``attrs`` (``paired``, ``power``, ``marks``, ``baseline``), as compare.md shows them."""
    frame = frame.copy()
    cells = [c for c in frame[name] if c in scorers]
    pairs = pairs_of(cells, baseline, statistics.pairs)
    found = compare_pairs(scorers, mains, pairs, single, statistics.replicates, statistics.seed)
    rows = paired_frame(found)
    frame.attrs["paired"] = rows.to_dict(orient="records")
    frame.attrs["power"] = [p._asdict() for p in power_lines(found, detect_for(statistics.detect, list(mains)))]
    frame.attrs["marks"] = verdict_marks(rows, baseline)
    frame.attrs["baseline"] = baseline
    if not pairs:
        frame.attrs["paired_note"] = ("No paired comparisons: no single-task cell to compare against; choose one "
                                      "with --baseline CELL, or --pairs all.")
    elif (rows["seeds"] < 2).all():
        frame.attrs["paired_note"] = "Paired CIs, p-values and power need at least 2 seeds per cell (--seeds 2)."
    return frame
