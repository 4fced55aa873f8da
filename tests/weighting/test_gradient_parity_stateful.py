"""Parity of Nash-MTL, FairGrad, GradDrop, GradVac and DB-MTL with float64 implementations of their papers' formulas,
written here from the papers (issue 14, section 5); neither TorchJD nor mtl-bench code computes a reference.

Each weighting is driven as in training: losses linear in one shared float32 parameter, ``L_t = J_t . theta``, so
task t's gradient is the known row ``J_t`` and the weighting writes the aggregate into ``theta.grad``. The rows
are float32 numbers, so the reference (float64) and the weighting see the same Jacobian. Jacobian families, each at
T = 2, 3, 4, 8 in D = 12 dimensions (rows linearly independent, so every Gramian below is positive definite):

- random: standard normal rows;
- conflicting: row 1 rebuilt nearly opposite to row 0 (cosine < -0.9, checked);
- ill-conditioned: random rows scaled by norms logspace(0, 4, T) (row norms differing by about 1e4, checked).

Stateful methods (Nash-MTL with ``update_weights_every`` > 1, GradVac, DB-MTL) run several steps on different
Jacobians, and their state is compared with the reference's through ``get_extra_state`` (what checkpoints save).

Nash-MTL and FairGrad are also checked at gradient scales 1e-3 to 1e3 and on several seeds, and their heads'
weights (``weight_specific``) against the reference's. Their TorchJD solvers (``solver="torchjd"``, the default
before ``exact.alpha_fair_weights``) failed the ill-conditioned, small-scale and conflicting-with-the-sum cases;
the tests' docstrings keep the measured failures.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from mtl_bench.weighting import WEIGHTINGS

D = 12
KINDS = ("random", "conflicting", "ill-conditioned")
NUM_TASKS = (2, 3, 4, 8)


def jacobian(kind: str, num_tasks: int, seed: int = 0) -> np.ndarray:
    """A T x D Jacobian of the family ``kind``, rounded to float32 (what the weighting sees) and held in float64."""
    rng = np.random.default_rng(seed)
    jac = rng.standard_normal((num_tasks, D))
    if kind == "conflicting":
        unit = jac[0] / np.linalg.norm(jac[0])
        jac[1] = -0.95 * np.linalg.norm(jac[1]) * unit + 0.25 * jac[1]
    elif kind == "ill-conditioned":
        jac *= np.logspace(0, 4, num_tasks)[:, None]
    jac = jac.astype(np.float32).astype(np.float64)
    norms = np.linalg.norm(jac, axis=1)
    cosines = (jac @ jac.T) / np.outer(norms, norms)
    if kind == "conflicting":
        assert cosines[0, 1] < -0.9
    if kind == "ill-conditioned":
        assert norms.max() / norms.min() > 3e3
    return jac


def bound(name: str, num_tasks: int, **opts) -> tuple[nn.Module, nn.Parameter]:
    """Our weighting ``name`` for tasks t0..t{T-1}, bound to one shared parameter of size D."""
    weighting = WEIGHTINGS.get(name)([f"t{i}" for i in range(num_tasks)], **opts)
    theta = nn.Parameter(torch.zeros(D))
    weighting.bind([theta], [], [theta])
    return weighting, theta


def step(weighting: nn.Module, theta: nn.Parameter, jac: np.ndarray) -> np.ndarray:
    """One training step with ``L_t = jac[t] . theta``; returns the update the weighting wrote into ``.grad``."""
    theta.grad = None
    rows = torch.from_numpy(jac).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cvxpy: "problem is not DPP", "solution may be inaccurate"
        weighting.backward({f"t{i}": row @ theta for i, row in enumerate(rows)})
    return theta.grad.double().numpy()


def rel_err(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


# --- alpha-fair weights: Nash-MTL (alpha = 1) and FairGrad -----------------------------------------------------------


def alpha_fair_weights(gram: np.ndarray, alpha: float) -> np.ndarray:
    """The w > 0 with ``(G w)_i = w_i^(-1/alpha)`` (FairGrad, Ban and Ji 2024, eq. 4; alpha = 1 is Nash-MTL's
    ``G alpha = 1 / alpha``, Navon et al. 2022, eq. 2), in float64.

    It is the minimiser of the strictly convex ``f(w) = w^T G w / 2 - sum_i h(w_i)`` with ``h' = w^(-1/alpha)``
    (``h = log`` at alpha = 1), found by Newton's method on w itself (not on the per-task contributions and cosine
    matrix that ``exact.py`` uses) with a backtracking line search that keeps w > 0; the start
    ``w_i = G_ii^(-alpha / (alpha + 1))`` solves the diagonal part. Checked by the backward error of the equations,
    ``|(G w)_i - w_i^(-1/alpha)| / ((|G| w)_i + w_i^(-1/alpha))``, to 1e-13 (the relative residual
    ``w_i^(1/alpha) (G w)_i - 1`` suffers the cancellation in ``(G w)_i`` on conflicting rows: 2e-12 at best there).
    """

    def h(w: np.ndarray) -> np.ndarray:
        return np.log(w) if alpha == 1 else w ** (1 - 1 / alpha) / (1 - 1 / alpha)

    def f(w: np.ndarray) -> float:
        return 0.5 * w @ gram @ w - h(w).sum()

    def grad(w: np.ndarray) -> np.ndarray:
        return gram @ w - w ** (-1 / alpha)

    def backward_error(w: np.ndarray) -> float:
        return float((np.abs(grad(w)) / (np.abs(gram) @ w + w ** (-1 / alpha))).max())

    def accept(w: np.ndarray, new: np.ndarray, direction: np.ndarray, t: float) -> bool:
        """Positive, and an Armijo decrease of f, or near the solution (f flat to rounding) a smaller gradient."""
        if np.any(new <= 0):
            return False
        armijo = f(new) <= f(w) + 0.25 * t * grad(w) @ direction
        return armijo or np.linalg.norm(grad(new)) < np.linalg.norm(grad(w))

    w = np.diag(gram) ** (-alpha / (alpha + 1))
    for _ in range(500):
        direction = -np.linalg.solve(gram + np.diag(w ** (-1 / alpha - 1) / alpha), grad(w))
        t = 1.0
        while not accept(w, w + t * direction, direction, t) and t > 1e-30:
            t /= 2
        w = w + t * direction
        if backward_error(w) < 1e-15:
            break
    assert backward_error(w) < 1e-13, "the reference solve did not converge"
    return w


def test_the_reference_solves_a_two_task_nash_problem_by_hand():
    # orthogonal rows of norms 1 and 2: alpha_i ||g_i||^2 alpha_i = 1, so alpha = (1, 1/2)
    assert alpha_fair_weights(np.diag([1.0, 4.0]), 1.0) == pytest.approx([1.0, 0.5], rel=1e-12)
    # alpha = 2: w_i ||g_i||^2 = w_i^(-1/2), so w_i = ||g_i||^(-4/3)
    assert alpha_fair_weights(np.diag([1.0, 4.0]), 2.0) == pytest.approx([1.0, 2 ** (-4 / 3)], rel=1e-12)


def test_the_reference_solves_a_conflicting_two_task_nash_problem_by_hand():
    """Unit rows at cosine c: by symmetry alpha_1 = alpha_2 = a with a^2 (1 + c) = 1; c = -0.8 gives a = sqrt(5)."""
    assert alpha_fair_weights(np.array([[1.0, -0.8], [-0.8, 1.0]]), 1.0) == pytest.approx([5**0.5] * 2, rel=1e-12)


SCALES = (1e-3, 1e-1, 1.0, 1e1, 1e3)
SEEDS = (0, 1, 2)


def scaled(jac: np.ndarray, scale: float) -> np.ndarray:
    """``jac * scale`` rounded to float32 again (what the weighting sees), held in float64."""
    return (jac * scale).astype(np.float32).astype(np.float64)


def step_with_heads(weighting: nn.Module, theta: nn.Parameter, jac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """As ``step``, with ``L_t = jac[t] . theta + s_t``, ``s_t`` a task-specific scalar: with ``weight_specific``
    its gradient is task t's weight (the heads' weights). Returns the shared update and those weights."""
    heads = nn.Parameter(torch.zeros(len(jac)))
    weighting.bind([theta], [heads], [theta])
    theta.grad = None
    rows = torch.from_numpy(jac).float()
    weighting.backward({f"t{i}": row @ theta + heads[i] for i, row in enumerate(rows)})
    return theta.grad.double().numpy(), heads.grad.double().numpy()


# Our solve is exact in float64 (1e-14 relative on the update against a 60-digit solve, exact.py), so what is left
# is the float32 rounding of the update and of the heads' gradients (at most 6e-8 relative per entry): measured at
# most 4.5e-8 relative on the update and 5.9e-8 on any weight over these families, T, scales and seeds (Nash-MTL and
# FairGrad alike). 1e-6 keeps a 15x margin above float32 rounding; the issue asked for 1e-5.
NASH_RTOL = 1e-6
FAIRGRAD_RTOL = 1e-6


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("num_tasks", NUM_TASKS)
@pytest.mark.parametrize("kind", KINDS)
def test_nashmtl_update_is_the_nash_bargaining_solution(kind, num_tasks, scale, seed):
    """Every family, T and gradient scale 1e-3 to 1e3. TorchJD's CCP (``solver="torchjd"``), the default before the
    exact solve, failed here (measured on these same cases): on ill-conditioned rows off by 0.8-41 times the update's
    norm on every T, seed and scale, at scale 1e-3 on every Jacobian (up to 2.5x: ECOS's iteration limit or a
    fall-back to alpha = 1), at 1e3 on 32 of 36 (its absolute tolerances; up to 0.9 off)."""
    jac = scaled(jacobian(kind, num_tasks, seed), scale)
    alpha = alpha_fair_weights(jac @ jac.T, 1.0)
    weighting, theta = bound("nashmtl", num_tasks, max_norm=0.0, weight_specific=True)
    update, weights = step_with_heads(weighting, theta, jac)
    assert rel_err(update, jac.T @ alpha) < NASH_RTOL
    np.testing.assert_allclose(weights, alpha, rtol=NASH_RTOL)
    assert np.linalg.norm(update) == pytest.approx(np.sqrt(num_tasks), rel=NASH_RTOL)  # alpha^T G alpha = T


@pytest.mark.parametrize("seed", [0, 2, 15])
def test_nashmtl_when_a_task_conflicts_with_the_sum(seed):
    """``g_i . sum_j g_j < 0`` for a task: TorchJD's CCP linearises at alpha = 1 first, a subproblem that can be
    unbounded; it then kept alpha = 1 and returned the plain sum (seed 15: 43% off; 7 of 160 such Jacobians)."""
    jac = jacobian("conflicting", 2, seed=seed)
    assert (jac @ jac.sum(axis=0)).min() < 0
    update = step(*bound("nashmtl", 2, max_norm=0.0), jac)
    assert rel_err(update, jac.T @ alpha_fair_weights(jac @ jac.T, 1.0)) < NASH_RTOL
    assert rel_err(update, jac.sum(axis=0)) > 0.1


@pytest.mark.parametrize(("max_norm", "scale"), [(1.0, 1.0), (5.0, 1.0), (1.0, 10.0)])
def test_nashmtl_max_norm_clips_the_update(max_norm, scale):
    """At the Nash point alpha^T G alpha = T, so the paper's update has norm sqrt(T) whatever the gradients' scale:
    with the default max_norm 1 (the authors' ``clip_grad_norm_`` of the shared gradient) every update has norm 1.
    The heads (``weight_specific``) get the unclipped alpha, as the authors' weighted loss gives them."""
    jac = scaled(jacobian("conflicting", 3), scale)
    alpha = alpha_fair_weights(jac @ jac.T, 1.0)
    paper = jac.T @ alpha
    assert np.linalg.norm(paper) == pytest.approx(np.sqrt(3), rel=1e-12)
    update, weights = step_with_heads(*bound("nashmtl", 3, max_norm=max_norm, weight_specific=True), jac)
    assert rel_err(update, paper * min(1.0, max_norm / np.sqrt(3))) < NASH_RTOL
    np.testing.assert_allclose(weights, alpha, rtol=NASH_RTOL)


def test_nashmtl_reuses_its_weights_between_updates():
    """update_weights_every = 3 over 5 steps: steps 1 and 4 solve, steps 2, 3 and 5 apply the last solved alpha to
    their own Jacobian, clipped by that Jacobian's update norm (the authors' code). After step 3 the state goes
    through ``get_extra_state`` into a fresh weighting (what a checkpoint does), which continues identically."""
    jacs = [jacobian("random", 3, seed) for seed in range(5)]
    jacs[2] = jacs[2] * 0.1  # a small gradient: the reused alpha's update is below max_norm and is not clipped
    weighting, theta = bound("nashmtl", 3, update_weights_every=3, max_norm=1.0)
    alpha = None
    norms = []
    for k, jac in enumerate(jacs):
        if k % 3 == 0:
            alpha = alpha_fair_weights(jac @ jac.T, 1.0)
        if k == 3:
            state = weighting.get_extra_state()
            weighting, theta = bound("nashmtl", 3, update_weights_every=3, max_norm=1.0)
            weighting.set_extra_state(state)
        unclipped = jac.T @ alpha
        norms.append(np.linalg.norm(unclipped))
        assert rel_err(step(weighting, theta, jac), unclipped / max(1.0, norms[-1])) < NASH_RTOL, f"step {k + 1}"
    assert norms[2] < 1.0 < min(norms[1], norms[4])  # both sides of the clip are exercised
    ((_, values),) = next(iter(weighting.get_extra_state().values())).items()
    assert values["step"] == {"plain": 5}
    np.testing.assert_allclose(values["prvs_alpha"]["tensor"].numpy(), alpha, rtol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("num_tasks", NUM_TASKS)
@pytest.mark.parametrize("kind", KINDS)
def test_fairgrad_update_is_the_alpha_fair_solution(kind, num_tasks, alpha, scale, seed):
    """Every family, T and gradient scale 1e-3 to 1e3. TorchJD's ``least_squares`` from ``w = 1/T``
    (``solver="torchjd"``, the default before the exact solve, as the authors' code) stopped early (status 0,
    max_nfev, or 3, xtol), measured on these same cases: on ill-conditioned rows 89 of 180 off by more than 1e-5, up
    to 360x at scale 1 and 2,900x at 1e3; at scale 1e-3, 67 of 72 random or conflicting ones (up to 0.8)."""
    jac = scaled(jacobian(kind, num_tasks, seed), scale)
    weights = alpha_fair_weights(jac @ jac.T, alpha)
    update, heads = step_with_heads(*bound("fairgrad", num_tasks, alpha=alpha, weight_specific=True), jac)
    assert rel_err(update, jac.T @ weights) < FAIRGRAD_RTOL
    np.testing.assert_allclose(heads, weights, rtol=FAIRGRAD_RTOL)


@pytest.mark.parametrize("alpha", [0.1, 0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("num_tasks", NUM_TASKS)
@pytest.mark.parametrize("kind", ["random", "conflicting"])
def test_the_exact_solve_on_norms_1e6_apart(kind, num_tasks, alpha):
    """``exact.alpha_fair_weights`` itself, float64 in and out, beyond the training families: row norms spread
    geometrically over 1e6 and alpha from 0.1 to 5 (where the diagonal scaling ``d^((1-alpha)/(1+alpha))`` is the
    furthest from 1). Measured at most 2.3e-14 relative on the update over 5 seeds; 1e-12."""
    from mtl_bench.weighting import exact

    for seed in range(5):
        jac = jacobian(kind, num_tasks, seed) * np.logspace(0, 6, num_tasks)[:, None]
        weights = exact.alpha_fair_weights(torch.from_numpy(jac @ jac.T), alpha).numpy()
        assert rel_err(jac.T @ weights, jac.T @ alpha_fair_weights(jac @ jac.T, alpha)) < 1e-12, f"seed {seed}"


def test_fairgrad_alpha_zero_is_the_mean():
    jac = jacobian("conflicting", 3)
    assert rel_err(step(*bound("fairgrad", 3, alpha=0.0), jac), jac.mean(axis=0)) < 1e-6


def test_fairgrad_authors_scale_and_clip():
    """The authors' code: ``T * J^T w`` (``overwrite_grad``: "to match the sum loss"), then ``clip_grad_norm_`` of
    the shared gradient to 1.0; ``scale_by_tasks=true, max_norm=1.0`` reproduce it."""
    for scale, clipped in ((1.0, True), (1e3, False)):  # at alpha = 2 the update scales as scale^(-1/3)
        jac = scaled(jacobian("random", 3), scale)
        authors = 3 * jac.T @ alpha_fair_weights(jac @ jac.T, 2.0)
        assert (np.linalg.norm(authors) > 1.0) == clipped
        update = step(*bound("fairgrad", 3, alpha=2.0, scale_by_tasks=True, max_norm=1.0), jac)
        assert rel_err(update, authors / max(1.0, np.linalg.norm(authors))) < FAIRGRAD_RTOL


@pytest.mark.parametrize(("name", "alpha"), [("nashmtl", 1.0), ("fairgrad", 2.0)])
def test_a_zero_gradient_gets_weight_zero_and_the_rest_is_solved_without_it(name, alpha):
    """No weight makes ``(G w)_i > 0`` for a zero row, so no solution exists with it: its weight is 0 (its
    contribution is 0 anyway) and the other tasks get the solution of their own problem."""
    jac = jacobian("conflicting", 3)
    jac[2] = 0.0
    opts = {"max_norm": 0.0} if name == "nashmtl" else {"alpha": alpha}
    update, weights = step_with_heads(*bound(name, 3, weight_specific=True, **opts), jac)
    expected = alpha_fair_weights(jac[:2] @ jac[:2].T, alpha)
    np.testing.assert_allclose(weights, [*expected, 0.0], rtol=NASH_RTOL)
    assert rel_err(update, jac[:2].T @ expected) < NASH_RTOL


@pytest.mark.parametrize(("name", "alpha"), [("nashmtl", 1.0), ("fairgrad", 0.5)])
def test_pareto_stationary_gradients_give_a_zero_update(name, alpha):
    """``g_1 = -2 g_0``: 0 is in the rows' convex hull, no direction improves both tasks and ``f`` is unbounded
    below (no alpha-fair weights exist): the update is 0, as MGDA's, and so are the weights."""
    jac = jacobian("random", 2)
    jac[1] = -2 * jac[0]
    opts = {"max_norm": 0.0} if name == "nashmtl" else {"alpha": alpha}
    update, weights = step_with_heads(*bound(name, 2, weight_specific=True, **opts), jac)
    assert not update.any() and not weights.any()


# --- GradDrop ---------------------------------------------------------------------------------------------------------


def graddrop_reference(jac: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Chen et al. 2020, Algorithm 1 (no leak, f = identity), per coordinate of the parameter gradient:
    ``P = (1 + sum_i g_i / sum_i |g_i|) / 2``; keep the positive entries where ``P > U``, the negative ones where
    ``P < U``; the update is the sum of the kept entries."""
    purity = 0.5 * (1 + jac.sum(axis=0) / np.abs(jac).sum(axis=0))
    keep = (purity > uniform) * (jac > 0) + (purity < uniform) * (jac < 0)
    return (keep * jac).sum(axis=0)


@pytest.mark.parametrize("num_tasks", NUM_TASKS)
@pytest.mark.parametrize("kind", KINDS)
def test_graddrop_reproduces_the_seeded_draw(kind, num_tasks):
    """The implementation draws U = torch.rand(D) (float32) from the global generator, once per step: reseeding
    reproduces it. Sums of float32 numbers: each coordinate within 1e-6 of the sum of the |entries|."""
    jac = jacobian(kind, num_tasks)
    weighting, theta = bound("graddrop", num_tasks)
    for seed in range(3):
        torch.manual_seed(seed)
        update = step(weighting, theta, jac)
        torch.manual_seed(seed)
        expected = graddrop_reference(jac, torch.rand(D, dtype=torch.float32).double().numpy())
        np.testing.assert_allclose(update, expected, rtol=0, atol=1e-6 * np.abs(jac).sum(axis=0).max())


def test_graddrop_keeps_everything_when_the_signs_agree():
    """Deterministic limits: P = 1 (all entries >= 0) or P = 0 (all <= 0) keeps every entry: the plain sum; a column
    of zeros (P = 0/0, LibMTL adds 1e-7 to the denominator, TorchJD does not) gives 0, not NaN."""
    jac = np.abs(jacobian("ill-conditioned", 4)) * np.where(np.arange(D) % 2, 1.0, -1.0)  # signs agree per column
    jac[:, 5] = 0.0
    weighting, theta = bound("graddrop", 4)
    for seed in range(5):
        torch.manual_seed(seed)
        np.testing.assert_allclose(step(weighting, theta, jac), jac.sum(axis=0), rtol=1e-6)


def test_graddrop_picks_the_positive_sign_with_probability_p():
    """Distributional property, with no reference to the generator: with 4000 columns (3, -1), P = 0.75 in each, so
    each coordinate of the update is 3 (probability 0.75) or -1; the frequency is within 5 sigma (0.034) of 0.75."""
    jac = np.stack([np.full(4000, 3.0), np.full(4000, -1.0)])
    weighting = WEIGHTINGS.get("graddrop")(["t0", "t1"])
    theta = nn.Parameter(torch.zeros(4000))
    weighting.bind([theta], [], [theta])
    torch.manual_seed(0)
    update = step(weighting, theta, jac)
    assert set(np.unique(update)) <= {3.0, -1.0}
    assert abs((update == 3.0).mean() - 0.75) < 5 * np.sqrt(0.75 * 0.25 / 4000)


# --- GradVac ----------------------------------------------------------------------------------------------------------


def gradvac_reference(
    jac: np.ndarray, targets: np.ndarray, orders: list[list[int]], beta: float, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Wang et al. 2021, Algorithm 1 (as LibMTL's GradVac, whole model), in float64: for each task i, for each other
    task j in ``orders[i]``, with ``phi`` the cosine of the (already corrected) g_i and the original g_j, if
    ``phi < target_ij`` add ``||g_i|| (t sqrt(1 - phi^2) - phi sqrt(1 - t^2)) / (||g_j|| sqrt(1 - t^2)) g_j`` to g_i;
    then ``target_ij <- (1 - beta) target_ij + beta phi``. Returns the sum of the corrected rows and the targets."""
    corrected, targets = jac.copy(), targets.copy()
    for i, order in enumerate(orders):
        for j in order:
            norm_i, norm_j = np.linalg.norm(corrected[i]), np.linalg.norm(jac[j])
            phi, target = corrected[i] @ jac[j] / (norm_i * norm_j + eps), targets[i, j]
            if phi < target:
                w = norm_i * (target * np.sqrt(1 - phi**2) - phi * np.sqrt(1 - target**2))
                corrected[i] += w / (norm_j * np.sqrt(1 - target**2) + eps) * jac[j]
            targets[i, j] = (1 - beta) * target + beta * phi
    return corrected.sum(axis=0), targets


def task_orders(num_tasks: int) -> list[list[int]]:
    """The visiting order the implementation draws: per task i in turn, torch.randperm of the other tasks."""
    orders = []
    for i in range(num_tasks):
        others = [j for j in range(num_tasks) if j != i]
        orders.append([others[k] for k in torch.randperm(len(others)).tolist()])
    return orders


def gradvac_targets(weighting: nn.Module) -> np.ndarray:
    """The EMA targets as a checkpoint stores them (``get_extra_state``)."""
    (per_module,) = weighting.get_extra_state().values()
    (state,) = [values for values in per_module.values() if "_phi_t" in values]
    return state["_phi_t"]["tensor"].double().numpy()


# The Gramian-based float32 computation of the corrections vs float64 on the rows: measured at most 1.4e-6 relative
# on the update and 7e-7 (absolute) on the cosine targets over these families, 3 x 4 steps; 1e-5.
@pytest.mark.parametrize("beta", [0.5, 0.2])
@pytest.mark.parametrize("num_tasks", NUM_TASKS)
@pytest.mark.parametrize("kind", KINDS)
def test_gradvac_over_several_steps(kind, num_tasks, beta):
    weighting, theta = bound("gradvac", num_tasks, beta=beta)
    targets = np.zeros((num_tasks, num_tasks))
    corrected_steps = 0
    for k in range(4):
        jac = jacobian(kind, num_tasks, seed=k)
        torch.manual_seed(100 + k)
        update = step(weighting, theta, jac)
        torch.manual_seed(100 + k)
        expected, targets = gradvac_reference(jac, targets, task_orders(num_tasks), beta, eps=1e-8)
        corrected_steps += not np.allclose(expected, jac.sum(axis=0))
        assert rel_err(update, expected) < 1e-5, f"step {k + 1}"
        np.testing.assert_allclose(gradvac_targets(weighting), targets, rtol=0, atol=1e-5, err_msg=f"step {k + 1}")
    assert corrected_steps >= 2  # the vaccine acted (the update is not the plain sum) on several steps


# --- DB-MTL -----------------------------------------------------------------------------------------------------------


def dbmtl_reference(
    jacs: list[np.ndarray], log_losses: list[np.ndarray], present: list[list[int]], beta: float, beta_sigma: float
) -> tuple[list[np.ndarray], dict[int, np.ndarray]]:
    """Lin et al. 2023, Algorithm 1 (as LibMTL's DB_MTL), in float64. The gradient of ``log(L_t + 1e-8)`` is
    ``L_t / (L_t + 1e-8) g_t``; ``beta_k = beta / k^beta_sigma`` at step k from 1; ``h_t <- beta_k h_t +
    (1 - beta_k) grad`` from h_t = 0; the update ``sum_t max_s ||h_s|| / (||h_t|| + 1e-8) h_t`` over the tasks
    present this step. Returns the updates and the final EMAs."""
    ema: dict[int, np.ndarray] = {}
    updates = []
    for k, (jac, log_loss, tasks) in enumerate(zip(jacs, log_losses, present, strict=True), start=1):
        decay = beta / k**beta_sigma
        loss = np.exp(log_loss)
        for t in tasks:
            grad = loss[t] / (loss[t] + 1e-8) * jac[t]
            ema[t] = decay * ema.get(t, np.zeros(D)) + (1 - decay) * grad
        norms = {t: np.linalg.norm(ema[t]) for t in tasks}
        updates.append(sum(max(norms.values()) / (norms[t] + 1e-8) * ema[t] for t in tasks))
    return updates, ema


@pytest.mark.parametrize("beta_sigma", [0.0, 0.5])
@pytest.mark.parametrize("num_tasks", NUM_TASKS)
@pytest.mark.parametrize("kind", KINDS)
def test_dbmtl_over_several_steps(kind, num_tasks, beta_sigma):
    """Five steps; at step 4 task t0 has no batch (its EMA is left alone, the step count still advances). Losses
    ``L_t = exp(J_t . theta + c_t + s_t)`` with a task-specific ``s_t`` (0 here), so ``log L_t`` has gradient J_t
    in theta and 1 in s_t: the shared update is DB-MTL's, s_t gets the plain log-loss gradient (LibMTL's too)."""
    tasks = [f"t{i}" for i in range(num_tasks)]
    weighting = WEIGHTINGS.get("dbmtl")(tasks, beta=0.9, beta_sigma=beta_sigma)
    theta = nn.Parameter(torch.zeros(D))
    specific = nn.Parameter(torch.zeros(num_tasks))
    weighting.bind([theta], [specific], [theta])
    jacs = [jacobian(kind, num_tasks, seed=k) for k in range(5)]
    log_losses = [np.linspace(-3.0, 2.0, num_tasks) + k for k in range(5)]  # losses from 0.05 to 400
    present = [list(range(num_tasks))] * 3 + [list(range(1, num_tasks))] + [list(range(num_tasks))]
    expected, ema = dbmtl_reference(jacs, log_losses, present, beta=0.9, beta_sigma=beta_sigma)
    for k in range(5):
        theta.grad, specific.grad = None, None
        rows, offsets = torch.from_numpy(jacs[k]).float(), torch.from_numpy(log_losses[k]).float()
        weighting.backward({tasks[t]: torch.exp(rows[t] @ theta + offsets[t] + specific[t]) for t in present[k]})
        assert rel_err(theta.grad.double().numpy(), expected[k]) < 1e-5, f"step {k + 1}"
        assert specific.grad.tolist() == pytest.approx([float(t in present[k]) for t in range(num_tasks)], abs=1e-6)
    state = weighting.get_extra_state()
    assert state["steps"] == 5
    for t in range(num_tasks):
        assert rel_err(state["ema"][tasks[t]][0].double().numpy(), ema[t]) < 1e-5
