"""``mtl-bench sweep report STUDY``: the best trial (one objective) or the Pareto front (several), parameter
importances, every trial as a table, and plots, into ``<output dir>/report/``, logged to the study's MLflow run.

Files: ``report.md`` (markdown tables, written here: no tabulate dependency), ``trials.csv`` (Optuna's
``trials_dataframe``), and PNGs drawn by ``optuna.visualization.matplotlib`` (matplotlib is already a dependency;
the interactive HTML of ``optuna.visualization`` would need plotly, which mtl-bench does not install).
Scores in a sweep are validation scores: report the chosen configuration's test numbers from its results.json.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from mtl_bench.errors import UserError
from mtl_bench.results.fronts import hypervolume
from mtl_bench.results.io import write_text_atomic
from mtl_bench.sweeps.storage import default_storage, load_study, open_storage, shown

MIN_TRIALS_FOR_IMPORTANCE = 5  # fANOVA on fewer completed trials gives numbers, not information


def report(study_name: str, storage: str | None = None, output_dir: str | Path | None = None) -> list[Path]:
    """Write the report of ``study_name`` and return the written files (report.md first)."""
    out = Path(output_dir) if output_dir is not None else Path("runs") / "sweeps" / study_name
    url = storage or default_storage(out)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():  # do not create one
        raise UserError(f"no sweep storage {url.removeprefix('sqlite:///')}: give the sweep's --output-dir, or "
                        "its --storage URL")
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = load_study(study_name, open_storage(url), url)
    folder = out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    names = objective_names(study)
    frame = trials_frame(study)
    frame.to_csv(folder / "trials.csv", index=False)
    importances = param_importances(study, names)
    plots = draw(study, names, importances, folder)
    text = render(study, names, frame, importances, plots, shown(url))
    written = [write_text_atomic(folder / "report.md", text), folder / "trials.csv", *plots]
    log_to_parent(study, written)
    return written


def objective_names(study: optuna.Study) -> list[str]:
    return study.metric_names or [f"objective {i}" for i in range(len(study.directions))]


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, objective values, params (dotted config paths), duration, worker."""
    frame = study.trials_dataframe(attrs=("number", "state", "values", "params", "duration", "user_attrs"))
    if frame.empty:
        return frame
    frame.columns = [c.removeprefix("params_").removeprefix("values_").removeprefix("user_attrs_")
                     for c in frame.columns]
    if "duration" in frame:
        frame["duration"] = frame["duration"].dt.total_seconds().round(1)
        frame = frame.rename(columns={"duration": "seconds"})
    keep = [c for c in frame.columns if c not in ("mlflow_run_id", "output_dir", "error", "surplus")]
    return frame[keep]


