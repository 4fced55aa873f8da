"""Loss-based weightings (UW, DWA, RLW, FAMO, GradNorm) against hand-computed values."""

import math

import pytest
import torch
from torch import nn

from mtl_bench.errors import UserError
from mtl_bench.weighting import WEIGHTINGS
from mtl_bench.weighting.functional import adam_step_

TASKS = ["a", "b"]


def leaf_losses(a: float, b: float) -> dict[str, torch.Tensor]:
    return {"a": torch.tensor(a, requires_grad=True), "b": torch.tensor(b, requires_grad=True)}


def test_uw_loss_and_log_variance_gradient():
    uw = WEIGHTINGS.get("uw")(TASKS)
    with torch.no_grad():
        uw.log_vars.copy_(torch.tensor([0.0, math.log(2.0)]))
    losses = leaf_losses(2.0, 3.0)
    total = uw(losses)
    assert float(total) == pytest.approx(2.0 + 0.0 + 3.0 / 2 + math.log(2.0))  # exp(-s) L + s, summed
    total.backward()
    # d/ds_t = 1 - exp(-s_t) L_t; d/dL_t = exp(-s_t)
    assert uw.log_vars.grad.tolist() == pytest.approx([1 - 2.0, 1 - 1.5])
    assert [float(losses[t].grad) for t in TASKS] == pytest.approx([1.0, 0.5])


def test_dwa_weights_follow_the_last_two_epochs():
    dwa = WEIGHTINGS.get("dwa")(TASKS)  # temperature = 2
    losses = leaf_losses(1.0, 1.0)
    assert float(dwa(losses)) == pytest.approx(2.0)  # weights 1 in the first epoch
    dwa.on_epoch_end({"a": 2.0, "b": 4.0})
    assert float(dwa(losses)) == pytest.approx(2.0)  # and in the second
    dwa.on_epoch_end({"a": 1.0, "b": 4.0})
    # r = (1/2, 4/4) = (0.5, 1.0); w = 2 * softmax(r / 2) = 2 * softmax(0.25, 0.5)
    w_a = 2 * math.exp(0.25) / (math.exp(0.25) + math.exp(0.5))
    weights = dwa.weights(losses)
    assert float(weights["a"]) == pytest.approx(w_a) and float(weights["a"]) == pytest.approx(0.8756, abs=1e-4)
    assert float(weights["b"]) == pytest.approx(2 - w_a)
    assert float(dwa(leaf_losses(3.0, 5.0))) == pytest.approx(w_a * 3.0 + (2 - w_a) * 5.0)
    dwa.on_epoch_end({"a": 1.0})  # an epoch without task b: equal weights until the history is whole again
    assert [float(w) for w in dwa.weights(losses).values()] == [1.0, 1.0]


def test_dwa_rejects_a_bad_temperature():
    with pytest.raises(UserError, match="temperature"):
        WEIGHTINGS.get("dwa")(TASKS, temperature=0)


def test_rlw_weights_are_a_seeded_softmax_of_normals_summing_to_one():
    rlw = WEIGHTINGS.get("rlw")(["a", "b", "c"])
    losses = {t: torch.tensor(1.0) for t in "abc"}
    torch.manual_seed(7)
    first = [float(w) for w in rlw.weights(losses).values()]
    second = [float(w) for w in rlw.weights(losses).values()]
    torch.manual_seed(7)
    expected = torch.softmax(torch.randn(3), dim=0).tolist()
    assert first == pytest.approx(expected) and sum(first) == pytest.approx(1.0)
    assert second != pytest.approx(first)  # fresh weights every step
    torch.manual_seed(7)
    assert [float(w) for w in rlw.weights(losses).values()] == pytest.approx(first)  # reproducible
    assert float(rlw(losses)) == pytest.approx(sum(second))


def test_famo_loss_gives_each_task_the_weight_z_over_c_times_loss():
    famo = WEIGHTINGS.get("famo")(TASKS)
    losses = leaf_losses(1.0, 2.0)
    famo(losses).backward()
    # z = (1/2, 1/2), c = 0.5/1 + 0.5/2 = 0.75, weight_t = z_t / (c L_t) = (2/3, 1/3)
    assert [float(losses[t].grad) for t in TASKS] == pytest.approx([2 / 3, 1 / 3])
    assert [float(w) for w in famo.weights(losses).values()] == pytest.approx([2 / 3, 1 / 3])


