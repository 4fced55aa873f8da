"""Every registered weighting combines per-task losses into one differentiable loss; EW is their plain sum."""

import pytest
import torch

from mtl_bench.weighting import WEIGHTINGS

TASKS = ["b-task", "a-task"]


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_every_weighting_gives_a_finite_differentiable_loss(name):
    weighting = WEIGHTINGS.get(name)(TASKS)
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    losses = {"a-task": x[0] ** 2, "b-task": 3 * x[1]}
    loss = weighting(losses)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all() and (x.grad != 0).all()
    weighting.on_epoch_end({"a-task": 1.0, "b-task": 6.0})


def test_ew_is_the_plain_sum():
    weighting = WEIGHTINGS.get("ew")(TASKS)
    assert float(weighting({"a-task": torch.tensor(1.5), "b-task": torch.tensor(2.0)})) == pytest.approx(3.5)
    assert list(weighting.parameters()) == []
