"""Parity of every loss-based weighting with the paper's update rule, over several steps and epochs.

Each reference is written here from the paper (or the reference code named in the module's docstring) in float64,
with plain Python numbers or autograd for the model's own gradients, never with ``mtl_bench.weighting.functional``.
The modules run in float64 (``.double()``), so the two agree to rounding.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from mtl_bench.weighting import WEIGHTINGS

TASKS = ["a", "b", "c"]
TOL = 1e-10


def softmax(xs: list[float]) -> list[float]:
    top = max(xs)
    e = [math.exp(x - top) for x in xs]
    return [v / sum(e) for v in e]


def leaves(values) -> dict[str, torch.Tensor]:
    pairs = zip(TASKS, values, strict=True)
    return {t: torch.tensor(float(v), dtype=torch.float64, requires_grad=True) for t, v in pairs}


# --- EW ---------------------------------------------------------------------------------------------------------
def test_ew_objective_is_the_plain_sum_at_every_step():
    ew = WEIGHTINGS.get("ew")(TASKS)
    for values in [(1.0, 2.0, 3.0), (0.5, 7.0, 0.25), (2.0, 2.0)]:  # the last step without task c
        losses = dict(zip(TASKS, (torch.tensor(v, dtype=torch.float64) for v in values), strict=False))
        assert float(ew(losses)) == pytest.approx(sum(values), abs=TOL)


# --- UW ---------------------------------------------------------------------------------------------------------
LOSS_SEQUENCE = [(2.0, 0.3, 5.0), (1.5, 0.35, 4.0), (1.2, 0.2, 4.5), (1.0, 0.25, 3.0), (0.8, 0.3, 2.5)]


@pytest.mark.parametrize(("init", "scale"), [(0.0, 1.0), (-0.5, 0.5), (0.25, 0.5)])
def test_uw_objective_and_log_variance_trajectory_by_hand(init, scale):
    """J = scale * sum_t (exp(-s_t) L_t + s_t): dJ/ds_t = scale (1 - exp(-s_t) L_t), dJ/dL_t = scale exp(-s_t);
    five SGD steps on s, the model's losses given."""
    uw = WEIGHTINGS.get("uw")(TASKS, init=init, scale=scale).double()
    opt = torch.optim.SGD(uw.parameters(), lr=0.1)
    s = [init] * 3
    for values in LOSS_SEQUENCE:
        losses = leaves(values)
        opt.zero_grad()
        total = uw(losses)
        total.backward()
        objective = scale * sum(math.exp(-si) * v + si for si, v in zip(s, values, strict=True))
        assert float(total) == pytest.approx(objective, abs=TOL)
        assert [float(losses[t].grad) for t in TASKS] == pytest.approx([scale * math.exp(-si) for si in s], abs=TOL)
        grad_s = [scale * (1 - math.exp(-si) * v) for si, v in zip(s, values, strict=True)]
        assert uw.log_vars.grad.tolist() == pytest.approx(grad_s, abs=TOL)
        opt.step()
        s = [si - 0.1 * g for si, g in zip(s, grad_s, strict=True)]
        assert uw.log_vars.tolist() == pytest.approx(s, abs=TOL)


