"""Training throughput and model FLOP utilisation on one GPU (sized for an H200): bf16 and torch.compile vs fp32 eager.

    python benchmarks/gpu_h200.py                          # GPU-sized config (GPU_SETS), needs a CUDA device
    python benchmarks/gpu_h200.py --set train.batch_size=512 --steps 50   # any override on top of GPU_SETS
    python benchmarks/gpu_h200.py --cpu-check              # smoke config on CPU: proves the script runs, no figures

Contenders, each with its own copy of the same initial model, its own AdamW and the same batches (fetched to the
device beforehand, so no loading is timed): ``fp32-eager``; ``bf16-eager`` (``torch.autocast`` bf16, the
precision of a GPU run); ``bf16-compile`` (the model wrapped in ``torch.compile``, plus autocast). A step is every
task's forward, the ``ew`` backward, gradient clipping and AdamW. The contenders are interleaved over ``--repeats``
rounds and the medians compared.

Model FLOP utilisation = training FLOP/s / peak FLOP/s, with training FLOPs = 3 x forward FLOPs (backward ~ 2x
forward) and forward FLOPs per sample counted by torch's flop counter (``evaluation/measures.py:flops_per_sample``).
Peak: ``--peak-tflops``, default 989 = H200 SXM dense bf16 (without sparsity); every row, fp32 included, is
measured against that one number, so the rows compare directly.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from _common import interleaved, machine, medians, parser, setup

from mtl_bench.data.datamodule import MultiTaskDataModule
from mtl_bench.evaluation.measures import flops_per_sample
from mtl_bench.models.build import build_model
from mtl_bench.training.system import bind_weighting
from mtl_bench.weighting import WEIGHTINGS

H200_BF16_DENSE_TFLOPS = 989.0
# A model and batch big enough to keep one H200 busy (the default profile's 1M-parameter model is CPU-sized).
GPU_SETS = ["model.dim=512", "model.heads=8", "model.image_channels=[64,128]", "model.text_layers=2",
            "model.video_layers=2", "model.fusion_layers=2", "model.caption_layers=2", "train.batch_size=256"]
CPU_CHECK_SETS = ["train.batch_size=4"]
CONTENDERS = {"fp32-eager": (False, False), "bf16-eager": (True, False), "bf16-compile": (True, True)}


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {name: {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()}
            for name, b in batch.items() if b is not None}


def make_step(base: torch.nn.Module, prepared: Any, cfg: Any, batches: list[dict[str, Any]], bf16: bool,
              compile_backend: str | None, device: torch.device) -> Callable[[], None]:
    """One contender's training step (its own model copy and optimiser), cycling through ``batches``."""
    model = copy.deepcopy(base).to(device).train()
    run = torch.compile(model, backend=compile_backend) if compile_backend else model
    weighting = WEIGHTINGS.get("ew")(sorted(prepared.tasks))
    bind_weighting(weighting, model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    position = [0]

    def step() -> None:
        batch = batches[position[0] % len(batches)]
        position[0] += 1
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            losses = {name: prepared.tasks[name].loss(run, b) for name, b in sorted(batch.items())}
        optimizer.zero_grad(set_to_none=True)
        weighting.backward(losses, model.sharing.regularization())
        if cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
        optimizer.step()

    return step


def seconds_per_step(step: Callable[[], None], steps: int, warmup: int, device: torch.device) -> float:
    """Wall seconds per step, the device's queue drained before the clock starts and before it stops."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__, steps=20, warmup=5, repeats=3)
    p.add_argument("--cpu-check", action="store_true", help="tiny config on CPU: checks the script, not the GPU")
    p.add_argument("--peak-tflops", type=float, default=H200_BF16_DENSE_TFLOPS, help="peak for the utilisation")
    p.add_argument("--compile-backend", default=None, help="torch.compile backend (default: inductor; eager on CPU)")
    args = p.parse_args(argv)
    if args.cpu_check:  # smoke profile, batch 4, at most 2 steps and 1 round: seconds
        device, backend = torch.device("cpu"), args.compile_backend or "eager"  # eager: no C++ compiler needed
        args.profile, args.set = "smoke", [*CPU_CHECK_SETS, *args.set]
        args.steps, args.warmup, args.repeats = min(args.steps, 2), min(args.warmup, 1), 1
    elif torch.cuda.is_available():
        device, backend = torch.device("cuda"), args.compile_backend or "inductor"
        args.set = [*GPU_SETS, *args.set]
    else:
        raise SystemExit("gpu_h200.py: no CUDA device here; run it on the GPU, or pass --cpu-check for a tiny CPU run")
    cfg, prepared = setup(args)
    L.seed_everything(0, verbose=False)
    base = build_model(cfg, prepared.tasks, prepared.vocab_size).to(device)
    train = {name: splits["train"] for name, splits in prepared.splits.items()}
    forward_flops = flops_per_sample(base, prepared.tasks, train)  # per task, one sample
    datamodule = MultiTaskDataModule(prepared.splits, cfg.train.batch_size, cfg.train.mixing, seed=0)
    batches = [to_device(b, device) for b, _, _ in list(datamodule.train_dataloader())[:4]]  # full batches only
    per_step = {name: len(b["target"]) for name, b in batches[0].items()}
    step_flops = 3 * sum(forward_flops[name] * n for name, n in per_step.items())
    steps = {name: make_step(base, prepared, cfg, batches, bf16, backend if comp else None, device)
             for name, (bf16, comp) in CONTENDERS.items()}
    peaks: dict[str, float] = {}

    def measure(name: str) -> float:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = seconds_per_step(steps[name], args.steps, args.warmup, device)
        if device.type == "cuda":
            peaks[name] = max(peaks.get(name, 0.0), torch.cuda.max_memory_allocated(device) / 2**30)
        return seconds

    med = medians(interleaved({name: (lambda n=name: measure(n)) for name in CONTENDERS}, args.repeats))
    params = sum(x.numel() for x in base.parameters())
    samples = sum(per_step.values())
    print(f"suite={args.suite} profile={args.profile} tasks={len(prepared.tasks)} params={params:,} "
          f"batch={cfg.train.batch_size}/task ({samples} samples/step) steps={args.steps} repeats={args.repeats} "
          f"compile backend={backend}{'  [CPU CHECK: figures mean nothing]' if args.cpu_check else ''}")
    print(f"machine: {machine()}")
    print(f"training FLOPs/step (3 x forward) = {step_flops / 1e9:.2f} GFLOP; peak = {args.peak_tflops:g} TFLOP/s")
    rows = {}
    for name, seconds in med.items():
        achieved = step_flops / seconds / 1e12
        rows[name] = {"ms_per_step": seconds * 1000, "samples_per_s": samples / seconds, "tflops": achieved,
                      "mfu": achieved / args.peak_tflops, "speedup": med["fp32-eager"] / seconds,
                      "peak_memory_gb": peaks.get(name)}
    print(f"{'contender':<13} {'ms/step':>9} {'samples/s':>10} {'TFLOP/s':>9} {'MFU':>8} {'x fp32':>7} {'mem GB':>7}")
    for name, r in rows.items():
        memory = f"{r['peak_memory_gb']:7.1f}" if r["peak_memory_gb"] is not None else "    n/a"
        print(f"{name:<13} {r['ms_per_step']:9.1f} {r['samples_per_s']:10.0f} {r['tflops']:9.3f} "
              f"{r['mfu'] * 100:7.2f}% {r['speedup']:7.2f} {memory}")
    return {"device": str(device), "step_flops": step_flops, "peak_tflops": args.peak_tflops, "rows": rows}


if __name__ == "__main__":
    main(sys.argv[1:])
