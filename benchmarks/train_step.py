"""The mtl-bench training step (Lightning system) against a plain PyTorch loop: same model, same batches, one run.

    python benchmarks/train_step.py [--profile default] [--steps 30] [--repeats 3] [--set key=value ...]

Both sides start from identical weights and iterate the same CombinedLoader; each side runs ``--steps`` optimiser
steps after ``--warmup`` untimed ones, the two alternate ``--repeats`` times, and the medians are compared.
Prints steps/s for each and the ratio plain_time / ours_time (1.0 = no overhead; target >= 0.90).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from mtl_bench.config.load import build_config
from mtl_bench.data.datamodule import MultiTaskDataModule
from mtl_bench.data.prepare import prepare_suite
from mtl_bench.models.build import build_model
from mtl_bench.tasks.catalog import suite_tasks
from mtl_bench.training.fit import make_trainer, quiet_libraries
from mtl_bench.training.system import MultiTaskSystem, warmup_cosine
from mtl_bench.weighting import WEIGHTINGS


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
    timer = StepTimer(warmup)
    with tempfile.TemporaryDirectory() as out:
        trainer = make_trainer(
            cfg, Path(out), False, "cpu", "32-true", True, callbacks=[timer],
            max_steps=warmup + steps, max_epochs=-1, limit_val_batches=0,
        )
        trainer.fit(system, datamodule=datamodule)
    return (timer.end - timer.start) / steps


def plain(system: MultiTaskSystem, datamodule: MultiTaskDataModule, cfg: Any, steps: int, warmup: int) -> float:
    """The same work as the Lightning step, written as a bare loop: losses, sum, backward, clip, AdamW, schedule."""
    model, weighting, tasks = system.model, system.weighting, system.tasks
    optimizer = torch.optim.AdamW(system.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, cfg.train.warmup_steps, 10**6))
    model.train()
    loader = datamodule.train_dataloader()
    start, done = 0.0, 0
    while done < warmup + steps:
        for batch, _, _ in loader:
            if done == warmup:
                start = time.perf_counter()
            losses = {name: tasks[name].loss(model, b) for name, b in sorted(batch.items()) if b is not None}
            loss = weighting(losses)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(system.parameters(), cfg.train.grad_clip)
            optimizer.step()
            schedule.step()
            done += 1
            if done == warmup + steps:
                break
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    quiet_libraries()
    cfg = build_config("ecommerce", args.profile, sets=[*args.set, "train.progress=false"])
    prepared = prepare_suite(suite_tasks("ecommerce"), cfg.data)
    L.seed_everything(0, verbose=False)
    model = build_model(cfg, prepared.tasks, prepared.vocab_size)
    weighting = WEIGHTINGS.get(cfg.weighting.name)(sorted(prepared.tasks))
    initial = copy.deepcopy(model.state_dict())

    def fresh() -> tuple[MultiTaskSystem, MultiTaskDataModule]:
        model.load_state_dict(initial)
        L.seed_everything(0, verbose=False)
        dm = MultiTaskDataModule(prepared.splits, cfg.train.batch_size, cfg.train.mixing, seed=0)
        return MultiTaskSystem(model, prepared.tasks, weighting, cfg.train, total_steps=10**6), dm

    times: dict[str, list[float]] = {"plain": [], "ours": []}
    for _ in range(args.repeats):
        times["plain"].append(plain(*fresh(), cfg, args.steps, args.warmup))
        times["ours"].append(ours(*fresh(), cfg, args.steps, args.warmup))
    p, o = statistics.median(times["plain"]), statistics.median(times["ours"])
    params = sum(x.numel() for x in model.parameters())
    threads = torch.get_num_threads()
    print(f"profile={args.profile} params={params:,} batch={cfg.train.batch_size}/task threads={threads}")
    print(f"plain PyTorch loop : {1 / p:7.2f} steps/s  ({p * 1000:.1f} ms/step)")
    print(f"mtl-bench (Lightning): {1 / o:7.2f} steps/s  ({o * 1000:.1f} ms/step)")
    print(f"ratio (plain time / ours time): {p / o:.3f}  (target >= 0.90)")


if __name__ == "__main__":
    main()
