"""Averaging across DDP processes, for the weightings that must see every process's data.

DDP averages gradients only when they flow through its autograd hooks; the gradient-based weightings take one
``autograd.grad`` per task instead (``jacobian.py``), so the per-task gradients of the shared parameters are averaged
here, before aggregation: then every process aggregates the same Jacobian (that of the global batch) and the replicas
never drift apart. Without an initialised process group (one process) every function is a no-op.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Number of processes in the default group; 1 without torch.distributed."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_mean_(tensors: list[Tensor]) -> None:
    """Replace every tensor in place by its mean over the processes (one collective for the whole list)."""
    world = world_size()
    if world == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= world
    start = 0
    for t in tensors:
        t.copy_(flat[start : start + t.numel()].view_as(t))
        start += t.numel()


def mean_over_workers(values: Tensor) -> Tensor:
    """A copy of ``values`` averaged over the processes (``values`` itself when there is one)."""
    if world_size() == 1:
        return values
    out = values.detach().clone()
    all_reduce_mean_([out])
    return out
