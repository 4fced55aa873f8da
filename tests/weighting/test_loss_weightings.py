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


def test_dwa_weights_reset_to_one_after_an_epoch_without_a_task():
    """The multi-epoch formula is checked in test_loss_parity.py; this is our rule for a missing task."""
    dwa = WEIGHTINGS.get("dwa")(TASKS)  # temperature = 2
    losses = leaf_losses(1.0, 1.0)
    dwa.on_epoch_end({"a": 2.0, "b": 4.0})
    dwa.on_epoch_end({"a": 1.0, "b": 4.0})
    w_a = 2 * math.exp(0.25) / (math.exp(0.25) + math.exp(0.5))  # r = (0.5, 1.0), w = 2 softmax(r / 2)
    assert float(dwa.weights(losses)["a"]) == pytest.approx(w_a)
    dwa.on_epoch_end({"a": 1.0})  # an epoch without task b: equal weights until the history is whole again
    assert [float(w) for w in dwa.weights(losses).values()] == [1.0, 1.0]
    dwa.on_epoch_end({"a": 0.5, "b": 2.0})
    assert [float(w) for w in dwa.weights(losses).values()] == [1.0, 1.0]
    dwa.on_epoch_end({"a": 0.5, "b": 1.0})  # r = (1.0, 0.5): task a now fell more slowly
    assert float(dwa.weights(losses)["b"]) == pytest.approx(w_a)


def test_dwa_rejects_a_bad_temperature():
    with pytest.raises(UserError, match="temperature"):
        WEIGHTINGS.get("dwa")(TASKS, temperature=0)


def test_rlw_draws_fresh_weights_on_the_simplex_every_step():
    rlw = WEIGHTINGS.get("rlw")(["a", "b", "c"])
    losses = {t: torch.tensor(1.0) for t in "abc"}
    torch.manual_seed(7)
    first = [float(w) for w in rlw.weights(losses).values()]
    second = [float(w) for w in rlw.weights(losses).values()]
    assert sum(first) == pytest.approx(1.0) and min(first) > 0
    assert second != pytest.approx(first)
    assert float(rlw(losses)) == pytest.approx(1.0)  # third draw: the weights of equal losses sum to 1


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


# --- options: the reference conventions ----------------------------------------------------------------------------
def test_uw_options_set_the_start_and_the_scale():
    uw = WEIGHTINGS.get("uw")(TASKS, init=-0.5, scale=0.5)  # LibMTL's
    assert uw.log_vars.tolist() == [-0.5, -0.5]
    assert [float(w) for w in uw.weights(leaf_losses(1.0, 1.0)).values()] == pytest.approx([math.exp(0.5) / 2] * 2)
    assert float(uw(leaf_losses(2.0, 3.0))) == pytest.approx(0.5 * (math.exp(0.5) * 5.0 - 1.0))


@pytest.mark.parametrize(("options", "match"), [({"scale": 0}, "scale must be > 0"),
                                                ({"init": math.inf}, "init .* must be finite")])
def test_uw_rejects_bad_options(options, match):
    with pytest.raises(UserError, match=match):
        WEIGHTINGS.get("uw")(TASKS, **options)


@pytest.mark.parametrize(("options", "match"), [
    ({"norm_over": "all"}, r"option norm_over must be one of \['last_shared', 'shared'\], got 'all'"),
    ({"parametrisation": "renorm"}, r"option parametrisation must be one of \['softmax', 'direct'\]"),
    ({"initial_loss": "epoch"}, r"option initial_loss must be one of \['first_step', 'first_epoch'\]"),
])
def test_gradnorm_rejects_bad_options(options, match):
    with pytest.raises(UserError, match=match):
        WEIGHTINGS.get("gradnorm")(TASKS, **options)


