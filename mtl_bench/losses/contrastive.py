"""Symmetric InfoNCE (CLIP) with a learnable temperature, and negatives gathered across distributed workers.

Row i of ``a`` and row i of ``b`` are a positive pair (an image and its title); every other row of the other side
is a negative. Under DDP each worker contributes its batch to the negatives of every other worker
(``gather_with_grad``), so the effective batch of negatives is the global one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

INIT_TEMPERATURE = 0.07  # CLIP's initial temperature
MAX_LOGIT_SCALE = 100.0  # CLIP clamps exp(scale) here so the temperature never collapses


class LogitScale(nn.Module):
    """The learnable inverse temperature, stored as a log so it stays positive: ``scale = exp(log_scale)``."""

    def __init__(self, temperature: float = INIT_TEMPERATURE) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def forward(self) -> Tensor:
        return self.log_scale.exp().clamp(max=MAX_LOGIT_SCALE)


def gather_with_grad(x: Tensor) -> tuple[Tensor, int]:
    """All workers' rows of ``x`` concatenated in rank order (gradients flow back to every worker's own rows),
    and the offset of this worker's rows in the result. Without torch.distributed: ``(x, 0)``.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    from torch.distributed.nn.functional import all_gather

    parts = all_gather(x.contiguous())
    offset = sum(p.shape[0] for p in parts[: dist.get_rank()])
    return torch.cat(parts), offset


def info_nce(a: Tensor, b: Tensor, scale: Tensor | float, gather: bool = True) -> Tensor:
    """Symmetric InfoNCE of paired rows: mean of cross-entropy(a -> b) and cross-entropy(b -> a).

    ``a``, ``b``: [B, D] embeddings (L2-normalised here); ``scale``: inverse temperature. With ``gather`` and
    torch.distributed initialised, the other side's candidates are every worker's rows.
    """
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    if gather:
        all_a, offset = gather_with_grad(a)
        all_b, _ = gather_with_grad(b)
    else:
        all_a, all_b, offset = a, b, 0
    targets = torch.arange(a.shape[0], device=a.device) + offset
    logits_ab = scale * a @ all_b.T  # [B, B_global]: my rows against every candidate
    logits_ba = scale * b @ all_a.T
    return 0.5 * (F.cross_entropy(logits_ab, targets) + F.cross_entropy(logits_ba, targets))
