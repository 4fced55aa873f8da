"""Multi-process training (DDP) through Lightning's strategies, and the few things our manual optimisation does itself.

Lightning launches the processes (``--devices N --strategy ddp``: its own launcher re-runs the command once per
extra device with ``LOCAL_RANK``/``NODE_RANK``/``WORLD_SIZE`` set; torchrun and SLURM start them themselves), wraps
the system in ``DistributedDataParallel`` and syncs the torchmetrics states. What it cannot do for us:

- **Gradients.** The weightings own the backward pass and take it in several forms (one weighted sum; one
  ``autograd.grad`` per task for the gradient-based ones; the sharing's extra term). DDP's reducer only averages
  gradients that autograd accumulates after it has been prepared, and a prepared reducer that never sees them fails
  at the next step. So the reducer stays off during the step (``without_reducer``) and ``average_gradients``
  averages every ``.grad`` afterwards in one collective; the gradient-based weightings average each task's gradient
  before aggregating it (``core/distributed.py``). No ``find_unused_parameters`` is needed: parameters a step leaves
  untouched have no gradient on any process.
- **Losses.** Each step's per-task losses are averaged over the processes (``reduce_step``), so the non-finite
  check fails on every process at once (no process waits forever in a collective) and loss-driven weightings
  (DWA's epoch means, FAMO, GradNorm) see the same values everywhere.
- **Rank 0 alone** writes results, predictions, baselines and the MLflow run; after testing the process group is
  closed (``leave_process_group``) so that rank 0's remaining evaluation does not wait for the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from mtl_bench.core.distributed import all_reduce_mean_, world_size
from mtl_bench.errors import UserError

# Lightning strategies a run takes; others (ddp_spawn, fsdp, deepspeed) would lose the system's state or shard it
TRAINER_STRATEGIES = ("auto", "ddp")


def check_strategy(strategy: str) -> None:
    if strategy not in TRAINER_STRATEGIES:
        raise UserError(f"train.strategy {strategy!r}: expected one of {', '.join(TRAINER_STRATEGIES)}")


@contextmanager
def without_reducer(trainer: Any) -> Iterator[None]:
    """DDP's gradient hooks off inside the block (``average_gradients`` does their work); a no-op without DDP."""
    model = trainer.strategy.model if trainer is not None else None
    if not isinstance(model, DistributedDataParallel):
        yield
        return
    previous = model.require_backward_grad_sync
    model.require_backward_grad_sync = False
    try:
        yield
    finally:
        model.require_backward_grad_sync = previous


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Every existing ``.grad`` replaced by its mean over the processes (every process has the same ones)."""
    all_reduce_mean_([p.grad for p in params if p.grad is not None])


def reduce_step(losses: Tensor, samples: int) -> tuple[Tensor, int]:
    """The step's per-task losses averaged, and its sample count summed, over the processes (one collective)."""
    world = world_size()
    if world == 1:
        return losses, samples
    packed = torch.cat([losses.float(), torch.tensor([float(samples)], device=losses.device)])
    dist.all_reduce(packed)
    return (packed[:-1] / world).to(losses.dtype), int(packed[-1].item())


def leave_process_group() -> None:
    """After testing: every process waits for the others, then the group closes and rank 0 goes on alone."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
