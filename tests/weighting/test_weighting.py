"""Every registered weighting drives a tiny two-task model through bind + backward: finite, non-zero gradients for
the shared and the task-specific parameters, with each task on its own batch, as in training."""

import pytest
import torch
from torch import nn

from mtl_bench.errors import UserError
from mtl_bench.weighting import WEIGHTINGS

TASKS = ["b-task", "a-task"]


class TinyModel(nn.Module):
    """A shared trunk and one head per task; the two tasks pull the shared output in opposite directions."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4))
        self.heads = nn.ModuleDict({t: nn.Linear(4, 1) for t in TASKS})

    def losses(self, tasks: list[str]) -> dict[str, torch.Tensor]:
        targets = {"a-task": 1.0, "b-task": -1.0}
        return {t: (self.heads[t](self.trunk(torch.randn(6, 3))) - targets[t]).pow(2).mean() for t in tasks}

    def bind(self, weighting) -> None:
        weighting.bind(list(self.trunk.parameters()), list(self.heads.parameters()), list(self.trunk[2].parameters()))


def grads_ok(params) -> bool:
    return all(p.grad is not None and torch.isfinite(p.grad).all() for p in params) and any(
        (p.grad != 0).any() for p in params
    )


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_every_weighting_trains_a_tiny_model(name):
    torch.manual_seed(0)
    model = TinyModel()
    weighting = WEIGHTINGS.get(name)(TASKS)
    model.bind(weighting)
    optimizer = torch.optim.SGD([*model.parameters(), *weighting.parameters()], lr=0.05)
    for epoch in range(4):
        for step in range(3):
            optimizer.zero_grad(set_to_none=True)
            tasks = ["a-task"] if (epoch, step) == (3, 2) else TASKS  # a step where one task has no batch
            extra = 1e-3 * sum(p.pow(2).sum() for p in model.trunk.parameters())  # a sharing regularisation
            weighting.backward(model.losses(tasks), extra=extra)
            assert grads_ok(list(model.trunk.parameters())), "shared"
            for task in tasks:
                assert grads_ok(list(model.heads[task].parameters())), task
            assert all(p.grad is None or torch.isfinite(p.grad).all() for p in weighting.parameters())
            optimizer.step()
        weighting.on_epoch_end({"a-task": 1.0 + epoch, "b-task": 6.0 / (1 + epoch)})
    assert weighting.backward_passes(len(TASKS)) == (len(TASKS) if weighting.kind == "gradient" else 1)
    assert torch.isfinite(weighting(model.losses(TASKS)))


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_unknown_options_are_rejected_by_name(name):
    with pytest.raises(UserError, match=rf"weighting '{name}' got unknown options \['bogus'\]"):
        WEIGHTINGS.get(name)(TASKS, bogus=1)


@pytest.mark.parametrize("name", [n for n in WEIGHTINGS.names() if WEIGHTINGS.get(n).kind == "gradient"] + ["gradnorm"])
def test_methods_on_shared_gradients_refuse_a_model_that_shares_nothing(name):
    weighting = WEIGHTINGS.get(name)(TASKS)
    with pytest.raises(UserError, match=name):
        weighting.bind([], list(nn.Linear(2, 1).parameters()), [])


@pytest.mark.parametrize("name", ["dwa", "famo", "gradnorm", "uw"])
def test_state_survives_a_state_dict_round_trip(name):
    torch.manual_seed(0)
    model, weighting = TinyModel(), WEIGHTINGS.get(name)(TASKS)
    model.bind(weighting)
    learnable = list(weighting.parameters())
    for epoch in range(3):
        for _ in range(2):
            weighting.backward(model.losses(TASKS))
            if learnable:
                torch.optim.SGD(learnable, lr=0.1).step()
        weighting.on_epoch_end({"a-task": 1.0 + epoch, "b-task": 2.0})
    fresh = WEIGHTINGS.get(name)(TASKS)
    fresh.load_state_dict(weighting.state_dict())
    losses = {"a-task": torch.tensor(0.7), "b-task": torch.tensor(1.3)}
    assert float(fresh(losses)) == pytest.approx(float(weighting(losses)))
    assert float(fresh(losses)) != pytest.approx(float(WEIGHTINGS.get(name)(TASKS)(losses)))


def test_ew_is_the_plain_sum():
    weighting = WEIGHTINGS.get("ew")(TASKS)
    assert float(weighting({"a-task": torch.tensor(1.5), "b-task": torch.tensor(2.0)})) == pytest.approx(3.5)
    assert list(weighting.parameters()) == []