def param_importances(study: optuna.Study, names: list[str]) -> dict[str, dict[str, float]] | str:
    """{objective: {param: importance}} by fANOVA (seeded), or the reason there are none."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return (f"not computed: {len(complete)} completed trial(s); parameter importances need at least "
                f"{MIN_TRIALS_FOR_IMPORTANCE}")
    varied = {name for name in complete[0].params if len({repr(t.params.get(name)) for t in complete}) > 1}
    if not varied:
        return "not computed: every completed trial has the same parameters"
    result = {}
    for i, name in enumerate(names):
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        try:
            result[name] = optuna.importance.get_param_importances(
                study, evaluator=evaluator, params=sorted(varied), target=lambda t, i=i: t.values[i]
            )
        except (RuntimeError, ValueError) as exc:  # e.g. every trial scored the same: no variance to share out
            return f"not computed: fANOVA on {name}: {exc}"
    return result


def draw(
    study: optuna.Study, names: list[str], importances: dict[str, dict[str, float]] | str, folder: Path
) -> list[Path]:
    """PNGs: the optimisation history (one objective) or the Pareto front (two or three), and importances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    drawn = []
    if len(names) == 1:
        drawn.append(("history.png", plots.plot_optimization_history(study, target_name=names[0])))
    elif len(names) <= 3:
        drawn.append(("pareto_front.png", plots.plot_pareto_front(study, target_names=names)))
    if isinstance(importances, dict):
        for i, name in enumerate(names):
            axes = plots.plot_param_importances(study, target=lambda t, i=i: t.values[i], target_name=name,
                                                evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
            drawn.append((f"importances_{_file_safe(name)}.png", axes))
    paths = []
    for file, axes in drawn:
        figure = axes.figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        figure.savefig(folder / file, dpi=100)
        plt.close(figure)
        paths.append(folder / file)
    return paths


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def render(
    study: optuna.Study,
    names: list[str],
    frame: pd.DataFrame,
    importances: dict[str, dict[str, float]] | str,
    plots: list[Path],
    storage: str,
) -> str:
    trials = study.get_trials(deepcopy=False)
    states = pd.Series([t.state.name for t in trials]).value_counts().to_dict() if trials else {}
    goal = study.user_attrs.get("n_trials")
    lines = [f"# Sweep report: {study.study_name}", ""]
    lines += [f"- storage: `{storage}`"]
    goals = [f"{n} ({d.name.lower()})" for n, d in zip(names, study.directions, strict=True)]
    lines += [f"- objectives: {', '.join(goals)}"]
    finished = states.get("COMPLETE", 0) + states.get("PRUNED", 0)
    lines += [f"- trials: {finished} finished" + (f" of {goal}" if goal else "") + " ("
              + ", ".join(f"{k.lower()} {v}" for k, v in sorted(states.items())) + ")" if trials else "- trials: none"]
    lines += ["- scores are on the validation split (selection never looks at test); each trial's test numbers "
              "are in its results.json", ""]
    lines += _best_section(study, names) + [""]
    lines += ["## Parameter importances", ""]
    if isinstance(importances, str):
        lines += [importances, ""]
    else:
        table = pd.DataFrame(importances).rename_axis("parameter").reset_index()
        lines += ["fANOVA, share of each objective's variance over the completed trials.", "", markdown_table(table),
                  ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    lines += ["## All trials", "", markdown_table(frame) if not frame.empty else "(no trials)", ""]
    return "\n".join(lines)


def _best_section(study: optuna.Study, names: list[str]) -> list[str]:
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return ["## Best trial", "", "No completed trial yet."]
    if len(names) == 1:
        best = study.best_trial
        rows = pd.DataFrame([{"trial": best.number, names[0]: best.value, **best.params}])
        return ["## Best trial", "", markdown_table(rows)]
    sign = -1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
    front = sorted(study.best_trials, key=lambda t: (sign * t.values[0], t.number))  # best first objective first
    rows = pd.DataFrame([{"trial": t.number, **dict(zip(names, t.values, strict=True)), **t.params} for t in front])
    return ["## Pareto front", "", f"{len(front)} trial(s) that no other completed trial beats on every objective:",
            "", markdown_table(rows), "", front_hypervolume(study, front)]


def front_hypervolume(study: optuna.Study, front: list[Any]) -> str:
    """The front's hypervolume, objectives signed so that higher is better, from the nadir of the completed trials.

    The reference point is the worst value of each objective over all completed trials (a sweep's objectives have
    no fixed scale, unlike compare's relative improvements): a trial at the nadir adds nothing, and the number
    compares fronts of the same study as it grows, not of different studies.
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    signs = np.array([1.0 if d == optuna.study.StudyDirection.MAXIMIZE else -1.0 for d in study.directions])
    nadir = (np.array([t.values for t in complete], dtype=float) * signs).min(axis=0)
    volume = hypervolume(np.array([t.values for t in front], dtype=float) * signs, nadir)
    worst = ", ".join(f"{v:.4g}" for v in nadir * signs)
    return (f"Hypervolume of the front: {volume:.4g} (objectives signed so that higher is better; reference point: "
            f"the worst completed value of each objective, ({worst}); comparable within this study only).")


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub markdown table; floats with 4 significant digits (whole counts in full), missing values empty.

    >>> print(markdown_table(pd.DataFrame({"a": [1, 2], "b": [0.123456, None], "params": [71224.0, 6e4]})))
    | a | b | params |
    |---|---|---|
    | 1 | 0.1235 | 71224 |
    | 2 |  | 60000 |
    """
    header = "| " + " | ".join(_cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) >= 1e4 else f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def log_to_parent(study: optuna.Study, paths: list[Path]) -> None:
    """Attach the report to the study's MLflow parent run (as artifacts under ``report/``), if it has one."""
    run_id, uri = study.user_attrs.get("mlflow_parent_run_id"), study.user_attrs.get("tracking_uri")
    if not run_id or not uri:
        return
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(uri)
        for path in paths:
            client.log_artifact(run_id, str(path), artifact_path="report")
    except MlflowException as exc:
        raise UserError(f"report written, but not logged to MLflow run {run_id} in {uri}: {exc.message}") from None
