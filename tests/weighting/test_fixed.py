"""``fixed`` (linear scalarisation): its update is sum_t w_t grad L_t, checked against each task's gradient taken
separately in float64; with every weight 1 it is ``ew`` bit for bit, on a tiny model and on a smoke run; a task
missing from the map gets 1; bad weights are one-line errors naming the field, the value and what was expected."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mtl_bench.config.load import build_config
from mtl_bench.errors import UserError
from mtl_bench.weighting import WEIGHTINGS
from tests.training.test_strategies import smoke_run

TASKS = ["a", "b", "c"]
WEIGHTS = {"a": 0.3, "b": 2.5, "c": 7.0}


class Tiny(nn.Module):
    """A shared trunk, one head per task, each task on its own batch (as in training)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
        self.heads = nn.ModuleDict({t: nn.Linear(3, 1) for t in TASKS})
        generator = torch.Generator().manual_seed(1)
        self.data = {t: (torch.randn(6, 4, generator=generator), torch.randn(6, 1, generator=generator))
                     for t in TASKS}

    def losses(self, tasks=TASKS) -> dict[str, torch.Tensor]:
        dtype = self.trunk[0].weight.dtype
        return {t: (self.heads[t](self.trunk(self.data[t][0].to(dtype))) - self.data[t][1].to(dtype)).square().mean()
                for t in tasks}


def run_backward(model: Tiny, name: str, tasks=TASKS, **opts) -> list[torch.Tensor]:
    """The gradients of every model parameter after the weighting's backward."""
    weighting = WEIGHTINGS.get(name)(TASKS, **opts)
    weighting.bind(list(model.trunk.parameters()), list(model.heads.parameters()), list(model.trunk[2].parameters()))
    model.zero_grad(set_to_none=True)
    weighting.backward(model.losses(tasks))
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("tasks", [TASKS, ["a", "c"]], ids=["all tasks", "task b without a batch"])
def test_gradient_is_the_weighted_sum_of_task_gradients_in_float64(tasks):
    torch.manual_seed(0)
    model = Tiny()
    got = run_backward(model, "fixed", tasks, weights=WEIGHTS)
    reference = copy.deepcopy(model).double()
    params = list(reference.parameters())
    expected = [torch.zeros_like(p) for p in params]
    for t in tasks:  # each task's gradient on its own, then the paper's sum_t w_t g_t, all in float64
        grads = torch.autograd.grad(reference.losses([t])[t], params, allow_unused=True)
        expected = [e + WEIGHTS[t] * (0 if g is None else g) for e, g in zip(expected, grads, strict=True)]
    flat_got, flat_expected = torch.cat([g.flatten() for g in got]).double(), torch.cat([e.flatten() for e in expected])
    assert torch.linalg.vector_norm(flat_got - flat_expected) <= 1e-6 * torch.linalg.vector_norm(flat_expected)


def test_unit_weights_are_ew_bit_for_bit_on_a_step():
    torch.manual_seed(0)
    model = Tiny()
    ew = run_backward(copy.deepcopy(model), "ew")
    for opts in ({}, {"weights": dict.fromkeys(TASKS, 1)}, {"weights": {"b": 1.0}}):
        assert all(torch.equal(f, e) for f, e in zip(run_backward(copy.deepcopy(model), "fixed", **opts), ew,
                                                      strict=True)), opts


def test_a_task_missing_from_the_map_gets_one():
    fixed = WEIGHTINGS.get("fixed")(TASKS, weights={"b": 4.0})
    losses = {"a": torch.tensor(1.5), "b": torch.tensor(0.5), "c": torch.tensor(2.0)}
    assert fixed.weights(losses) == {"a": 1.0, "b": 4.0, "c": 1.0}
    assert float(fixed(losses)) == pytest.approx(1.5 + 4.0 * 0.5 + 2.0)
    assert list(fixed.parameters()) == [] and list(fixed.buffers()) == []  # config, not state


def test_weights_reach_the_weighting_from_set_overrides():
    cfg = build_config("ecommerce", "smoke", sets=["weighting.name=fixed", "weighting.options.weights.video-tagging=3",
                                                   "weighting.options.weights.product-search=0.25"])
    tasks = ["product-captioning", "product-classification", "product-search", "video-tagging"]
    fixed = WEIGHTINGS.get(cfg.weighting.name)(tasks, **cfg.weighting.options)
    assert fixed.task_weights == {"product-captioning": 1.0, "product-classification": 1.0, "product-search": 0.25,
                                  "video-tagging": 3.0}


@pytest.mark.parametrize(("weights", "message"), [
    ({"d": 1.0}, "weighting.options.weights.d = 1.0: not a task of this run; expected one of: a, b, c"),
    ({"bb": 1.0}, "weighting.options.weights.bb = 1.0: not a task of this run; did you mean 'b'?"),
    ({"a": -1.0}, "weighting.options.weights.a = -1.0: expected a finite number > 0"),
    ({"a": 0}, "weighting.options.weights.a = 0: expected a finite number > 0"),
    ({"a": float("nan")}, "weighting.options.weights.a = nan: expected a finite number > 0"),
    ({"a": float("inf")}, "weighting.options.weights.a = inf: expected a finite number > 0"),
    ({"a": True}, "weighting.options.weights.a = True: expected a finite number > 0"),
    ({"a": "1e-3"}, "weighting.options.weights.a = '1e-3': expected a finite number > 0 (YAML reads 1e-3 as text"),
    ([1.0, 2.0], "weighting.options.weights = [1.0, 2.0]: expected a mapping of task name to weight, e.g. --set "
                 "weighting.options.weights.a=2.0"),
])
def test_bad_weights_are_one_line_errors(weights, message):
    with pytest.raises(UserError) as info:
        WEIGHTINGS.get("fixed")(TASKS, weights=weights)
    assert str(info.value).startswith(f"weighting 'fixed': {message}") and "\n" not in str(info.value)


def test_unit_weights_are_ew_bit_for_bit_on_a_smoke_run(data_dir, tracking_uri, tmp_path):
    """Two training steps of the ecommerce smoke model: the same checkpoint and the same test scores as ``ew``; one
    weight of 2 changes the checkpoint (so the comparison can tell)."""
    tasks = ("product-captioning", "product-classification", "product-search", "video-tagging")
    runs = {
        "ew": smoke_run(tmp_path / "ew", data_dir, tracking_uri, "--weighting", "ew"),
        "ones": smoke_run(tmp_path / "ones", data_dir, tracking_uri, "--weighting", "fixed",
                          sets=[f"weighting.options.weights.{t}=1" for t in tasks]),
        "two": smoke_run(tmp_path / "two", data_dir, tracking_uri, "--weighting", "fixed",
                         sets=["weighting.options.weights.product-search=2"]),
    }
    assert runs["ones"]["config"]["weighting"] == {"name": "fixed", "options": {"weights": dict.fromkeys(tasks, 1)}}
    assert {t: r["metrics"] for t, r in runs["ones"]["tasks"].items()} == {
        t: r["metrics"] for t, r in runs["ew"]["tasks"].items()}
    states = {run: torch.load(tmp_path / run / "checkpoints" / "best.ckpt", map_location="cpu",
                              weights_only=False)["state_dict"] for run in runs}
    assert states["ew"].keys() == states["ones"].keys() == states["two"].keys()
    assert all(torch.equal(states["ew"][k], states["ones"][k]) for k in states["ew"])
    assert not all(torch.equal(states["ew"][k], states["two"][k]) for k in states["ew"])