def test_gradnorm_first_epoch_keeps_equal_weights_and_trains_nothing_until_the_epoch_mean_is_known():
    gradnorm = WEIGHTINGS.get("gradnorm")(TASKS, initial_loss="first_epoch")
    W = nn.Parameter(torch.tensor(1.0))
    gradnorm.bind([W], [], [W])
    gradnorm.backward({"a": 1.0 * W, "b": 3.0 * W})
    assert gradnorm.logits.grad is None and float(W.grad) == pytest.approx(4.0)  # plain sum, no L_grad
    gradnorm.on_epoch_end({"a": 2.0, "b": 1.0})
    assert gradnorm.initial_losses.tolist() == [2.0, 1.0]
    gradnorm.backward({"a": 1.0 * W, "b": 3.0 * W})  # as test_gradnorm_target_follows_the_relative_training_rates
    assert gradnorm.logits.grad.tolist() == pytest.approx([2.0, -2.0])
    gradnorm.on_epoch_end({"a": 9.0, "b": 9.0})  # later epochs do not move L(0)
    assert gradnorm.initial_losses.tolist() == [2.0, 1.0]


def test_gradnorm_direct_weights_get_the_gradient_of_l_grad_and_are_renormalised_before_use():
    gradnorm = WEIGHTINGS.get("gradnorm")(TASKS, parametrisation="direct")
    W = nn.Parameter(torch.tensor(1.0))
    gradnorm.bind([W], [], [W])
    gradnorm.backward({"a": 1.0 * W, "b": 3.0 * W})
    assert gradnorm.raw_weights.grad.tolist() == pytest.approx([-1.0, 3.0])  # sign(G - 2) * ||grad||, G = (1, 3)
    with torch.no_grad():
        gradnorm.raw_weights.copy_(torch.tensor([3.0, 1.0]))  # as if an optimiser step had moved them off sum T
    assert [float(w) for w in gradnorm.weights(leaf_losses(1.0, 1.0)).values()] == pytest.approx([1.5, 0.5])
    gradnorm.raw_weights.grad = None
    gradnorm.backward({"a": 1.0 * W, "b": 3.0 * W})
    assert gradnorm.raw_weights.tolist() == pytest.approx([1.5, 0.5])


def test_gradnorm_over_all_shared_parameters_counts_a_backward_pass_per_task():
    shared = WEIGHTINGS.get("gradnorm")(["a", "b", "c"], norm_over="shared")
    assert shared.backward_passes(3) == 4 and WEIGHTINGS.get("gradnorm")(TASKS).backward_passes(2) == 1


@pytest.mark.parametrize(("options", "match"), [
    ({"after": "later"}, r"option after must be one of \['next_step', 'same_batch'\], got 'later'"),
    ({"min_losses": {"z": 0.1}}, r"option min_losses must map task names \['a', 'b'\] to finite numbers"),
    ({"min_losses": {"a": "low"}}, "min_losses"),
])
def test_famo_rejects_bad_options(options, match):
    with pytest.raises(UserError, match=match):
        WEIGHTINGS.get("famo")(TASKS, **options)


def test_famo_same_batch_refuses_a_trainer_that_never_calls_after_step():
    famo = WEIGHTINGS.get("famo")(TASKS, after="same_batch")
    famo.backward(leaf_losses(1.0, 2.0))
    with pytest.raises(RuntimeError, match="after_step"):
        famo.backward(leaf_losses(0.5, 2.0))


def test_famo_next_step_ignores_after_step_and_keeps_its_checkpoint_keys():
    famo = WEIGHTINGS.get("famo")(TASKS, min_losses={"a": 0.25})
    assert not famo.needs_losses_after_step
    famo.backward(leaf_losses(1.0, 2.0))
    famo.after_step({"a": torch.tensor(0.1), "b": torch.tensor(0.1)})
    assert famo.logits.tolist() == [0.0, 0.0]
    # min_losses come from the options, so checkpoints of runs made before the option still load
    assert sorted(famo.state_dict()) == ["_extra_state", "adam_steps", "exp_avg", "exp_avg_sq", "logits"]
