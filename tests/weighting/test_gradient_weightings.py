"""Gradient-based weightings: DB-MTL and the TorchJD aggregators, on losses linear in the shared parameters so the
Jacobian is known exactly."""

import re

import pytest
import torch
from torch import nn

from mtl_bench.errors import UserError
from mtl_bench.weighting import WEIGHTINGS
from mtl_bench.weighting.jacobian import AGGREGATORS

G1, G2 = torch.tensor([1.0, 0.0]), torch.tensor([-0.5, 1.0])  # conflicting: G1 . G2 = -0.5


def linear_step(name: str, rows: list[torch.Tensor], extra_scale: float = 0.0, **opts) -> nn.Parameter:
    """theta in R^d, L_t = rows[t] . theta: task t's gradient is rows[t]. Returns theta with its .grad."""
    tasks = [f"t{i}" for i in range(len(rows))]
    weighting = WEIGHTINGS.get(name)(tasks, **opts)
    theta = nn.Parameter(torch.ones(len(rows[0])))
    weighting.bind([theta], [], [theta])
    extra = extra_scale * 0.5 * theta.pow(2).sum() if extra_scale else None
    weighting.backward({t: row @ theta for t, row in zip(tasks, rows, strict=True)}, extra=extra)
    return theta


def test_pcgrad_projects_each_gradient_off_the_other_by_hand():
    g1_pc = G1 - (G1 @ G2) / (G2 @ G2) * G2  # (1, 0) + 0.4 (-0.5, 1) = (0.8, 0.4)
    g2_pc = G2 - (G1 @ G2) / (G1 @ G1) * G1  # (-0.5, 1) + 0.5 (1, 0) = (0, 1)
    assert (g1_pc + g2_pc).tolist() == pytest.approx([0.8, 1.4])
    assert linear_step("pcgrad", [G1, G2]).grad.tolist() == pytest.approx([0.8, 1.4])


def test_mgda_gives_the_min_norm_convex_combination():
    # TorchJD's MGDA weights sum to 1 (no factor T): d = gamma g1 + (1 - gamma) g2
    gamma = float(((G2 - G1) @ G2 / (G1 - G2).pow(2).sum()).clamp(0, 1))  # 1.75 / 3.25
    expected = gamma * G1 + (1 - gamma) * G2
    assert expected.tolist() == pytest.approx([4 / 13, 6 / 13])
    assert linear_step("mgda", [G1, G2]).grad.tolist() == pytest.approx(expected.tolist(), abs=1e-5)


def test_extra_is_added_to_the_aggregated_gradient():
    theta = linear_step("pcgrad", [G1, G2], extra_scale=2.0)  # extra = theta^2, gradient 2 theta = (2, 2)
    assert theta.grad.tolist() == pytest.approx([2.8, 3.4])


TORCHJD_PATH = ("graddrop", "gradvac")  # aggregated by TorchJD itself (jac_to_grad)


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_grad_is_the_update_of_the_whole_jacobian_split_across_parameters(name):
    """Two shared tensors (the Jacobian is split across them) and three tasks: the update equals the aggregation of
    the stacked Jacobian (TorchJD's aggregator for the methods it runs, ours on one tensor for the float64 ones),
    and the task-specific head gets the plain gradient."""
    rows = torch.tensor([[1.0, 0.0, 2.0, -1.0], [-0.5, 1.0, 0.0, 0.5], [0.3, -2.0, 1.0, 1.0]])
    tasks = ["t0", "t1", "t2"]
    weighting = WEIGHTINGS.get(name)(tasks)
    first, second = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(1, 2))
    head = nn.Parameter(torch.tensor(2.0))  # task-specific: scales task t0's loss
    weighting.bind([first, second], [head], [second])
    losses = {t: row[:2] @ first + row[2:] @ second.flatten() for t, row in zip(tasks, rows, strict=True)}
    losses["t0"] = losses["t0"] * head
    torch.manual_seed(3)  # PCGrad, GradDrop and GradVac draw random numbers
    weighting.backward(losses)
    jacobian = rows.clone()
    jacobian[0] *= 2.0  # d(head * L0)/d(shared) at head = 2
    torch.manual_seed(3)
    if name in TORCHJD_PATH:
        expected = AGGREGATORS[name].build(3, **AGGREGATORS[name].defaults)(jacobian)
    else:
        expected = linear_step(name, list(jacobian)).grad
    assert torch.cat([first.grad, second.grad.flatten()]).tolist() == pytest.approx(expected.tolist(), abs=1e-5)
    assert float(head.grad) == pytest.approx(float(rows[0, :2].sum() + rows[0, 2:].sum()))  # plain gradient