def test_famo_first_logit_update_by_hand():
    famo = WEIGHTINGS.get("famo")(TASKS)  # lr 0.025, weight decay 0.01
    famo.backward(leaf_losses(1.0, 2.0))
    assert famo.logits.tolist() == [0.0, 0.0]  # no update before a second step
    famo.backward(leaf_losses(0.5, 2.0))
    # delta = log(before) - log(after) = (log 2, 0); z = (1/2, 1/2); J^T delta = z * (delta - z.delta) = (l/4, -l/4)
    # Adam's first step moves each logit by lr * g / (|g| + eps), i.e. by -lr * sign(g)
    assert famo.logits.tolist() == pytest.approx([-0.025, 0.025], abs=1e-6)
    assert float(famo.adam_steps) == 1.0


def test_famo_logits_match_the_official_update_rule():
    """Reference: the official two-line update (autograd through softmax, then torch.optim.Adam)."""
    history = [(1.0, 2.0), (0.5, 2.1), (0.45, 1.5), (0.44, 1.2), (0.3, 1.19)]
    famo = WEIGHTINGS.get("famo")(TASKS)
    for a, b in history:
        famo.backward(leaf_losses(a, b))
    w = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.025, weight_decay=0.01)
    for before, after in zip(history, history[1:], strict=False):
        delta = (torch.tensor(before) + 1e-8).log() - (torch.tensor(after) + 1e-8).log()
        w.grad = torch.autograd.grad(torch.softmax(w, -1), w, grad_outputs=delta)[0]
        opt.step()
    assert famo.logits.tolist() == pytest.approx(w.tolist(), abs=1e-6)


def test_adam_step_matches_torch_adam():
    param, reference = torch.tensor([0.3, -1.0]), torch.tensor([0.3, -1.0], requires_grad=True)
    m, v, step = torch.zeros(2), torch.zeros(2), torch.zeros(())
    opt = torch.optim.Adam([reference], lr=0.1, weight_decay=0.05)
    for grad in ([1.0, -2.0], [0.5, 0.1], [-3.0, 0.0]):
        adam_step_(param, torch.tensor(grad), m, v, step, lr=0.1, weight_decay=0.05)
        reference.grad = torch.tensor(grad)
        opt.step()
        assert param.tolist() == pytest.approx(reference.tolist())


def gradnorm_on_scalar_layer(initial_losses=None):
    """W is a scalar shared "layer" at 1 and L_t = c_t W with c = (1, 3), so ||dL_t/dW|| = (1, 3) exactly."""
    gradnorm = WEIGHTINGS.get("gradnorm")(TASKS)  # alpha = 1.5, weights start at 1
    W = nn.Parameter(torch.tensor(1.0))
    gradnorm.bind([W], [], [W])
    if initial_losses is not None:
        gradnorm.initial_losses.copy_(torch.tensor(initial_losses))
    gradnorm.backward({"a": 1.0 * W, "b": 3.0 * W})
    return gradnorm, W


def test_gradnorm_first_step_by_hand():
    gradnorm, W = gradnorm_on_scalar_layer()
    # G = w * ||grad|| = (1, 3), ratios all 1, target = mean(G) = 2: dL_grad/dw = sign(G - 2) * ||grad|| = (-1, 3);
    # w = 2 softmax(a) has Jacobian [[.5, -.5], [-.5, .5]] at a = 0, so grad a = (-2, 2): more weight to task a
    assert gradnorm.logits.grad.tolist() == pytest.approx([-2.0, 2.0])
    assert float(W.grad) == pytest.approx(1.0 + 3.0)  # the model sees sum_t w_t L_t with w detached
    assert gradnorm.initial_losses.tolist() == [1.0, 3.0]


def test_gradnorm_target_follows_the_relative_training_rates():
    gradnorm, _ = gradnorm_on_scalar_layer(initial_losses=[2.0, 1.0])
    # ratios L/L0 = (0.5, 3), r = ratios / 1.75; target = 2 r^1.5 = (0.305, 4.489): G - target = (+0.69, -1.49),
    # so dL_grad/dw = (1, -3) and grad a = (2, -2): task b, which trains slower, gains weight
    r = torch.tensor([0.5, 3.0]) / 1.75
    target = 2 * r**1.5
    assert target.tolist() == pytest.approx([0.3054, 4.4890], abs=1e-4)
    assert gradnorm.logits.grad.tolist() == pytest.approx([2.0, -2.0])
