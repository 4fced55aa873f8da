"""Parity of pcgrad, mgda, cagrad, imtlg, alignedmtl, upgrad, dualproj and config with the papers' formulas.

Each reference below is written from the paper in float64 on the Jacobian itself (numpy/scipy, never TorchJD or
``exact.py``), by a different algorithm than ours where ours solves an optimisation problem (enumeration of active
sets against our NNLS). The weighting is driven on losses linear in the shared parameters, ``L_t = J_t . theta``, so
its Jacobian is J exactly; J is float32 (as a model's gradients are) and the references see the same float32 values
in float64. Three kinds of J, T = 2, 3, 4, 8 tasks, P = 2T + 3 parameters:

- random: standard normal rows;
- conflicting: as random, but row 1 is nearly -row 0 (cosine < -0.9);
- ill-conditioned: the conflicting rows scaled by norms spread geometrically from 1 to 1e4.

Tolerance: 1e-5 relative everywhere (the float32 cast of a float64 update alone is 6e-8).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from mtl_bench.errors import UserError
from mtl_bench.weighting import WEIGHTINGS

KINDS = ("random", "conflicting", "ill-conditioned")
TASKS = (2, 3, 4, 8)
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def jacobian(kind: str, T: int, seed: int = 0) -> torch.Tensor:
    """A float32 T x (2T + 3) Jacobian of the given kind (see the module docstring)."""
    gen = torch.Generator().manual_seed(1000 * T + seed)
    J = torch.randn(T, 2 * T + 3, generator=gen, dtype=torch.float64)
    if kind != "random":
        J[1] = -0.97 * J[0] / J[0].norm() * J[1].norm() + 0.2 * torch.randn(J.shape[1], generator=gen).double()
        cos = float(J[0] @ J[1] / (J[0].norm() * J[1].norm()))
        assert cos < -0.9, cos
    if kind == "ill-conditioned":
        J = J / J.norm(dim=1, keepdim=True) * torch.logspace(0, 4, T, dtype=torch.float64)[:, None]
    return J.float()


def step(name: str, J: torch.Tensor, seed: int = 0, **opts) -> np.ndarray:
    """The update our weighting writes into ``theta.grad`` for ``L_t = J_t . theta``, as float64."""
    tasks = [f"t{i}" for i in range(len(J))]
    weighting = WEIGHTINGS.get(name)(tasks, **opts)
    theta = nn.Parameter(torch.zeros(J.shape[1]))
    weighting.bind([theta], [], [theta])
    torch.manual_seed(seed)
    weighting.backward({t: row @ theta for t, row in zip(tasks, J, strict=True)})
    assert theta.grad.dtype == torch.float32
    return theta.grad.double().numpy()


# ---------------------------------------------------------------- references, float64, from the papers


def enumerate_qp(G: np.ndarray, lower: np.ndarray | None) -> np.ndarray:
    """argmin v^T G v over {v >= lower} (lower given) or the simplex (lower None), by trying every active set.

    For each set F of free coordinates the stationary point of the equality-constrained problem is solved exactly;
    the feasible one with the smallest objective is the optimum (the optimum's own active set is among those tried).
    """
    T = len(G)
    G = G / np.trace(G)
    best, best_obj = None, np.inf
    for size in range(1, T + 1):
        for free in itertools.combinations(range(T), size):
            F = list(free)
            v = np.zeros(T) if lower is None else lower.copy()
            if lower is None:  # min w_F^T G_FF w_F s.t. sum w_F = 1: [2G 1; 1^T 0] [w; mu] = [0; 1]
                K = np.block([[2 * G[np.ix_(F, F)], np.ones((size, 1))], [np.ones((1, size)), np.zeros((1, 1))]])
                sol = np.linalg.lstsq(K, np.r_[np.zeros(size), 1.0], rcond=None)[0]
                v[F] = sol[:size]
                feasible = (v[F] >= -1e-12).all()
            else:  # fixed coordinates at their bound: G_FF v_F = -G_F,fixed v_fixed
                rest = [i for i in range(T) if i not in F]
                v[F] = np.linalg.lstsq(G[np.ix_(F, F)], -G[np.ix_(F, rest)] @ v[rest], rcond=None)[0]
                feasible = (v[F] >= lower[F] - 1e-12 * np.abs(lower).max()).all()
            obj = v @ G @ v
            if feasible and obj < best_obj:
                best, best_obj = v, obj
    if lower is not None and best_obj > lower @ G @ lower:  # every coordinate at its bound
        best = lower.copy()
    assert best is not None
    return best


def ref_pcgrad(J: np.ndarray, seed: int) -> np.ndarray:
    """Yu et al. 2020, Algorithm 1: g_i projected off each conflicting g_j, j in a random order per i; summed."""
    T = len(J)
    torch.manual_seed(seed)  # the same draws as TorchJD's: one randperm(T) per task i, in task order
    out = np.zeros(J.shape[1])
    for i in range(T):
        g = J[i].copy()
        for j in torch.randperm(T).tolist():
            if j != i and g @ J[j] < 0:
                g -= (g @ J[j]) / (J[j] @ J[j]) * J[j]
        out += g
    return out


def ref_mgda(J: np.ndarray) -> np.ndarray:
    """Sener and Koltun 2018, Eq. 3: the min-norm point of the convex hull of the rows."""
    return enumerate_qp(J @ J.T, None) @ J


def ref_cagrad(J: np.ndarray, c: float = 0.4) -> np.ndarray:
    """Liu et al. 2021, Eq. 2: d = argmax_d min_i g_i . d over ||d - g0|| <= c ||g0||, scaled as the authors' code
    does: T d / (1 + c^2). Enumerated: for a set S of tasks tied at the minimum, d = g0 + J_S^T y with
    g_i . d = mu on S and ||J_S^T y|| = c ||g0|| (a quadratic in mu); the best d over every S and root wins."""
    T = len(J)
    G = J @ J.T
    g0 = J.mean(0)
    radius2 = c**2 * (g0 @ g0)
    best, best_obj = None, -np.inf
    for size in range(1, T + 1):
        for S in map(list, itertools.combinations(range(T), size)):
            GS = G[np.ix_(S, S)]
            a = np.linalg.solve(GS, np.ones(size))  # y = mu a - e: G_SS y = mu 1 - J_S g0
            e = np.linalg.solve(GS, J[S] @ g0)
            qa, qb, qc = a @ GS @ a, -2 * a @ GS @ e, e @ GS @ e - radius2
            disc = qb**2 - 4 * qa * qc
            if disc < 0:
                continue
            for mu in ((-qb + np.sqrt(disc)) / (2 * qa), (-qb - np.sqrt(disc)) / (2 * qa)):
                y = mu * a - e
                if (y < -1e-12 * np.abs(y).max()).any():
                    continue
                d = g0 + y @ J[S]
                if (obj := (J @ d).min()) > best_obj:
                    best, best_obj = d, obj
    return T * best / (1 + c**2)


def ref_imtlg(J: np.ndarray) -> np.ndarray:
    """Liu et al. 2021 (IMTL), Eq. 10: alpha_{2:T} = g_1 U^T (D U^T)^-1, alpha_1 = 1 - sum; U, D differences."""
    units = J / np.linalg.norm(J, axis=1, keepdims=True)
    D, U = J[0] - J[1:], units[0] - units[1:]
    alpha = J[0] @ U.T @ np.linalg.inv(D @ U.T)
    return np.r_[1 - alpha.sum(), alpha] @ J


def ref_alignedmtl(J: np.ndarray) -> np.ndarray:
    """Senushkin et al. 2023: the rows replaced by sigma U W^T (J = U S W^T, sigma the smallest kept singular
    value; kept: s^2 > T eps_float32 s_max^2, the authors' tolerance), summed (preference 1 per task)."""
    U, s, Wt = np.linalg.svd(J, full_matrices=False)
    keep = s**2 > s.max() ** 2 * len(J) * FLOAT32_EPS
    aligned = s[keep].min() * U[:, keep] @ Wt[keep]
    return aligned.sum(0)


def ref_dual_cone_projection(J: np.ndarray, x_weights: np.ndarray) -> np.ndarray:
    """Quinton and Rey 2024, Prop. 1: the projection of J^T u onto {d: J d >= 0} is J^T v, v = argmin_{v >= u}
    v^T G v."""
    return enumerate_qp(J @ J.T, x_weights) @ J


def ref_upgrad(J: np.ndarray) -> np.ndarray:
    T = len(J)
    return sum(ref_dual_cone_projection(J, np.eye(T)[i] / T) for i in range(T))


def ref_dualproj(J: np.ndarray) -> np.ndarray:
    return ref_dual_cone_projection(J, np.full(len(J), 1.0 / len(J)))


def ref_config(J: np.ndarray) -> np.ndarray:
    """Liu et al. 2025, Eq. 2: e = unit(pinv(units) 1); the update is (sum_i g_i . e) e."""
    units = J / np.linalg.norm(J, axis=1, keepdims=True)
    direction = np.linalg.pinv(units, rcond=1e-13) @ np.ones(len(J))
    e = direction / np.linalg.norm(direction)
    return (J @ e).sum() * e


REFERENCES = {
    "pcgrad": (lambda J: ref_pcgrad(J, seed=5), 1e-5),
    "mgda": (ref_mgda, 1e-5),
    "cagrad": (ref_cagrad, 1e-5),
    "imtlg": (ref_imtlg, 1e-5),
    "alignedmtl": (ref_alignedmtl, 1e-5),
    "upgrad": (ref_upgrad, 1e-5),
    "dualproj": (ref_dualproj, 1e-5),
    "config": (ref_config, 1e-5),
}


@pytest.mark.parametrize("T", TASKS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_update_matches_the_float64_reference(name, kind, T):
    J = jacobian(kind, T)
    reference, rtol = REFERENCES[name]
    expected = reference(J.double().numpy())
    got = step(name, J, seed=5)
    gap = np.linalg.norm(got - expected) / np.linalg.norm(expected)
    assert gap <= rtol, f"{name} {kind} T={T}: relative gap {gap:.2e} > {rtol:.0e}"


# ---------------------------------------------------------------- the defining properties, on harder cases


@pytest.mark.parametrize("T", TASKS)
@pytest.mark.parametrize("ratio", [1.0, 1e1, 1e2, 1e3, 1e4, 1e5])
def test_imtlg_projects_equally_on_every_unit_gradient(ratio, T):
    """IMTL-G's definition: d . u_i is the same for every task. One task's gradient is ``ratio`` times smaller
    (TorchJD's float32 pseudo-inverse broke this from ~3,000x: a negative weight and a 190x longer update)."""
    gen = torch.Generator().manual_seed(T)
    J = torch.randn(T, 2 * T + 3, generator=gen, dtype=torch.float64)
    J[-1] *= J[0].norm() / J[-1].norm() / ratio  # norm ratio row 0 : row -1 = ratio
    J = J.float()
    d = step("imtlg", J)
    Jd = J.double().numpy()
    units = Jd / np.linalg.norm(Jd, axis=1, keepdims=True)
    projections = units @ d
    spread = np.abs(projections - projections.mean()).max() / np.abs(projections).mean()
    assert spread <= 1e-5, f"projections {projections}"
    np.testing.assert_allclose(d, ref_imtlg(Jd), rtol=0, atol=1e-5 * np.linalg.norm(d))


@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
@pytest.mark.parametrize("kind", KINDS)
def test_dual_cone_updates_conflict_with_no_task(name, kind):
    """UPGrad's and DualProj's update lies in the dual cone: J d >= 0 (up to float32 rounding of d)."""
    J = jacobian(kind, 8)
    d = step(name, J)
    Jd = J.double().numpy()
    assert (Jd @ d >= -1e-6 * np.linalg.norm(Jd, axis=1) * np.linalg.norm(d)).all()


def test_torchjd_regularised_projection_is_an_option():
    """``reg_eps=1e-4`` is TorchJD's projector (1e-4 trace(G) added to G): 18% from the exact projection on
    conflicting rows of different norms, which is why the exact one is the default."""
    J = jacobian("ill-conditioned", 4)
    exact = ref_upgrad(J.double().numpy())
    regularised = step("upgrad", J, reg_eps=1e-4)
    assert np.linalg.norm(regularised - exact) / np.linalg.norm(exact) > 0.1  # measured 0.18
    assert np.linalg.norm(step("upgrad", J) - exact) / np.linalg.norm(exact) < 1e-5


@pytest.mark.parametrize("T", [2, 3])
def test_pcgrad_with_two_tasks_does_not_depend_on_the_order(T):
    """For T = 2 every order gives the same update; for T = 3 the seed fixes it (checked above against the same
    draws), and another seed may give another update."""
    J = jacobian("conflicting", T)
    a, b = step("pcgrad", J, seed=1), step("pcgrad", J, seed=2)
    if T == 2:
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.linalg.norm(a))
    np.testing.assert_allclose(a, ref_pcgrad(J.double().numpy(), seed=1), rtol=0, atol=1e-5 * np.linalg.norm(a))


# ---------------------------------------------------------------- conventions and options


def test_cagrad_reduction_and_rescale_reproduce_torchjd_and_libmtl():
    """Authors' code: T (g0 + lambda g_w) / (1 + c^2); TorchJD: rescale=0, reduction=mean; LibMTL: reduction=mean."""
    J = jacobian("conflicting", 3)
    authors = step("cagrad", J)
    np.testing.assert_allclose(step("cagrad", J, rescale=0, reduction="mean"), authors * 1.16 / 3, rtol=1e-5)
    np.testing.assert_allclose(step("cagrad", J, reduction="mean"), authors / 3, rtol=1e-5)
    np.testing.assert_allclose(step("cagrad", J, rescale=2, reduction="mean"), authors * 1.16 / 1.4 / 3, rtol=1e-5)


def test_alignedmtl_mean_reduction_is_torchjds_scale():
    J = jacobian("random", 4)
    np.testing.assert_allclose(step("alignedmtl", J, reduction="mean"), step("alignedmtl", J) / 4, rtol=1e-5)


@pytest.mark.parametrize(
    ("name", "opts"),
    [
        ("cagrad", {"rescale": 3}),
        ("cagrad", {"reduction": "avg"}),
        ("alignedmtl", {"reduction": "x"}),
        ("upgrad", {"reg_eps": -1.0}),
        ("mgda", {"epsilon": 1e-3}),
    ],
)
def test_bad_convention_options_are_user_errors(name, opts):
    with pytest.raises(UserError, match=name):
        WEIGHTINGS.get(name)(["a", "b"], **opts)


def test_weight_specific_trains_heads_on_the_weighted_sum():
    """MGDA with g1 = (1, 0), g2 = (-0.5, 1): w = (7/13, 6/13); the heads (one scaling each loss) then get
    w_t * L_t's gradient with ``weight_specific``, the plain one without."""
    rows = [torch.tensor([1.0, 0.0]), torch.tensor([-0.5, 1.0])]
    grads = {}
    for flag in (False, True):
        weighting = WEIGHTINGS.get("mgda")(["a", "b"], weight_specific=flag)
        theta = nn.Parameter(torch.tensor([1.0, 2.0]))
        heads = [nn.Parameter(torch.tensor(1.0)), nn.Parameter(torch.tensor(1.0))]
        weighting.bind([theta], heads, [theta])
        weighting.backward({t: h * (r @ theta) for t, h, r in zip("ab", heads, rows, strict=True)})
        grads[flag] = [float(h.grad) for h in heads]
        np.testing.assert_allclose(theta.grad.numpy(), [4 / 13, 6 / 13], atol=1e-6)  # the shared update unchanged
    assert grads[False] == pytest.approx([1.0, 1.5])  # L_a = theta_1 = 1, L_b = -0.5 + 2 = 1.5
    assert grads[True] == pytest.approx([7 / 13 * 1.0, 6 / 13 * 1.5])