def test_grad_accumulates_into_an_existing_grad():
    weighting = WEIGHTINGS.get("upgrad")(["t0", "t1"])
    theta = nn.Parameter(torch.ones(2))
    theta.grad = torch.tensor([10.0, 20.0])
    weighting.bind([theta], [], [theta])
    weighting.backward({"t0": G1 @ theta, "t1": (G1 + G2) @ theta})  # no conflict: UPGrad gives the mean
    assert theta.grad.tolist() == pytest.approx([10.0 + 0.75, 20.0 + 0.5])


def test_missing_packages_name_the_command_that_installs_them(monkeypatch):
    """The hint is a torchjd command (``pip install "mtl-bench[...]"`` does nothing for a checkout install)."""
    import torchjd._mixins

    real = torchjd._mixins.find_spec
    missing = set()
    monkeypatch.setattr(torchjd._mixins, "find_spec", lambda name: None if name in missing else real(name))
    missing.add("cvxpy")
    for name, opts in (("nashmtl", {"solver": "torchjd"}), ("cagrad", {})):
        with pytest.raises(UserError, match=re.escape('pip install "torchjd[cagrad,nash-mtl]>=0.18,<0.19"')):
            WEIGHTINGS.get(name)(["a", "b"], **opts)
    WEIGHTINGS.get("nashmtl")(["a", "b"])  # the exact solver (the default) needs no cvxpy
    missing.update({"quadprog", "qpsolvers"})
    for name in ("upgrad", "dualproj"):
        with pytest.raises(UserError, match=re.escape('pip install "torchjd[quadprog-projector]>=0.18,<0.19"')):
            WEIGHTINGS.get(name)(["a", "b"], reg_eps=1e-4)  # TorchJD's projector needs quadprog
        WEIGHTINGS.get(name)(["a", "b"])  # the exact projection (the default) does not


def test_bad_option_values_are_user_errors():
    with pytest.raises(UserError, match="alignedmtl"):
        WEIGHTINGS.get("alignedmtl")(["a", "b"], scale_mode="max")
    with pytest.raises(UserError, match="cagrad"):
        WEIGHTINGS.get("cagrad")(["a", "b"], c=-1.0)
    assert WEIGHTINGS.get("cagrad")(["a", "b"], c=0.2).options["c"] == 0.2


@pytest.mark.parametrize(
    ("name", "opts", "message"),
    [
        ("nashmtl", {"solver": "cvxpy"}, r"solver must be one of \['exact', 'torchjd'\], got 'cvxpy'"),
        ("nashmtl", {"optim_niter": 0}, "optim_niter must be a positive integer, got 0"),
        ("nashmtl", {"update_weights_every": 1.5}, "update_weights_every must be a positive integer, got 1.5"),
        ("nashmtl", {"max_norm": -1.0}, "max_norm must be >= 0"),
        ("fairgrad", {"alpha": -0.5}, "alpha must be >= 0, got -0.5"),
        ("fairgrad", {"max_iters": 0}, "max_iters must be a positive integer or None, got 0"),
        ("fairgrad", {"solver": "torchjd", "max_norm": 1.0}, "apply to solver='exact' only"),
        ("fairgrad", {"scale_by_tasks": "yes"}, r"scale_by_tasks must be one of \[False, True\]"),
    ],
)
def test_nashmtl_and_fairgrad_option_errors_name_the_option(name, opts, message):
    with pytest.raises(UserError, match=rf"weighting '{name}': bad options .*{message}"):
        WEIGHTINGS.get(name)(["a", "b"], **opts)


