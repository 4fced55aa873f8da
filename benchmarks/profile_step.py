"""Where the time of one training step goes: torch.profiler's top operators and the step's parts, per step.

    python benchmarks/profile_step.py [--profile default] [--steps 6] [--warmup 3] [--threads 1] [--top 15]

The step is the plain one (every task's forward, ``ew`` backward, gradient clipping, AdamW) on batches fetched
beforehand. Printed, in ms per step: the operators with the most self CPU time, the phases (each task's forward,
backward, clip, optimiser) and the forward time of each encoder, the fusion and each head (inclusive: the image
encoder's line includes the frames it encodes for the video encoder). The profiler adds overhead to every operator,
so read the shares, not the absolute times; ``--threads 1`` keeps them steady on a shared machine.
"""

from __future__ import annotations

import sys
from typing import Any

import lightning as L
import torch
from _common import machine, parser, setup
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from mtl_bench.data.datamodule import MultiTaskDataModule
from mtl_bench.models.build import build_model
from mtl_bench.training.system import bind_weighting
from mtl_bench.weighting import WEIGHTINGS

PARTS = ("encoders.image", "encoders.text", "encoders.video", "fusion")  # module name endings worth a line


def label_parts(model: torch.nn.Module) -> None:
    """Wrap the forward of each encoder, fusion and head in a profiler range named after the module."""
    for name, module in model.named_modules():
        if name.endswith(PARTS) or (name.startswith("heads.") and name.count(".") == 1):
            ranges: list[Any] = []  # a stack: the video encoder's frame encoder is the image encoder again
            module.register_forward_pre_hook(
                lambda m, a, n=name, r=ranges: r.append(record_function(f"part:{n}").__enter__())
            )
            module.register_forward_hook(lambda m, a, o, r=ranges: r.pop().__exit__(None, None, None))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__, steps=6, warmup=3, repeats=1)
    p.add_argument("--top", type=int, default=15, help="operators to list")
    args = p.parse_args(argv)
    cfg, prepared = setup(args)
    L.seed_everything(0, verbose=False)
    model = build_model(cfg, prepared.tasks, prepared.vocab_size).train()
    weighting = WEIGHTINGS.get("ew")(sorted(prepared.tasks))
    bind_weighting(weighting, model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    loader = MultiTaskDataModule(prepared.splits, cfg.train.batch_size, cfg.train.mixing, 0).train_dataloader()
    batches: list[dict[str, Any]] = []
    while len(batches) < args.steps + args.warmup:  # as many epochs as it takes
        batches += [b for b, _, _ in loader][: args.steps + args.warmup - len(batches)]
    label_parts(model)

    def step(batch: dict[str, Any]) -> None:
        losses = {}
        for name, b in sorted(batch.items()):
            with record_function(f"phase:forward {name}"):
                losses[name] = prepared.tasks[name].loss(model, b)
        optimizer.zero_grad(set_to_none=True)
        with record_function("phase:backward"):
            weighting.backward(losses, model.sharing.regularization())
        with record_function("phase:clip"):
            torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
        with record_function("phase:optimizer"):
            optimizer.step()

    for batch in batches[: args.warmup]:
        step(batch)
    timed = batches[args.warmup :]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in timed:
            step(batch)
    events = prof.key_averages()
    per_step = len(timed) * 1000.0  # profiler times are microseconds
    ops = [e for e in events if not e.key.startswith(("phase:", "part:"))]
    total = sum(e.self_cpu_time_total for e in ops) / per_step
    top = sorted(ops, key=lambda e: -e.self_cpu_time_total)[: args.top]
    ranges = {e.key: e.cpu_time_total / per_step for e in events if e.key.startswith(("phase:", "part:"))}
    print(f"suite={args.suite} profile={args.profile} tasks={len(prepared.tasks)} batch={cfg.train.batch_size}/task "
          f"profiled steps={len(timed)}")
    print(f"machine: {machine()}")
    print(f"all operators: {total:.1f} ms/step (self CPU, profiled)")
    print(f"{'operator':<40} {'ms/step':>8} {'share':>6} {'calls/step':>10}")
    rows = []
    for e in top:
        ms = e.self_cpu_time_total / per_step
        rows.append({"op": e.key, "ms": ms, "share": ms / total, "calls": e.count / len(timed)})
        print(f"{e.key:<40} {ms:8.1f} {ms / total:6.1%} {e.count / len(timed):10.1f}")
    print(f"{'part (inclusive)':<40} {'ms/step':>8}")
    for key, ms in sorted(ranges.items(), key=lambda kv: -kv[1]):
        print(f"{key:<40} {ms:8.1f}")
    return {"total_ms": total, "top": rows, "ranges": ranges}


if __name__ == "__main__":
    main(sys.argv[1:])
