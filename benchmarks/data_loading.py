"""Data loading throughput against what the training step consumes: the loader must never be the bottleneck.

    python benchmarks/data_loading.py [--profile default] [--steps 20] [--repeats 3] [--threads N] [--device cuda]

Loader: the training ``CombinedLoader`` of ``MultiTaskDataModule`` (one batch of every task per item, read in the
main process as the Trainer reads it), iterated without training; samples/s = samples of all tasks per combined
batch / seconds per combined batch. Step: forward of every task, ``ew`` backward, gradient clipping and AdamW on
batches fetched beforehand, so it holds no loading. The two alternate for ``--repeats`` rounds; printed: both
throughputs and their ratio, loader / step (target >= 3: loading then costs at most a quarter of a step).
With ``--device cuda`` the step runs on the GPU under bf16 autocast (as a GPU run does) and the loader's figure
includes copying each batch to the GPU: on a fast GPU the loader is the part to watch.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from _common import interleaved, machine, medians, parser, setup, timed

from mtl_bench.data.datamodule import MultiTaskDataModule
from mtl_bench.models.build import build_model
from mtl_bench.training.system import bind_weighting
from mtl_bench.weighting import WEIGHTINGS

TARGET = 3.0


def combined_batches(datamodule: MultiTaskDataModule) -> Iterator[dict[str, Any]]:
    """Training combined batches forever, epoch after epoch (a fresh CombinedLoader each epoch, as the Trainer)."""
    while True:
        for batch, _, _ in datamodule.train_dataloader():
            yield batch


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch on ``device``, the copy finished (so its time is counted where it is made)."""
    if device.type == "cpu":
        return batch
    moved = {name: {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()}
             for name, b in batch.items() if b is not None}
    torch.cuda.synchronize(device)
    return moved


def samples(batch: dict[str, Any]) -> int:
    return sum(len(b["target"]) for b in batch.values() if b is not None)


def loader_rate(datamodule: MultiTaskDataModule, steps: int, warmup: int, device: torch.device) -> float:
    """Samples per second of iterating the training loader, after ``warmup`` untimed combined batches."""
    stream = combined_batches(datamodule)
    for _ in range(warmup):
        to_device(next(stream), device)
    count, start = 0, time.perf_counter()
    for _ in range(steps):
        count += samples(to_device(next(stream), device))
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__, steps=20, warmup=2, repeats=3)
    p.add_argument("--device", default="cpu", help="where the training step runs: cpu or cuda")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cfg, prepared = setup(args)
    datamodule = MultiTaskDataModule(prepared.splits, cfg.train.batch_size, cfg.train.mixing, seed=0)
    L.seed_everything(0, verbose=False)
    model = build_model(cfg, prepared.tasks, prepared.vocab_size).to(device)
    model.train()
    weighting = WEIGHTINGS.get(cfg.weighting.name)(sorted(prepared.tasks), **cfg.weighting.options)
    bind_weighting(weighting, model)
    params = [p for p in [*model.parameters(), *weighting.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    stream = combined_batches(datamodule)
    fetched = [to_device(next(stream), device) for _ in range(min(args.steps + args.warmup, 8))]  # no loading timed
    position = {"i": 0}

    def step() -> None:
        batch = fetched[position["i"] % len(fetched)]
        position["i"] += 1
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            losses = {name: prepared.tasks[name].loss(model, b) for name, b in sorted(batch.items()) if b is not None}
        optimizer.zero_grad(set_to_none=True)
        weighting.backward(losses, model.sharing.regularization())
        if cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    per_step = sum(samples(b) for b in fetched) / len(fetched)
    rates = medians(interleaved(
        {
            "loader": lambda: loader_rate(datamodule, args.steps, args.warmup, device),
            "step": lambda: per_step / timed(step, max(1, args.steps // 4), args.warmup),
        },
        args.repeats,
    ))
    ratio = rates["loader"] / rates["step"]
    print(f"suite={args.suite} profile={args.profile} tasks={len(prepared.tasks)} batch={cfg.train.batch_size}/task "
          f"({per_step:.0f} samples per combined batch) repeats={args.repeats}")
    print(f"machine: {machine()}; step on {device}")
    print(f"training loader : {rates['loader']:10.0f} samples/s ({per_step / rates['loader'] * 1000:.2f} ms/batch)")
    print(f"training step   : {rates['step']:10.0f} samples/s ({per_step / rates['step'] * 1000:.1f} ms/step)")
    print(f"ratio (loader / step): {ratio:.1f}x  (target >= {TARGET:.0f}x)")
    return {"loader_samples_per_s": rates["loader"], "step_samples_per_s": rates["step"], "ratio": ratio,
            "target": TARGET}


if __name__ == "__main__":
    main(sys.argv[1:])