@pytest.mark.parametrize(
    ("name", "opts", "reference"),
    [
        ("nashmtl", {"max_norm": 1.0, "update_weights_every": 2, "optim_niter": 20}, "NashMTL"),
        ("fairgrad", {"alpha": 2.0, "max_iters": None}, "FairGrad"),
    ],
)
def test_solver_torchjd_is_torchjds_aggregator(name, opts, reference):
    """``solver="torchjd"`` reproduces runs made before the exact solvers: TorchJD's aggregator, step for step
    (Nash-MTL's warm start and reused weights included), on a well-conditioned Jacobian where both agree."""
    import torchjd.aggregation

    gen = torch.Generator().manual_seed(0)
    jacobians = [torch.randn(3, 5, generator=gen) for _ in range(3)]
    theirs = getattr(torchjd.aggregation, reference)(**({"n_tasks": 3} if name == "nashmtl" else {}), **opts)
    tasks = ["t0", "t1", "t2"]
    ours = WEIGHTINGS.get(name)(tasks, solver="torchjd", **opts)
    theta = nn.Parameter(torch.zeros(5))
    ours.bind([theta], [], [theta])
    for jac in jacobians:
        theta.grad = None
        ours.backward({t: row @ theta for t, row in zip(tasks, jac, strict=True)})
        assert torch.equal(theta.grad, theirs(jac))


def exp_losses(theta: torch.Tensor, head: torch.Tensor) -> dict[str, torch.Tensor]:
    """log L_a = (3, 4) . theta + head and log L_b = (0, 1) . theta: the log-loss gradients are those rows."""
    return {"a": torch.exp(torch.tensor([3.0, 4.0]) @ theta + head), "b": torch.exp(torch.tensor([0.0, 1.0]) @ theta)}


def test_dbmtl_scales_every_task_to_the_largest_gradient_norm():
    dbmtl = WEIGHTINGS.get("dbmtl")(["a", "b"], beta=0.0)  # no averaging: h_t = g_t
    theta, head = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.tensor(0.0))
    dbmtl.bind([theta], [head], [theta])
    dbmtl.backward(exp_losses(theta, head))
    # norms (5, 1): (3, 4) + 5 * (0, 1) = (3, 9); the head gets the plain gradient of log L_a + log L_b
    assert theta.grad.tolist() == pytest.approx([3.0, 9.0])
    assert float(head.grad) == pytest.approx(1.0)


def test_dbmtl_averages_the_gradients_with_beta():
    dbmtl = WEIGHTINGS.get("dbmtl")(["a", "b"])  # beta 0.9, beta_sigma 0: h <- 0.9 h + 0.1 g from h = 0
    theta, head = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.tensor(0.0))
    dbmtl.bind([theta], [head], [theta])
    dbmtl.backward(exp_losses(theta, head))
    assert theta.grad.tolist() == pytest.approx([0.3, 0.9])  # h = 0.1 g
    theta.grad = None
    dbmtl.backward(exp_losses(theta, head))
    assert theta.grad.tolist() == pytest.approx([0.19 * 3, 0.19 * 9])  # h = 0.9 * 0.1 g + 0.1 g


def test_a_nashmtl_checkpoint_from_the_other_solver_is_refused_by_name():
    """A checkpoint written with TorchJD's CCP state (every nashmtl run before the exact solver) cannot continue in
    the exact solver, nor the reverse: one line naming the option that loads it."""
    torchjd_state = WEIGHTINGS.get("nashmtl")(["a", "b"], solver="torchjd").get_extra_state()
    with pytest.raises(UserError, match=r"weighting 'nashmtl': .* set weighting.options.solver='torchjd'"):
        WEIGHTINGS.get("nashmtl")(["a", "b"]).set_extra_state(torchjd_state)
    exact_state = WEIGHTINGS.get("nashmtl")(["a", "b"]).get_extra_state()
    with pytest.raises(UserError, match=r"set weighting.options.solver='exact'"):
        WEIGHTINGS.get("nashmtl")(["a", "b"], solver="torchjd").set_extra_state(exact_state)