def test_uw_with_libmtl_options_is_libmtl_objective():
    """LibMTL's UW: ``(losses / (2 * loss_scale.exp()) + loss_scale / 2).sum()`` with ``loss_scale`` from -0.5; the
    same objective, gradients and Adam trajectory as ours with init=-0.5, scale=0.5."""
    ours = WEIGHTINGS.get("uw")(TASKS, init=-0.5, scale=0.5).double()
    loss_scale = torch.full((3,), -0.5, dtype=torch.float64, requires_grad=True)
    opt_ours, opt_ref = torch.optim.Adam(ours.parameters(), lr=0.05), torch.optim.Adam([loss_scale], lr=0.05)
    for values in LOSS_SEQUENCE:
        opt_ours.zero_grad(), opt_ref.zero_grad()
        mine, theirs = leaves(values), torch.tensor(values, dtype=torch.float64, requires_grad=True)
        total, reference = ours(mine), (theirs / (2 * loss_scale.exp()) + loss_scale / 2).sum()
        assert float(total) == pytest.approx(float(reference), abs=TOL)
        total.backward(), reference.backward()
        assert [float(mine[t].grad) for t in TASKS] == pytest.approx(theirs.grad.tolist(), abs=TOL)
        assert [float(w) for w in ours.weights(mine).values()] == pytest.approx(theirs.grad.tolist(), abs=TOL)
        opt_ours.step(), opt_ref.step()
        assert ours.log_vars.tolist() == pytest.approx(loss_scale.tolist(), abs=TOL)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_uw_log_variances_reach_the_papers_optimum_log_loss(scale):
    uw = WEIGHTINGS.get("uw")(TASKS, scale=scale).double()
    opt = torch.optim.SGD(uw.parameters(), lr=0.5 / scale)
    values = (0.5, 2.0, 4.0)
    for _ in range(300):
        opt.zero_grad()
        uw(leaves(values)).backward()
        opt.step()
    assert uw.log_vars.tolist() == pytest.approx([math.log(v) for v in values], abs=1e-8)


# --- DWA --------------------------------------------------------------------------------------------------------
EPOCH_LOSSES = [(2.0, 1.0, 4.0), (1.6, 0.9, 3.0), (1.2, 0.85, 2.9), (1.1, 0.5, 2.0), (1.05, 0.45, 1.4)]


@pytest.mark.parametrize("temperature", [2.0, 0.5])
def test_dwa_weights_over_five_epochs_follow_the_papers_formula(temperature):
    """Liu et al. 2019, Eq. 7: lambda_k(t) = K exp(w_k(t-1) / T) / sum_i exp(w_i(t-1) / T), w_k(t-1) =
    L_k(t-1) / L_k(t-2); lambda_k = 1 for t = 1, 2."""
    dwa = WEIGHTINGS.get("dwa")(TASKS, temperature=temperature).double()
    probe = leaves((0.7, 1.3, 2.1))
    for epoch in range(len(EPOCH_LOSSES) + 1):  # the weights used during epoch `epoch` (0-based)
        if epoch < 2:
            expected = [1.0, 1.0, 1.0]
        else:
            rates = [a / b for a, b in zip(EPOCH_LOSSES[epoch - 1], EPOCH_LOSSES[epoch - 2], strict=True)]
            expected = [3 * z for z in softmax([r / temperature for r in rates])]
        assert [float(w) for w in dwa.weights(probe).values()] == pytest.approx(expected, abs=TOL), epoch
        weighted = sum(w * v for w, v in zip(expected, (0.7, 1.3, 2.1), strict=True))
        assert float(dwa(probe)) == pytest.approx(weighted, abs=TOL)
        if epoch < len(EPOCH_LOSSES):
            dwa.on_epoch_end(dict(zip(TASKS, EPOCH_LOSSES[epoch], strict=True)))


# --- RLW --------------------------------------------------------------------------------------------------------
def test_rlw_weights_are_the_reference_seeded_draws_step_after_step():
    """LibMTL / Nash-MTL: ``softmax(torch.randn(T))`` per step from the global generator; the softmax by hand."""
    rlw = WEIGHTINGS.get("rlw")(TASKS)
    present = [TASKS, TASKS, ["a", "c"], TASKS]  # step 2: task b has no batch, all three are still drawn
    torch.manual_seed(1234)
    ours = []
    for names in present:
        losses = {t: torch.tensor(1.0 + i, dtype=torch.float64) for i, t in enumerate(names)}
        ours.append({t: float(w) for t, w in rlw.weights(losses).items()})
    torch.manual_seed(1234)
    for names, got in zip(present, ours, strict=True):
        drawn = softmax(torch.randn(3).double().tolist())
        expected = {t: drawn[TASKS.index(t)] for t in names}
        assert got == pytest.approx(expected, abs=1e-6)  # the softmax itself runs in float32 in both
        assert sorted(got) == sorted(names)
    assert sum(ours[0].values()) == pytest.approx(1.0, abs=1e-6) and ours[0] != pytest.approx(ours[1])


