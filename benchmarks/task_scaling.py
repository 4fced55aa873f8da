"""How the training step time grows with the number of tasks T, for hard, soft and single-task sharing.

    python benchmarks/task_scaling.py [--profile default] [--tasks 1,2,4,8] [--steps 3] [--repeats 3] [--threads N]

The T tasks are copies of one task of the suite (``--task``; default: its first classification task), each with its
own head and its own batches (its own shuffling seed), exactly as mtl-bench trains several tasks: every step sees
one batch of every task. A step is the forward of every task, the ``ew`` backward (plus soft sharing's L2 tie),
gradient clipping and AdamW. Every (sharing, T) pair is a contender, all interleaved over ``--repeats`` rounds.
Printed: the median ms per step; its ratio to T = 1, where every sharing is the same model doing the same work, so
the T = 1 base is the median of all their T = 1 measurements together (steadier than one contender's); and the
cost of each added task, the slope of a least-squares line through the medians.

One more contender, ``hard-once``, shows the textbook case of hard sharing: all T tasks label the SAME batch, so
the shared backbone runs once and only the T heads run T times. mtl-bench's tasks come from different datasets
(each task has its own batch), so its hard sharing runs the backbone once per task, as the other sharings do.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from _common import interleaved, machine, medians, parser, setup, timed
from torch import Tensor

from mtl_bench.config.load import build_config
from mtl_bench.config.schema import RunConfig
from mtl_bench.core.types import Fused
from mtl_bench.data.batches import TaskData, task_loader
from mtl_bench.errors import UserError
from mtl_bench.models.build import build_model
from mtl_bench.tasks.base import TaskType
from mtl_bench.training.system import bind_weighting
from mtl_bench.weighting import WEIGHTINGS

SHARINGS = ("hard", "soft", "single-task")
ONCE = "hard-once"


def copies(task: TaskType, count: int) -> dict[str, TaskType]:
    """``count`` tasks that are ``task`` under the names NAME-1 .. NAME-count (sorted order = numeric order)."""
    names = [f"{task.spec.name}-{i:0{len(str(count))}d}" for i in range(1, count + 1)]
    return {name: type(task)(task.spec.model_copy(update={"name": name}), task.ctx) for name in names}


def batches(data: TaskData, size: int, seed: int) -> Iterator[dict[str, Any]]:
    """Training batches of ``data`` forever (one shuffled pass after another)."""
    loader = task_loader(data, size, shuffle=True, seed=seed)
    while True:
        yield from loader


class EncodeOnce:
    """Stands in for the model in ``task.loss`` with the backbone's output for the shared batch computed once."""

    def __init__(self, model: torch.nn.Module, fused: Fused) -> None:
        self.model, self.fused = model, fused

    def features(self, task: str, inputs: dict[str, Tensor]) -> Fused:
        return self.fused

    def __call__(self, task: str, inputs: dict[str, Tensor], **head_kwargs: Any) -> Tensor:
        return self.model.heads[task](self.fused, **head_kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def contender(cfg: RunConfig, tasks: dict[str, TaskType], vocab: int, data: TaskData, once: bool, args: Any) -> float:
    """Build a fresh model for ``tasks`` and return its seconds per training step."""
    L.seed_everything(0, verbose=False)
    model = build_model(cfg, tasks, vocab)
    model.train()
    weighting = WEIGHTINGS.get("ew")(sorted(tasks))
    bind_weighting(weighting, model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    streams = {name: batches(data, cfg.train.batch_size, seed=i) for i, name in enumerate(sorted(tasks))}
    lead = sorted(tasks)[0]

    def step() -> None:
        if once:  # one batch for every task: the backbone runs once
            batch = next(streams[lead])
            shared = EncodeOnce(model, model.sharing(lead, tasks[lead].inputs(batch)))
            losses = {name: task.loss(shared, batch) for name, task in sorted(tasks.items())}
        else:
            losses = {name: task.loss(model, next(streams[name])) for name, task in sorted(tasks.items())}
        optimizer.zero_grad(set_to_none=True)
        weighting.backward(losses, model.sharing.regularization())
        if cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
        optimizer.step()

    return timed(step, args.steps, args.warmup)


def base_task(tasks: dict[str, TaskType], name: str | None) -> str:
    """The task to copy: ``name``, else the first classification task of the suite (else its first task)."""
    if name is not None:
        if name not in tasks:
            raise UserError(f"--task {name!r}: expected one of {', '.join(sorted(tasks))}")
        return name
    return next((n for n, t in sorted(tasks.items()) if t.spec.type == "classification"), sorted(tasks)[0])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__, steps=3, warmup=1, repeats=3)
    p.add_argument("--tasks", default="1,2,3,4,5,6,7,8", help="comma-separated task counts T (1 always added)")
    p.add_argument("--task", default=None, help="the suite task to copy (default: its first classification task)")
    args = p.parse_args(argv)
    try:
        counts = sorted({1, *(int(t) for t in args.tasks.split(",") if t.strip())})  # T = 1 is the base
    except ValueError:
        counts = [0]
    if counts[0] < 1:
        raise UserError(f"--tasks {args.tasks!r}: expected positive task counts, e.g. 1,2,4,8")
    cfg, prepared = setup(args)
    name = base_task(prepared.tasks, args.task)
    data = prepared.splits[name]["train"]
    cfgs = {s: build_config(args.suite, args.profile, {"sharing.name": s}, [*args.set, "train.progress=false"])
            for s in SHARINGS}
    work: dict[str, Any] = {}
    for t in counts:
        tasks = copies(prepared.tasks[name], t)
        for s in (*SHARINGS, ONCE):
            once = s == ONCE
            work[f"{s}@{t}"] = (lambda c=cfgs["hard" if once else s], k=tasks, o=once:
                                contender(c, k, prepared.vocab_size, data, o, args))
    times = interleaved(work, args.repeats)
    med = medians(times)
    ms = {s: {t: med[f"{s}@{t}"] * 1000 for t in counts} for s in (*SHARINGS, ONCE)}
    base = statistics.median(x * 1000 for s in ms for x in times[f"{s}@1"])
    growth = {s: {t: ms[s][t] / base for t in counts} for s in ms}
    per_task = {s: slope(counts, [ms[s][t] for t in counts]) for s in ms}
    print(f"suite={args.suite} profile={args.profile} task={name} (x T copies) batch={cfg.train.batch_size}/task "
          f"steps={args.steps} repeats={args.repeats}")
    print(f"machine: {machine()}")
    print(f"T = 1 base (all sharings): {base:.1f} ms/step")
    print(f"{'T':>3} " + " ".join(f"{s + ' ms':>16} {'x base':>7}" for s in ms))
    for t in counts:
        print(f"{t:>3} " + " ".join(f"{ms[s][t]:16.1f} {growth[s][t]:7.2f}" for s in ms))
    print("ms per added task: " + ", ".join(f"{s} {per_task[s]:.1f}" for s in ms))
    return {"task": name, "counts": counts, "ms": ms, "base_ms": base, "growth": growth, "per_task_ms": per_task}


def slope(xs: list[int], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 for a single point).

    >>> slope([1, 2, 3], [10.0, 12.0, 14.0])
    2.0
    """
    if len(xs) < 2:
        return 0.0
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


if __name__ == "__main__":
    main(sys.argv[1:])
