"""``mtl-bench distill``: shrink a trained multi-task teacher into a smaller student, and show what it costs.

Two runs of the same student architecture on the teacher's data, same seed and budget: one trained on the ground
truth alone, one on ``alpha * distillation + (1 - alpha) * ground truth`` (each task type's ``distill_loss``: soft
targets at temperature T, token-level for captions). The report puts the teacher, the distilled student and the
plain student side by side per task, with parameters, FLOPs per sample and CPU inference latency.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtl_bench.config.student import STUDENTS, check_distill, student_config  # noqa: F401  (STUDENTS: re-exported)
from mtl_bench.data.batches import TaskData, to_float_pixels
from mtl_bench.losses.distillation import Distillation
from mtl_bench.results.io import read_results, write_json_atomic, write_text_atomic
from mtl_bench.results.schema import Results
from mtl_bench.tasks.base import TaskType
from mtl_bench.training.signals import Stopped, handle_stops, later


def _batch(data: TaskData, size: int) -> dict[str, Any]:
    idx = torch.arange(size) % len(data)
    batch: dict[str, Any] = {k: to_float_pixels(k, v[idx]) for k, v in sorted(data.inputs.items())}
    batch["target"] = data.target[idx]
    return batch


@torch.no_grad()
def latency_ms(
    models: dict[str, nn.Module], tasks: dict[str, TaskType], test: dict[str, TaskData], batch: int, repeats: int = 7
) -> dict[str, float]:
    """Median CPU time to predict one batch of every task, per model; models interleave so noise hits all alike."""
    batches = {name: _batch(test[name], batch) for name in tasks}
    times: dict[str, list[float]] = {key: [] for key in models}
    for model in models.values():
        model.eval()
    for round_ in range(repeats + 1):
        for key, model in models.items():
            start = time.perf_counter()
            for name, task in tasks.items():
                task.predict(model, batches[name])
            if round_:  # the first round warms up
                times[key].append(1000 * (time.perf_counter() - start))
    return {key: round(statistics.median(t), 3) for key, t in times.items()}


def report(teacher: Results, plain: Results, distilled: Results, latency: dict[int, dict[str, float]]
           ) -> dict[str, Any]:
    """Per task: main scores and the distilled student's share of the teacher's; per model: the costs."""
    runs = {"teacher": teacher, "student": plain, "distilled": distilled}
    tasks = {}
    for name, t in sorted(teacher.tasks.items()):
        main = t.main_score
        scores = {key: r.tasks[name].metrics[main] for key, r in runs.items()}
        tasks[name] = scores | {
            "main_score": main,
            "retained": scores["distilled"] / scores["teacher"] if scores["teacher"] else float("nan"),
            "distillation_gain": scores["distilled"] - scores["student"],
        }
    costs = {
        key: {
            "params": r.cost.params,
            "flops_per_sample": sum(r.cost.flops_per_sample.values()),
            "latency_ms_batch1": latency[1][key],
            "latency_ms_batch64": latency[64][key],
        }
        for key, r in runs.items()
    }
    return {"tasks": tasks, "costs": costs, "size_ratio": costs["teacher"]["params"] / costs["student"]["params"]}


def markdown(summary: dict[str, Any]) -> str:
    lines = ["| task | main score | teacher | distilled student | student alone | retained | gain |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, t in summary["tasks"].items():
        lines.append(f"| {name} | {t['main_score']} | {t['teacher']:.3f} | {t['distilled']:.3f} | "
                     f"{t['student']:.3f} | {100 * t['retained']:.0f}% | {t['distillation_gain']:+.3f} |")
    lines += ["", "| model | params | MFLOPs/sample | CPU ms, batch 1 | CPU ms, batch 64 |",
              "|---|---:|---:|---:|---:|"]
    for key, c in summary["costs"].items():
        lines.append(f"| {key} | {c['params']:,} | {c['flops_per_sample'] / 1e6:.1f} | {c['latency_ms_batch1']:.1f} | "
                     f"{c['latency_ms_batch64']:.1f} |")
    return "\n".join(lines) + f"\n\nThe teacher is {summary['size_ratio']:.1f}x the student's size.\n"


def distill(
    teacher_dir: str | Path,
    student: str = "small",
    profile: str | None = None,
    sets: list[str] | None = None,
    output_dir: str | Path | None = None,
    temperature: float = 2.0,
    alpha: float = 0.5,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Train the plain and the distilled student, measure all three models, write distill.json and distill.md.

    SIGTERM or SIGINT raises ``Stopped`` naming the student that was training (its MLflow run is marked KILLED).
    distill does not resume: the same command trains both students again from the start.
    """
    phase = ["before training the students"]  # what was going on, for the line a stop signal prints
    with handle_stops():
        try:
            return _distill(teacher_dir, student, profile, sets, output_dir, temperature, alpha, tracking_uri, phase)
        except Stopped as stop:
            stop.where = f"{phase[0]}{' ' + stop.where if stop.where else ''}"
            stop.advice, stop.add_resume = "distill cannot resume; rerunning trains both students again", False
            raise


def _distill(
    teacher_dir: str | Path,
    student: str,
    profile: str | None,
    sets: list[str] | None,
    output_dir: str | Path | None,
    temperature: float,
    alpha: float,
    tracking_uri: str | None,
    phase: list[str],
) -> dict[str, Any]:
    from mtl_bench.commands.run import run
    from mtl_bench.evaluation.predictions import load_run_model

    teacher_dir = Path(teacher_dir)
    check_distill(teacher_dir, student, profile, sets or [], temperature, alpha)  # every bad input, before loading
    teacher_results = read_results(teacher_dir / "results.json")
    teacher_cfg, prepared, teacher = load_run_model(teacher_dir)
    cfg = student_config(teacher_cfg, student, profile, sets or [])
    out = Path(output_dir) if output_dir else teacher_dir.parent / f"distill-{student}"
    phase[0] = "while training the plain student (1 of 2),"
    plain = run(cfg, out / "student", tracking_uri=tracking_uri, baselines_dir=out / "baselines")
    settings = Distillation(teacher.requires_grad_(False), temperature, alpha)
    phase[0] = "while training the distilled student (2 of 2),"
    distilled = run(cfg, out / "distilled", tracking_uri=tracking_uri, baselines_dir=out / "baselines",
                    distillation=settings)
    phase[0] = "after both students were trained, while measuring them"
    _, _, student_model = load_run_model(out / "distilled")
    test = {name: s["test"] for name, s in prepared.splits.items()}
    models = {"teacher": teacher, "student": student_model}
    latency = {b: latency_ms(models, prepared.tasks, test, b) for b in (1, 64)}
    for per_batch in latency.values():
        per_batch["distilled"] = per_batch["student"]  # the same architecture
    summary = report(teacher_results, plain, distilled, latency)
    summary |= {"teacher": str(teacher_dir), "student": student, "temperature": temperature, "alpha": alpha,
                "threads": torch.get_num_threads(), "output_dir": str(out)}
    with later():  # distill.json and distill.md together
        write_json_atomic(out / "distill.json", summary)
        write_text_atomic(out / "distill.md", markdown(summary))
    return summary