# --- GradNorm ---------------------------------------------------------------------------------------------------
class Tiny(nn.Module):
    """Trunk Linear(3, 4) -> tanh -> Linear(4, 4) (the last shared layer), one Linear(4, 1) head per task."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4))
        self.heads = nn.ModuleList(nn.Linear(4, 1) for _ in TASKS)

    def losses(self, step: int) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(step)
        out = []
        for t, scale in enumerate((1.0, 5.0, 0.3)):  # targets of different sizes: different norms and rates
            x = torch.randn(8, 3, generator=gen, dtype=torch.float64)
            y = scale * torch.randn(8, 1, generator=gen, dtype=torch.float64)
            out.append((self.heads[t](self.trunk(x)) - y).pow(2).mean())
        return out


def gradnorm_reference(model: Tiny, steps: list[int], epoch_of: list[int], *, alpha, norm_over, parametrisation,
                       initial_loss, lr) -> list[list[float]]:
    """Chen et al. 2018, Algorithm 1, in float64: the weights used at each step. W is the last shared layer
    (``norm_over="last_shared"``) or the whole trunk; the weights take a plain SGD step on
    L_grad = sum_i |G_W^(i) - mean_G * r_i^alpha| (its gradient sign(G_i - target_i) * ||grad_W L_i|| w.r.t. w_i)
    and are renormalised to sum T ("direct"), or their logits a take that step through w = T softmax(a)."""
    T = 3
    a, w = [0.0] * T, [1.0] * T
    L0: list[float] | None = None
    epoch_sums, used = [0.0] * T, []
    params_W = list(model.trunk[2].parameters()) if norm_over == "last_shared" else list(model.trunk.parameters())
    for k, step in enumerate(steps):
        if parametrisation == "softmax":
            w = [T * z for z in softmax(a)]
        used.append(list(w))
        losses = model.losses(step)
        values = [float(v.detach()) for v in losses]
        if initial_loss == "first_step" and L0 is None:
            L0 = list(values)
        active = L0 is not None
        if active:
            norms = []
            for loss in losses:
                grads = torch.autograd.grad(loss, params_W, retain_graph=True)
                norms.append(math.sqrt(sum(float((g * g).sum()) for g in grads)))
            G = [wi * n for wi, n in zip(w, norms, strict=True)]
            ratios = [v / l0 for v, l0 in zip(values, L0, strict=True)]
            r = [x / (sum(ratios) / T) for x in ratios]
            target = [sum(G) / T * ri**alpha for ri in r]
            dw = [math.copysign(1.0, g - tg) * n for g, tg, n in zip(G, target, norms, strict=True)]
        # the model's step on sum_i w_i L_i, w held constant
        model.zero_grad()
        sum(wi * loss for wi, loss in zip(w, losses, strict=True)).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
        if active:
            if parametrisation == "softmax":
                z = softmax(a)
                inner = sum(zi * di for zi, di in zip(z, dw, strict=True))
                a = [ai - lr * T * zi * (di - inner) for ai, zi, di in zip(a, z, dw, strict=True)]
            else:
                w = [wi - lr * di for wi, di in zip(w, dw, strict=True)]
                w = [T * wi / sum(w) for wi in w]
        epoch_sums = [s + v for s, v in zip(epoch_sums, values, strict=True)]
        if k + 1 == len(steps) or epoch_of[k + 1] != epoch_of[k]:  # the epoch ends
            count = epoch_of.count(epoch_of[k])
            if initial_loss == "first_epoch" and L0 is None:
                L0 = [s / count for s in epoch_sums]
            epoch_sums = [0.0] * T
    return used


@pytest.mark.parametrize(
    ("norm_over", "parametrisation", "initial_loss"),
    [
        ("last_shared", "softmax", "first_step"),  # our default
        ("last_shared", "direct", "first_step"),  # the paper
        ("shared", "softmax", "first_epoch"),  # LibMTL
        ("shared", "direct", "first_epoch"),
    ],
)
def test_gradnorm_weights_over_three_epochs_follow_algorithm_1(norm_over, parametrisation, initial_loss):
    torch.manual_seed(0)
    model = Tiny().double()
    reference_model = copy.deepcopy(model)
    options = dict(alpha=1.5, norm_over=norm_over, parametrisation=parametrisation, initial_loss=initial_loss)
    gradnorm = WEIGHTINGS.get("gradnorm")(TASKS, **options).double()
    gradnorm.bind(list(model.trunk.parameters()), list(model.heads.parameters()), list(model.trunk[2].parameters()))
    lr = 0.05
    opt = torch.optim.SGD([*model.parameters(), *gradnorm.parameters()], lr=lr)
    epoch_of = [0, 0, 0, 1, 1, 1, 2, 2]
    steps = list(range(len(epoch_of)))
    used, seen = [], []
    for k, step in enumerate(steps):
        losses = dict(zip(TASKS, model.losses(step), strict=True))
        used.append([float(w) for w in gradnorm.weights(losses).values()])
        seen.append({t: float(v.detach()) for t, v in losses.items()})
        opt.zero_grad()
        gradnorm.backward(losses)
        opt.step()
        if k + 1 == len(steps) or epoch_of[k + 1] != epoch_of[k]:  # what the system passes: each task's mean loss
            gradnorm.on_epoch_end({t: sum(s[t] for s in seen) / len(seen) for t in TASKS})
            seen = []
    expected = gradnorm_reference(reference_model, steps, epoch_of, lr=lr, **options)
    assert used == [pytest.approx(e, abs=TOL) for e in expected]
    assert all(sum(u) == pytest.approx(3.0, abs=TOL) for u in used)
    moved = [u != pytest.approx([1.0, 1.0, 1.0]) for u in used]
    first_update = 1 if initial_loss == "first_step" else epoch_of.index(1) + 1
    assert moved == [k >= first_update for k in steps]  # held at 1 until the first GradNorm update
    assert gradnorm.backward_passes(3) == (1 if norm_over == "last_shared" else 4)


# --- FAMO -------------------------------------------------------------------------------------------------------
def famo_reference(pairs, *, lr, gamma, min_losses, betas=(0.9, 0.999), eps=1e-8) -> list[list[float]]:
    """Liu et al. 2023, Algorithm 1 with the official code's Adam on the logits, in float64: after each model step,
    delta_i = log(l_i^before - m_i + 1e-8) - log(l_i^after - m_i + 1e-8), grad_xi = J_softmax(xi)^T delta, then
    Adam with L2 weight decay gamma. Returns the logits before each update and after the last."""
    T = len(pairs[0][0])
    xi, m1, m2 = [0.0] * T, [0.0] * T, [0.0] * T
    out = [list(xi)]
    for k, (before, after) in enumerate(pairs, start=1):
        triples = zip(before, after, min_losses, strict=True)
        delta = [math.log(b - m + 1e-8) - math.log(a - m + 1e-8) for b, a, m in triples]
        z = softmax(xi)
        inner = sum(zi * di for zi, di in zip(z, delta, strict=True))
        grad = [zi * (di - inner) + gamma * x for zi, di, x in zip(z, delta, xi, strict=True)]
        m1 = [betas[0] * m + (1 - betas[0]) * g for m, g in zip(m1, grad, strict=True)]
        m2 = [betas[1] * v + (1 - betas[1]) * g * g for v, g in zip(m2, grad, strict=True)]
        m_hat = [m / (1 - betas[0] ** k) for m in m1]
        v_hat = [v / (1 - betas[1] ** k) for v in m2]
        xi = [x - lr * mh / (math.sqrt(vh) + eps) for x, mh, vh in zip(xi, m_hat, v_hat, strict=True)]
        out.append(list(xi))
    return out


def famo_gradient_weights(xi: list[float], values, min_losses) -> list[float]:
    """The weight of each task's gradient in the model's step: z_i / (c (l_i - m_i + eps)), c = sum z_j / (...)."""
    z = softmax(xi)
    d = [v - m + 1e-8 for v, m in zip(values, min_losses, strict=True)]
    c = sum(zi / di for zi, di in zip(z, d, strict=True))
    return [zi / (c * di) for zi, di in zip(z, d, strict=True)]


FAMO_LOSSES = [(2.0, 0.9, 5.0), (1.7, 0.85, 4.9), (1.5, 0.86, 4.0), (1.45, 0.7, 3.1), (1.2, 0.72, 3.0),
               (1.1, 0.6, 2.2), (1.0, 0.61, 2.1)]


@pytest.mark.parametrize(("lr", "weight_decay", "min_losses"), [(0.025, 0.01, {}), (0.1, 1e-3, {"a": 0.5, "c": 1.0})])
def test_famo_next_step_logits_and_weights_follow_algorithm_1(lr, weight_decay, min_losses):
    """after=next_step: the k-th update pairs the losses of steps k and k + 1."""
    famo = WEIGHTINGS.get("famo")(TASKS, lr=lr, weight_decay=weight_decay, min_losses=min_losses).double()
    m = [min_losses.get(t, 0.0) for t in TASKS]
    pairs = list(zip(FAMO_LOSSES, FAMO_LOSSES[1:], strict=False))  # (step k, step k + 1)
    expected = famo_reference(pairs, lr=lr, gamma=weight_decay, min_losses=m)
    for k, values in enumerate(FAMO_LOSSES):
        losses = leaves(values)
        famo.backward(losses)  # updates the logits from the previous step's losses to these, then the model's step
        assert famo.logits.tolist() == pytest.approx(expected[k], abs=TOL), k
        assert [float(losses[t].grad) for t in TASKS] == pytest.approx(
            famo_gradient_weights(expected[k], values, m), abs=TOL
        )
    assert expected[-2] != pytest.approx([0.0, 0.0, 0.0], abs=1e-3)  # the logits did move


def test_famo_same_batch_logits_follow_algorithm_1_with_the_official_extra_forward():
    """after=same_batch (official code, LibMTL): the update pairs each step's losses with the same batch re-scored
    after the model step (bounds exact in float32, so the float64 module and reference agree to rounding)."""
    befores = FAMO_LOSSES[:-1]
    afters = [tuple(0.9 * v for v in values) if k % 2 else tuple(v - 0.05 * (i + 1) for i, v in enumerate(values))
              for k, values in enumerate(befores)]
    famo = WEIGHTINGS.get("famo")(TASKS, after="same_batch", min_losses={"b": 0.5}).double()
    assert famo.needs_losses_after_step
    expected = famo_reference(list(zip(befores, afters, strict=True)), lr=0.025, gamma=0.01, min_losses=[0.0, 0.5, 0.0])
    for k, (before, after) in enumerate(zip(befores, afters, strict=True)):
        losses = leaves(before)
        famo.backward(losses)
        assert famo.logits.tolist() == pytest.approx(expected[k], abs=TOL), k  # no update before after_step
        assert [float(losses[t].grad) for t in TASKS] == pytest.approx(
            famo_gradient_weights(expected[k], before, [0.0, 0.5, 0.0]), abs=TOL
        )
        famo.after_step({t: torch.tensor(v, dtype=torch.float64) for t, v in zip(TASKS, after, strict=True)})
        assert famo.logits.tolist() == pytest.approx(expected[k + 1], abs=TOL), k
