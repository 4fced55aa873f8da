"""How noisy a suite's scores are: per cell and task, the two variance components of one run's main score.

- between seeds (σ_a): how much the score moves with the training seed (initialisation, data order, dropout) beyond
  the seed x item interaction; the plain spread of the seeds' scores on the one test split (σ_a² + σ_e²/N) is shown
  beside it;
- between test items: how much it would move on another test split of the same size, seed fixed.

Both come from the runs' own test predictions (``results/power.py``: ANOVA estimates from per-item values for mean
metrics, the crossed bootstrap for corpus metrics such as CIDEr-D and mAP), with the test-split size at which the
item part is at most half the seed part (beyond it, more test items buy little; more seeds are what helps).

    python benchmarks/noise.py --leaderboard ecommerce-v1
    python benchmarks/noise.py --runs hard=runs/a/seed0,runs/a/seed1,runs/a/seed2

Prints a markdown table; nothing is written.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np

from mtl_bench.results import paired, power


def components(scorers: dict[int, Any], replicates: int, seed: int = 0) -> power.VarianceComponents:
    """One cell's components for one task, from its seeds' item scorers (``evaluation/rescore.py``)."""
    seeds = sorted(scorers)
    first = scorers[seeds[0]]
    if first.per_item is not None:
        return power.variance_components(np.stack([scorers[s].per_item for s in seeds]))
    _, items = paired.draws(len(seeds), {"t": first.n_items}, replicates, seed)
    reps = np.stack([scorers[s].scores(items["t"]) for s in seeds], axis=1)  # [R, S], the same items for every seed
    observed = np.array([scorers[s].score(np.arange(first.n_items)) for s in seeds])
    return power.components_from_bootstrap(observed, reps, first.n_items)


def table(cells: dict[str, dict[int, dict[str, Any]]], mains: dict[str, str], replicates: int) -> list[str]:
    lines = ["| cell | task (main score) | seeds | items | mean | sd of the seeds' scores | seed sd σ_a | "
             "test-split sd | items for item var <= seed var / 2 |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for cell, by_seed in sorted(cells.items()):
        for task, main in sorted(mains.items()):
            scorers = {s: tasks[task] for s, tasks in by_seed.items()}
            c = components(scorers, replicates)
            run = power.run_variances(c)
            split = power.split_size_for_half_seed_variance(c)
            observed = [sc.score(np.arange(sc.n_items)) for sc in scorers.values()]
            lines.append(f"| {cell} | {task} ({main}) | {len(scorers)} | {c.items} | {np.mean(observed):.4f} | "
                         f"{np.std(observed, ddof=1):.4f} | {math.sqrt(run.seed):.4f} | {math.sqrt(run.items):.4f} | "
                         f"{'-' if split is None else split} |")
    return lines


def leaderboard_scorers(name: str) -> tuple[dict[str, dict[int, dict[str, Any]]], dict[str, str]]:
    from mtl_bench.leaderboard.definition import load_leaderboard
    from mtl_bench.leaderboard.render import entry_scorers
    from mtl_bench.leaderboard.store import accepted_entries

    spec = load_leaderboard(name)
    return entry_scorers(spec, accepted_entries(spec)), dict(spec.tasks)


def runs_scorers(specs: list[str]) -> tuple[dict[str, dict[int, dict[str, Any]]], dict[str, str]]:
    from pathlib import Path

    from mtl_bench.evaluation.rescore import run_scorers
    from mtl_bench.results.io import read_results

    dirs = {cell: [Path(d) for d in paths.split(",")] for cell, paths in (s.split("=", 1) for s in specs)}
    first = read_results(next(iter(dirs.values()))[0] / "results.json")
    return run_scorers(dirs), {t: r.main_score for t, r in first.tasks.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leaderboard", help="a leaderboard's accepted submissions (leaderboards/NAME.yaml)")
    parser.add_argument("--runs", action="append", default=[], metavar="CELL=DIR,DIR,...", help="finished runs")
    parser.add_argument("--replicates", type=int, default=paired.CORPUS_REPLICATES, help="for corpus metrics")
    args = parser.parse_args()
    cells, mains = leaderboard_scorers(args.leaderboard) if args.leaderboard else runs_scorers(args.runs)
    print("\n".join(table(cells, mains, args.replicates)))


if __name__ == "__main__":
    main()
