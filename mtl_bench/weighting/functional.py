"""Pure tensor maths behind the weightings, kept apart from the modules so it is tested against hand-computed values.

Losses and weights are 1-D tensors in the weighting's task order; per-task gradients are lists of tensors shaped
like the parameters they belong to.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def uncertainty_loss(losses: Tensor, log_vars: Tensor) -> Tensor:
    """Kendall et al.'s objective ``sum_t exp(-s_t) * L_t + s_t``; minimised over ``s_t`` at ``s_t = log L_t``.

    >>> uncertainty_loss(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 0.0]))
    tensor(5.)
    """
    return (torch.exp(-log_vars) * losses + log_vars).sum()


def dwa_weights(last: Tensor, before_last: Tensor, temperature: float) -> Tensor:
    """Dynamic Weight Average: ``T * softmax(r / temperature)`` with ``r_t = L_t(e-1) / L_t(e-2)``.

    >>> dwa_weights(torch.tensor([1.0, 4.0]), torch.tensor([2.0, 8.0]), temperature=2.0)
    tensor([1., 1.])
    """
    rates = last / before_last.clamp_min(torch.finfo(before_last.dtype).tiny)
    return len(last) * torch.softmax(rates / temperature, dim=0)


def random_weights(num_tasks: int) -> Tensor:
    """Random Loss Weighting: ``softmax`` of standard-normal draws from torch's global RNG (they sum to 1)."""
    return torch.softmax(torch.randn(num_tasks), dim=0)


def gradnorm_objective(weights: Tensor, grad_norms: Tensor, loss_ratios: Tensor, alpha: float) -> Tensor:
    """GradNorm's ``sum_t |G_t - mean(G) * r_t^alpha|`` with ``G_t = w_t * ||grad_W L_t||``.

    ``loss_ratios`` are ``L_t / L_t(0)``; ``r_t`` is that ratio over its mean across tasks (the relative inverse
    training rate). The target is a constant, so the gradient reaches the weights only through ``G_t``.

    >>> gradnorm_objective(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 3.0]), torch.tensor([1.0, 1.0]), 1.5)
    tensor(2.)
    """
    norms = weights * grad_norms
    rates = loss_ratios / loss_ratios.mean()
    target = (norms.mean() * rates**alpha).detach()
    return (norms - target).abs().sum()


def famo_loss(losses: Tensor, logits: Tensor, eps: float = 1e-8) -> Tensor:
    """FAMO's ``sum_t z_t / c * log(L_t + eps)``, ``z = softmax(logits)``, ``c = sum_t z_t / (L_t + eps)`` detached.

    Its gradient is ``sum_t (z_t / c) / (L_t + eps) * grad L_t``: the per-task weights ``z_t / (c L_t)`` sum to 1.

    >>> famo_loss(torch.tensor([1.0, 1.0]), torch.zeros(2), eps=0.0)
    tensor(0.)
    """
    z = torch.softmax(logits, dim=0)
    shifted = losses + eps
    c = (z / shifted).sum().detach()
    return (z * shifted.log()).sum() / c


def famo_logit_grad(logits: Tensor, delta: Tensor) -> Tensor:
    """The logits' gradient ``J^T delta`` with ``J = diag(z) - z z^T`` the Jacobian of ``z = softmax(logits)``.

    ``delta_t = log L_t(before) - log L_t(after)``: a task whose loss fell gets its logit lowered by the descent step.

    >>> famo_logit_grad(torch.zeros(2), torch.tensor([1.0, 0.0]))
    tensor([ 0.2500, -0.2500])
    """
    z = torch.softmax(logits, dim=0)
    return z * (delta - (z * delta).sum())


def adam_step_(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: Tensor,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> None:
    """One step of ``torch.optim.Adam`` (L2 weight decay, no amsgrad), in place, ``step`` included (it counts from 1).

    The state lives in the caller's tensors (buffers, so ``state_dict`` saves it); nothing is read back to the host.
    """
    beta1, beta2 = betas
    step.add_(1)
    grad = grad + weight_decay * param
    exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    t = step.double()  # bias corrections in float64, as torch.optim.Adam computes them on the host
    denom = exp_avg_sq.sqrt() / (1 - beta2**t).sqrt().to(param.dtype) + eps
    param.sub_((lr / (1 - beta1**t)).to(param.dtype) * exp_avg / denom)


def max_norm_combination(grads: Sequence[Sequence[Tensor]], eps: float = 1e-8) -> list[Tensor]:
    """DB-MTL's gradient-magnitude balancing: ``sum_t (max_s ||g_s|| / ||g_t||) * g_t``.

    ``grads[t]`` is task ``t``'s gradient as one tensor per parameter; its norm is taken over all of them.

    >>> max_norm_combination([[torch.tensor([3.0, 4.0])], [torch.tensor([0.0, 1.0])]])
    [tensor([3., 9.])]
    """
    norms = torch.stack([torch.linalg.vector_norm(torch.stack([g.norm() for g in task])) for task in grads])
    scales = norms.max() / (norms + eps)  # stays on the device: no host sync
    return [sum(s * g for s, g in zip(scales, per_param, strict=True)) for per_param in zip(*grads, strict=True)]


def task_gradient(loss: Tensor, params: Sequence[nn.Parameter], retain_graph: bool) -> list[Tensor]:
    """``d loss / d params`` without touching ``.grad``; zeros for parameters this loss does not reach."""
    return list(torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True, materialize_grads=True))


def gradient_norm(loss: Tensor, params: Sequence[nn.Parameter]) -> Tensor:
    """``||d loss / d params||`` over all of ``params`` together; the graph is kept for a later backward."""
    return torch.linalg.vector_norm(torch.stack([g.norm() for g in task_gradient(loss, params, retain_graph=True)]))


def accumulate_grads(params: Sequence[nn.Parameter], grads: Sequence[Tensor]) -> None:
    """Add ``grads`` into ``.grad`` (as autograd would), creating it where it is still None."""
    for param, grad in zip(params, grads, strict=True):
        if param.grad is None:
            param.grad = grad.to(param.dtype)
        else:
            param.grad += grad
