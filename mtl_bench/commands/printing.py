"""Rich terminal output: the results table at the end of a run, and the catalog of suites, tasks and components."""

from __future__ import annotations

import sys
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from mtl_bench.results.schema import DataReport, Results


def _console() -> Console:
    """Full-width tables also when output goes to a file or pipe (rich would assume 80 columns)."""
    return Console(width=None if sys.stdout.isatty() else 120)


def print_results(results: Results, console: Console | None = None) -> None:
    """The test scores of a run beside the trivial predictor's, then its cost, robustness, data report and Δ."""
    console = console or _console()
    table = Table(title=f"{results.suite} (seed {results.seed}, {results.profile} profile): test split")
    for column in ("task", "metric", "score", "trivial"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    for name, task in results.tasks.items():
        for metric, value in task.metrics.items():
            mark = " *" if metric == task.main_score else ""
            table.add_row(name, metric + mark, f"{value:.4f}", f"{task.trivial_baseline[metric]:.4f}")
    console.print(table)
    cost = results.cost
    console.print(
        f"* main score. params {cost.params:,} (trainable {cost.trainable_params:,}), "
        f"train {cost.train_seconds:.1f}s, {cost.samples_per_second:.0f} samples/s, "
        f"peak memory {cost.peak_memory_mb:.0f} MB, {cost.step_ms:.1f} ms/step, "
        f"{cost.backward_passes} backward pass(es)/step, "
        f"{sum(cost.flops_per_sample.values()) / 1e6:.1f} MFLOPs/sample. MLflow run {results.mlflow.run_id}"
    )
    for task, drops in results.robustness.items():
        if drops:
            lost = ", ".join(f"{k} {v:+.4f}" for k, v in drops.items())
            console.print(f"robustness {task}, main-score drop with an input missing: {lost}")
    _print_data_report(results.data_report, console)
    _print_delta(results, console)


def _print_data_report(report: DataReport, console: Console) -> None:
    for subset, skipped in report.skipped.items():
        for reason, count in skipped.counts.items():
            examples = ", ".join(skipped.examples.get(reason, []))
            console.print(f"data {subset}: skipped {count} row(s), {reason} (e.g. {examples})")
    for note in report.notes:
        console.print(f"data: {note}")


def _print_delta(results: Results, console: Console) -> None:
    delta = results.delta
    if delta is not None:
        console.print(f"vs single-task: Δp {delta.delta_p:+.2f}% (higher is better), "
                      f"Δm {delta.delta_m:+.2f}% (lower is better); baseline {delta.baseline}")
    else:
        from mtl_bench.results.baselines import how_to_make

        console.print(f"no single-task baseline stored for these settings, so no Δp/Δm; make one with: "
                      f"{how_to_make(results)}")


def print_catalog(console: Console | None = None) -> None:
    from mtl_bench.encoders import ENCODERS
    from mtl_bench.fusion import FUSIONS
    from mtl_bench.heads import HEADS
    from mtl_bench.sharing import SHARINGS
    from mtl_bench.tasks import TASK_TYPES
    from mtl_bench.tasks.catalog import all_suites, all_tasks
    from mtl_bench.weighting import WEIGHTINGS

    console = console or _console()
    tasks = all_tasks()
    table = Table(title="suites and tasks", box=box.SIMPLE_HEAD)
    for column in ("suite", "task (version)", "type", "inputs", "main score"):
        table.add_column(column, no_wrap=True)
    for suite in all_suites().values():
        for name in suite.tasks:
            spec = tasks[name]
            arrow = "↑" if spec.higher_is_better else "↓"
            inputs = "+".join(spec.modalities())
            table.add_row(f"{suite.name} v{suite.version}", f"{name} ({spec.version})", spec.type, inputs,
                          f"{spec.main_score} {arrow}")
    console.print(table)
    for kind, registry in [("task types", TASK_TYPES), ("encoders", ENCODERS), ("fusion", FUSIONS),
                           ("sharing", SHARINGS), ("heads", HEADS)]:
        console.print(f"[bold]{kind}[/bold]: {', '.join(registry.names())}")
    for kind in ("loss", "gradient"):
        names = [n for n in WEIGHTINGS.names() if WEIGHTINGS.get(n).kind == kind]
        console.print(f"[bold]weighting ({kind}-based)[/bold]: {', '.join(names)}")


def print_compare(frame: Any, written: list[Any], console: Console | None = None) -> None:
    """The comparison table (as compare.md has it) and where its files are."""
    from mtl_bench.results.table import compare_markdown

    console = console or _console()
    console.print(compare_markdown(frame), markup=False, highlight=False)
    console.print("written: " + ", ".join(str(p) for p in written))
