"""Knowledge-distillation terms (Hinton et al., 2015) as pure functions of student and teacher logits.

Every term is multiplied by T**2: softening the logits by T scales their gradients by about 1/T**2, so without it
the distillation term's weight against the ground-truth loss would change with the temperature. The task types'
``distill_loss`` run both models and call these; the teacher's logits carry no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from mtl_bench.errors import UserError


@dataclass(frozen=True)
class Distillation:
    """What a distilled run adds (``mtl-bench distill``): the frozen teacher, the temperature, and ``alpha``, the
    weight of the distillation term: a task's training loss is ``alpha * distill_loss + (1 - alpha) * loss``."""

    teacher: nn.Module
    temperature: float = 2.0
    alpha: float = 0.5


def check_temperature(temperature: float) -> float:
    if not temperature > 0:
        raise UserError(f"distillation temperature = {temperature!r}: expected a number > 0")
    return float(temperature)


def softmax_kl(student: Tensor, teacher: Tensor, temperature: float, mask: Tensor | None = None) -> Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)) over the last dim, averaged over rows, times T**2.

    ``mask`` (bool, the logits' shape minus the last dim) keeps only the rows where it is True (real tokens);
    without it every row counts, which is PyTorch's ``batchmean`` for 2-d logits.

    >>> import torch
    >>> round(float(softmax_kl(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 0.0]]), 2.0)), 6)
    0.0
    """
    t = check_temperature(temperature)
    log_p_student = F.log_softmax(student.float() / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher.float() / t, dim=-1)
    per_row = F.kl_div(log_p_student, log_p_teacher, reduction="none", log_target=True).sum(-1)
    if mask is not None:
        per_row = per_row[mask]
    return per_row.mean() * t**2


def sigmoid_bce(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Binary cross-entropy of ``student / T`` against the soft labels sigmoid(teacher / T), mean over all entries,
    times T**2. Unlike the KL terms it is not 0 when student == teacher: it then equals the soft labels' entropy,
    a constant that carries no gradient.
    """
    t = check_temperature(temperature)
    soft = (teacher.float() / t).sigmoid()
    return F.binary_cross_entropy_with_logits(student.float() / t, soft) * t**2


def similarity_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Mean of ``softmax_kl`` over the rows (text -> items) and over the columns (item -> texts) of two in-batch
    similarity-logit matrices [B, B]: the student learns the teacher's ranking in both directions."""
    return 0.5 * (softmax_kl(student, teacher, temperature) + softmax_kl(student.T, teacher.T, temperature))
