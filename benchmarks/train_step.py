"""The mtl-bench training step (Lightning system) against a plain PyTorch loop: same model, same batches, one run.

    python benchmarks/train_step.py [--profile default] [--steps 30] [--repeats 4] [--threads N] [--set key=value]

Both sides start from identical weights, iterate the same CombinedLoader, build their optimiser and LR schedule with
the system's own ``configure_optimizers`` (same AdamW parameter groups) and run under the same determinism setting a
CPU run uses. Each side runs ``--steps`` optimiser steps after ``--warmup`` untimed ones, timed from the start of the
first timed step to the end of the last (data loading between steps included on both sides); the sides alternate,
the first side changing every round, for ``--repeats`` rounds, and the medians are compared.
Prints steps/s for each and the ratio plain_time / ours_time (1.0 = no overhead; target >= 0.95).
"""

from __future__ import annotations

import copy
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from _common import interleaved, machine, medians, parser, setup

from mtl_bench.data.datamodule import MultiTaskDataModule
from mtl_bench.models.build import build_model
from mtl_bench.training.system import MultiTaskSystem
from mtl_bench.training.trainer import make_trainer
from mtl_bench.weighting import WEIGHTINGS

TARGET = 0.95


class StepTimer(L.Callback):
    """Wall time from the start of the first timed step to the end of the last one."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = 0.0
        self.end = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.end = time.perf_counter()


def ours(system: MultiTaskSystem, datamodule: MultiTaskDataModule, cfg: Any, steps: int, warmup: int) -> float:
    """Seconds per step of ``trainer.fit``, configured as a CPU run is (no validation, no checkpoint files)."""
    timer = StepTimer(warmup)
    with tempfile.TemporaryDirectory() as out:
        trainer = make_trainer(
            cfg, Path(out), False, "cpu", "32-true", True, callbacks=[timer],
            max_steps=warmup + steps, max_epochs=-1, limit_val_batches=0, enable_checkpointing=False,
        )
        trainer.fit(system, datamodule=datamodule)
    return (timer.end - timer.start) / steps


def plain(system: MultiTaskSystem, datamodule: MultiTaskDataModule, cfg: Any, steps: int, warmup: int) -> float:
    """The same work as the Lightning step, written as a bare loop: losses, weighting backward, clip, AdamW, LR."""
    model, weighting, tasks = system.model, system.weighting, system.tasks
    configured = system.configure_optimizers()
    optimizer, schedule = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    params = [p for p in system.parameters() if p.requires_grad]
    system.train()
    loader = datamodule.train_dataloader()
    start, done = 0.0, 0
    while done < warmup + steps:
        for batch, _, _ in loader:
            if done == warmup:
                start = time.perf_counter()
            losses = {name: tasks[name].loss(model, b) for name, b in sorted(batch.items()) if b is not None}
            optimizer.zero_grad(set_to_none=True)
            weighting.backward(losses, model.sharing.regularization())
            if cfg.train.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
            optimizer.step()
            schedule.step()
            done += 1
            if done == warmup + steps:
                break
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser(__doc__, steps=30, warmup=5, repeats=4).parse_args(argv)
    cfg, prepared = setup(args)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)  # what a CPU run's Trainer sets, on both sides from the start
    try:
        return measure(args, cfg, prepared)
    finally:
        torch.use_deterministic_algorithms(deterministic)


def measure(args: Any, cfg: Any, prepared: Any) -> dict[str, Any]:
    """Both sides, interleaved; prints the figures and returns them."""
    L.seed_everything(0, verbose=False)
    model = build_model(cfg, prepared.tasks, prepared.vocab_size)
    weighting = WEIGHTINGS.get(cfg.weighting.name)(sorted(prepared.tasks), **cfg.weighting.options)
    initial = copy.deepcopy(model.state_dict())
    initial_weighting = copy.deepcopy(weighting.state_dict())

    def fresh() -> tuple[MultiTaskSystem, MultiTaskDataModule]:
        model.load_state_dict(initial)
        weighting.load_state_dict(initial_weighting)
        L.seed_everything(0, verbose=False)
        dm = MultiTaskDataModule(prepared.splits, cfg.train.batch_size, cfg.train.mixing, seed=0)
        return MultiTaskSystem(model, prepared.tasks, weighting, cfg.train, total_steps=10**6), dm

    times = interleaved(
        {
            "plain": lambda: plain(*fresh(), cfg, args.steps, args.warmup),
            "ours": lambda: ours(*fresh(), cfg, args.steps, args.warmup),
        },
        args.repeats,
    )
    med = medians(times)
    ratio = med["plain"] / med["ours"]
    params = sum(x.numel() for x in model.parameters())
    print(f"suite={args.suite} profile={args.profile} tasks={len(prepared.tasks)} params={params:,} "
          f"batch={cfg.train.batch_size}/task steps={args.steps} repeats={args.repeats}")
    print(f"machine: {machine()}")
    for name, label in (("plain", "plain PyTorch loop   "), ("ours", "mtl-bench (Lightning)")):
        rounds = " ".join(f"{t * 1000:.1f}" for t in times[name])
        print(f"{label}: {1 / med[name]:7.2f} steps/s  ({med[name] * 1000:.1f} ms/step; rounds: {rounds})")
    print(f"ratio (plain time / ours time): {ratio:.3f}  (target >= {TARGET})")
    return {"plain_ms": med["plain"] * 1000, "ours_ms": med["ours"] * 1000, "ratio": ratio, "target": TARGET,
            "rounds": times}


if __name__ == "__main__":
    main(sys.argv[1:])
