"""Step time of every loss-weighting method relative to equal weighting (``ew``), measured side by side in one run.

    python benchmarks/weighting_step.py [--profile default] [--steps 10] [--repeats 2] [--only ew,uw,...] [--threads N]

Every method trains the same model from the same initial weights on the same pre-built batches (one of each task per
step): forward, the method's backward, gradient clipping and an AdamW step. Methods run interleaved, ``--repeats``
rounds in an order rotating each round, and each method's median step time is divided by ew's. Targets: loss-based
methods at most 1.1x; methods that need per-task gradients at most (T+1)x for T tasks.

``torchjd:NAME`` (e.g. ``--only ew,mgda,torchjd:mgda,imtlg,torchjd:imtlg``) times TorchJD's own float32 aggregator
for NAME in the same harness: the cost of our float64 / exact solves (``mtl_bench/weighting/exact.py``) against it.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import lightning as L
import torch
from _common import interleaved

from mtl_bench.config.load import build_config
from mtl_bench.data.datamodule import MultiTaskDataModule
from mtl_bench.data.prepare import prepare_suite
from mtl_bench.models.build import build_model
from mtl_bench.tasks.catalog import suite_tasks
from mtl_bench.training.system import bind_weighting
from mtl_bench.training.trainer import quiet_libraries
from mtl_bench.weighting import WEIGHTINGS
from mtl_bench.weighting.jacobian import AggregatorSpec, JacobianWeighting

TORCHJD = {
    "mgda": "MGDA",
    "imtlg": "IMTLG",
    "upgrad": "UPGrad",
    "dualproj": "DualProj",
    "config": "ConFIG",
    "pcgrad": "PCGrad",
    "alignedmtl": "AlignedMTL",
}


def make_weighting(name: str, tasks: list[str]):
    """The registered weighting, or for ``torchjd:NAME`` one running TorchJD's aggregator (its defaults)."""
    if not name.startswith("torchjd:"):
        return WEIGHTINGS.get(name)(tasks)
    import torchjd.aggregation

    cls = getattr(torchjd.aggregation, TORCHJD[name.removeprefix("torchjd:")])
    spec = AggregatorSpec(lambda num_tasks: cls(), weighted=False)
    return type(name, (JacobianWeighting,), {"spec": spec, "registry_name": name})(tasks)


def step_time(name: str, model, initial, tasks, batches, cfg, warmup: int) -> float:
    """Seconds per step of ``name`` over ``batches`` after ``warmup`` untimed steps."""
    model.load_state_dict(initial)
    L.seed_everything(0, verbose=False)
    weighting = make_weighting(name, sorted(tasks))
    bind_weighting(weighting, model)
    params = [p for p in [*model.parameters(), *weighting.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    model.train()
    start = 0.0
    for i, batch in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        losses = {t: tasks[t].loss(model, b) for t, b in sorted(batch.items()) if b is not None}
        optimizer.zero_grad(set_to_none=True)
        weighting.backward(losses, model.sharing.regularization())
        torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
        optimizer.step()
    return (time.perf_counter() - start) / (len(batches) - warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated method names (default: every registered one)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = build_config("ecommerce", args.profile, sets=[*args.set, "train.progress=false"])
    prepared = prepare_suite(suite_tasks("ecommerce"), cfg.data)
    L.seed_everything(0, verbose=False)
    model = build_model(cfg, prepared.tasks, prepared.vocab_size)
    initial = copy.deepcopy(model.state_dict())
    loader = MultiTaskDataModule(prepared.splits, cfg.train.batch_size, cfg.train.mixing, 0).train_dataloader()
    batches: list = []
    while len(batches) < args.warmup + args.steps:  # as many epochs as it takes
        batches += [batch for batch, _, _ in loader][: args.warmup + args.steps - len(batches)]
    names = ["ew"] + [n for n in (args.only.split(",") if args.only else WEIGHTINGS.names()) if n and n != "ew"]
    times = interleaved(  # the order rotates each round, so a busy spell does not always hit the same methods
        {n: (lambda n=n: step_time(n, model, initial, prepared.tasks, batches, cfg, args.warmup)) for n in names},
        args.repeats,
    )
    num_tasks = len(prepared.tasks)
    ew = statistics.median(times["ew"])
    params = sum(p.numel() for p in model.parameters())
    print(
        f"profile={args.profile} params={params:,} tasks={num_tasks} batch={cfg.train.batch_size}/task "
        f"threads={torch.get_num_threads()} steps={args.steps} repeats={args.repeats}"
    )
    print(f"{'method':<12} {'kind':<9} {'ms/step':>9} {'x ew':>6} {'target':>7}  ok")
    for name in names:
        kind = "gradient" if name.startswith("torchjd:") else WEIGHTINGS.get(name).kind
        target = 1.1 if kind == "loss" else num_tasks + 1.0
        ratio = statistics.median(times[name]) / ew
        mark = "yes" if ratio <= target else "NO"
        print(f"{name:<12} {kind:<9} {statistics.median(times[name]) * 1000:9.1f} {ratio:6.2f} {target:7.1f}  {mark}")


if __name__ == "__main__":
    main()
